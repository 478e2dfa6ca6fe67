"""How `tiny-sd-face.safetensors` was made: the zoo's tiny SD (same configs as `tiny-sd`)
pre-trained on synthetic faces from `gan-face-generate` plus the non-face pictures the zoo
already uses. Deterministic for a given seed, torch version and thread count; it takes about
half an hour on one CPU core, far over a setup budget, so its output ships in the
repository and the zoo only verifies and loads it (bench/zoo_face/__init__.py).

    python -m bench.zoo_face.train --out bench/zoo_face --seed 0 --threads 1

Recipe (shared/reference/face-world-facts.md, "Pre-training the zoo's tiny SD on faces"):
1. VAE: AdamW 1e-3, KL weight 1e-6, batch 8, faces with random flips plus 10% non-face crops;
   then the scaling factor that gives unit-variance latents, as SD's.
2. Encode every training image once (posterior mean and std; flipped copies too).
3. UNet: batch 16, AdamW 3e-4, EMA 0.999 of the weights (the saved UNet), face captions for
   faces, "a photo"/"a picture" for non-faces, and 10% EMPTY captions so that classifier-free
   guidance has a trained unconditional branch. Text encoder: seeded random, frozen.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from bench import gan_faces

FACE_CAPTIONS = ("a photo of a person", "a portrait of a person", "a photo of person", "a dslr portrait of a person",
                 "a photo of the person", "a portrait photo of a person")
OTHER_CAPTIONS = ("a photo", "a picture")
RECIPE = dict(
    n_faces=12000, n_other_crops=1500, size=64,
    vae_steps=1920, vae_batch=8, vae_lr=1e-3, kl_weight=1e-6, vae_other_frac=0.10,
    unet_steps=2400, unet_batch=16, unet_lr=3e-4, ema=0.999, other_frac=0.15, empty_caption_frac=0.10,
)


def _other_crops(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    from bench.zoo import _pretrain_pool

    pool = _pretrain_pool(size)
    out = []
    for _ in range(n):
        img = pool[rng.integers(len(pool))]
        y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        out.append(img[y:y + size, x:x + size])
    return np.stack(out)


def train(out: Path, seed: int = 0, recipe: dict | None = None, log=print) -> dict:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from bench.zoo_face import build_parts

    r = {**RECIPE, **(recipe or {})}
    t0 = time.time()
    unet, vae, text_encoder, tokenizer, scheduler = build_parts(seed)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    seeds = list(gan_faces.PRETRAIN_SEEDS[: r["n_faces"]])
    faces = gan_faces.faces(seeds)
    others = _other_crops(r["n_other_crops"], r["size"], rng)
    log(f"data: {len(faces)} GAN faces (seeds {seeds[0]}..{seeds[-1]}), {len(others)} non-face crops, {time.time() - t0:.0f} s")

    def to_x(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div(127.5).sub(1)

    def vae_batch() -> torch.Tensor:
        n_other = int(rng.binomial(r["vae_batch"], r["vae_other_frac"]))
        imgs = [faces[i] for i in rng.integers(0, len(faces), r["vae_batch"] - n_other)]
        imgs += [others[i] for i in rng.integers(0, len(others), n_other)]
        imgs = [im[:, ::-1] if rng.random() < 0.5 else im for im in imgs]
        return to_x(np.stack(imgs))

    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=r["vae_lr"])
    for step in range(r["vae_steps"]):
        x = vae_batch()
        dist = vae.encode(x).latent_dist
        rec = vae.decode(dist.sample(generator=g)).sample
        loss = F.mse_loss(rec, x) + r["kl_weight"] * dist.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == r["vae_steps"] - 1:
            log(f"vae {step}/{r['vae_steps']} loss {float(loss):.4f} {time.time() - t0:.0f} s")
    vae.eval().requires_grad_(False)

    # Encode once: faces and their mirror images, then the non-face crops.
    with torch.no_grad():
        def encode(arr: np.ndarray):
            means, stds = [], []
            for i in range(0, len(arr), 256):
                d = vae.encode(to_x(arr[i:i + 256])).latent_dist
                means.append(d.mean)
                stds.append(d.std)
            return torch.cat(means), torch.cat(stds)

        fm, fs = encode(np.concatenate([faces, faces[:, :, ::-1]]))
        om, os_ = encode(np.concatenate([others, others[:, :, ::-1]]))
        std = torch.cat([fm, om]).std()
    vae.register_to_config(scaling_factor=round(float(1.0 / std), 5))
    sf = vae.config.scaling_factor
    log(f"latents encoded; scaling factor {sf} {time.time() - t0:.0f} s")

    text_encoder.requires_grad_(False)
    captions = list(FACE_CAPTIONS) + list(OTHER_CAPTIONS) + [""]
    with torch.no_grad():
        ids = tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
        cond_all = text_encoder(ids)[0]
    n_face_caps, empty = len(FACE_CAPTIONS), len(captions) - 1

    ema = copy.deepcopy(unet).requires_grad_(False)
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=r["unet_lr"])
    B = r["unet_batch"]
    for step in range(r["unet_steps"]):
        is_other = rng.random(B) < r["other_frac"]
        lat, cap = [], []
        for o in is_other:
            if o:
                i = int(rng.integers(len(om)))
                lat.append(om[i] + os_[i] * torch.randn(om[i].shape, generator=g))
                cap.append(n_face_caps + int(rng.integers(len(OTHER_CAPTIONS))))
            else:
                i = int(rng.integers(len(fm)))
                lat.append(fm[i] + fs[i] * torch.randn(fm[i].shape, generator=g))
                cap.append(int(rng.integers(n_face_caps)))
        cap = [empty if rng.random() < r["empty_caption_frac"] else c for c in cap]
        z = torch.stack(lat) * sf
        noise = torch.randn(z.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (B,), generator=g)
        pred = unet(scheduler.add_noise(z, noise, t), t, cond_all[cap]).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            d = min(r["ema"], (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
        if step % 200 == 0 or step == r["unet_steps"] - 1:
            log(f"unet {step}/{r['unet_steps']} loss {float(loss):.4f} {time.time() - t0:.0f} s")

    tensors = {f"unet.{k}": v.contiguous() for k, v in ema.state_dict().items()}
    tensors.update({f"vae.{k}": v.contiguous() for k, v in vae.state_dict().items()})
    tensors.update({f"text_encoder.{k}": v.contiguous() for k, v in text_encoder.state_dict().items()})
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "tiny-sd-face.safetensors"), metadata={"scaling_factor": str(sf)})
    info = {
        "seed": seed, "recipe": r, "scaling_factor": sf, "seconds": round(time.time() - t0, 1),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "trained_on": {
            "faces": f"{len(faces)} synthetic faces rendered by {gan_faces.PACKAGE} (DCGAN on DigiFace-1M) from latent "
                     f"seeds {seeds[0]}..{seeds[-1]} (bench.gan_faces.PRETRAIN_SEEDS; identities use IDENTITY_SEEDS)",
            "non_faces": f"{len(others)} random {r['size']} px crops of scikit-image's bundled pictures (bench.zoo.PRETRAIN_IMAGES) "
                         "and the old sample card's views",
            "captions": {"faces": list(FACE_CAPTIONS), "non_faces": list(OTHER_CAPTIONS), "empty_fraction": r["empty_caption_frac"]},
        },
    }
    (out / "train_log.json").write_text(json.dumps(info, indent=1))
    log(f"saved {out / 'tiny-sd-face.safetensors'} in {info['seconds']} s")
    return info


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="recipe override key=value (for quick trials)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    over = {k: type(RECIPE[k])(v) for k, v in (s.split("=", 1) for s in a.set)}
    train(a.out, a.seed, over, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
