"""The tiny model zoo: tiny versions of the SD 1.x/2.x components, built from
configs with a fixed seed, saved in diffusers layout, and then loaded through the
very same `from_pretrained` code path the paper profile uses for real weights.

The weights are seeded and briefly pre-trained on pictures that ship with pip packages,
so the tiny world measures how the machinery behaves, not what a trained SD would
generate. Sizes are chosen so a DreamBooth step at 64 px takes well under a second on
2 CPU cores.

Plugins contribute their own tiny models (adapters, ControlNets) through the
`bench.zoo` entry-point group: a `ZooModel` (config + builder); the core knows none."""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .artifacts import remove_stale_temp, stable_hash, temp_name
from .tiny_sd import TINY_SD, load_shipped, save_sd, sd_parts, write_tokenizer  # noqa: F401 (re-exported)

ZOO_VERSION = "2"

# A short deterministic pre-training on pictures that ship inside scikit-image, so
# the tiny model is a (very small) working autoencoder + denoiser: with random
# weights the denoising loss barely depends on the image and no defense or
# attack could show any effect. About a minute on 2 CPU cores, built once per machine
# and shared by every run (BENCH_ZOO).
TINY_SD["pretrain"] = dict(vae_steps=200, vae_lr=1e-3, kl_weight=1e-6, unet_steps=400, unet_lr=3e-4, batch=8, size=64)

# The same model pre-trained longer on a pool that also holds 100 real faces (scikit-image's
# bundled LFW subset: `skimage.data.lfw_subset()`, 25x25 grey crops of 100 different
# people, none of them the test identities). tiny-sd has seen views of one face (the sample
# card's astronaut), so for it every face is "new" and a DreamBooth run on one identity lowers the
# held-out loss of another identity almost as much (-8% vs -5%); this one knows faces, and
# DreamBooth on one identity improves that identity only (-2.7% vs +1.2%, docs/apdm.md).
# Protections that must act on ONE identity (model-level defenses, the control identity)
# are only measurable on such a base. Pre-training takes about 6 minutes on 2 CPU cores, so the
# weights it made ship in bench/zoo_weights/ (hash-verified; `SHIPPED` below).
TINY_SD_FACES = {**TINY_SD, "pretrain": {**TINY_SD["pretrain"], "unet_steps": 1500, "lfw_faces": 100}}

ZOO = {"tiny-sd": TINY_SD, "tiny-sd-faces": TINY_SD_FACES}

PRETRAIN_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera", "coins", "moon")
PRETRAIN_CAPTIONS = ("a photo of a person", "a photo", "a portrait of a person", "a picture")


def _pretrain_pool(size: int, lfw_faces: int = 0):
    """Random-crop source: scikit-image's bundled pictures plus the sample card's face views,
    plus the first `lfw_faces` faces of scikit-image's LFW subset (grey, upscaled)."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    from .data import sample_views

    pool = []
    for name in PRETRAIN_IMAGES:
        try:
            img = np.asarray(getattr(skdata, name)())
        except Exception:  # an image that would need a download is skipped
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        pool.append(np.asarray(Image.fromarray(img[..., :3]).resize((2 * size, 2 * size), Image.BICUBIC)))
    pool += [np.asarray(Image.fromarray(v).resize((size, size), Image.BICUBIC)) for v in sample_views()]
    if lfw_faces:  # lfw_subset(): the first 100 of its 200 images are faces, the rest are not
        faces = (skdata.lfw_subset()[:lfw_faces] * 255).astype(np.uint8)
        pool += [np.asarray(Image.fromarray(f).convert("RGB").resize((size, size), Image.BICUBIC)) for f in faces]
    return pool


def pretrain(unet, vae, text_encoder, tokenizer, scheduler, cfg: dict, seed: int) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    size, batch = cfg["size"], cfg["batch"]
    pool = _pretrain_pool(size, cfg.get("lfw_faces", 0))
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)

    def batch_images() -> torch.Tensor:
        out = []
        for _ in range(batch):
            img = pool[rng.integers(len(pool))]
            y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
            crop = img[y : y + size, x : x + size]
            out.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
        return torch.from_numpy(np.stack(out).copy()).permute(0, 3, 1, 2).float().div(127.5).sub(1)

    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["vae_lr"])
    for _ in range(cfg["vae_steps"]):
        x = batch_images()
        dist = vae.encode(x).latent_dist
        rec = vae.decode(dist.sample(generator=g)).sample
        loss = F.mse_loss(rec, x) + cfg["kl_weight"] * dist.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval().requires_grad_(False)
    with torch.no_grad():  # SD picks its scaling factor so that scaled latents have unit variance
        std = torch.cat([vae.encode(batch_images()).latent_dist.mean for _ in range(8)]).std()
    vae.register_to_config(scaling_factor=round(float(1.0 / std), 5))
    text_encoder.requires_grad_(False)
    with torch.no_grad():
        ids = tokenizer(list(PRETRAIN_CAPTIONS), padding="max_length", max_length=77, return_tensors="pt").input_ids
        captions = text_encoder(ids)[0]
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg["unet_lr"])
    sf = vae.config.scaling_factor
    for _ in range(cfg["unet_steps"]):
        with torch.no_grad():
            lat = vae.encode(batch_images()).latent_dist.sample(generator=g) * sf
        noise = torch.randn(lat.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=g)
        cond = captions[torch.randint(0, len(captions), (batch,), generator=g)]
        pred = unet(scheduler.add_noise(lat, noise, t), t, cond).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    unet.eval()
    vae.requires_grad_(True)
    text_encoder.requires_grad_(True)


@dataclass(frozen=True)
class ZooModel:
    """A tiny model: its config (hashed into the revision, so a changed config is a new
    model) and the function that writes it into a folder, `build(out_dir, seed)`."""

    config: dict
    build: Callable[[Path, int], Any]


@functools.cache
def models() -> dict[str, ZooModel]:
    """Every zoo model: the SD family above, tiny-sdxl, then the plugins' `bench.zoo` entries
    (a plugin cannot replace a core model)."""
    from importlib.metadata import entry_points

    from .errors import BenchError
    from .zoo_sdxl import TINY_SDXL, build_tiny_sdxl

    from . import zoo_face

    out = {name: ZooModel(cfg, functools.partial(_build_sd, name)) for name, cfg in ZOO.items()}
    out["tiny-sd-face"] = ZooModel(zoo_face.config(), zoo_face.build)
    out["tiny-sdxl"] = ZooModel(TINY_SDXL, build_tiny_sdxl)
    for ep in entry_points(group="bench.zoo"):
        try:
            model = ep.load()
        except Exception as e:
            raise BenchError(f"zoo model {ep.name!r} ({ep.value}) does not load: {type(e).__name__}: {e}") from None
        if not isinstance(model, ZooModel):
            raise BenchError(f"zoo model {ep.name!r} ({ep.value}) is not a bench.zoo.ZooModel")
        out.setdefault(ep.name, model)
    return out


def known(name: str) -> bool:
    return name in models()


def zoo_revision(name: str) -> str:
    return f"zoo{ZOO_VERSION}-{stable_hash(models()[name].config, 10)}"


def build(name: str, out_dir: Path, seed: int = 0, pretrain_overrides: dict | None = None):
    """Build the tiny model `name` with a fixed seed into `out_dir` and mark it with its
    revision; returns what the builder returns (tests compare it with the saved files).
    `pretrain_overrides` applies to the pre-trained SD family only."""
    from .hf_logging import quiet_hf

    quiet_hf()
    out_dir.mkdir(parents=True, exist_ok=True)
    if name in ZOO:
        result = _build_sd(name, out_dir, seed, pretrain_overrides)
    else:
        result = models()[name].build(out_dir, seed)
    (out_dir / "ZOO.json").write_text(json.dumps({"name": name, "revision": zoo_revision(name), "seed": seed,
                                                   "weights": weight_hashes(out_dir)}))
    return result


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".npz", ".msgpack")


def weight_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every weight file under `folder`, by relative path: what identifies a model's
    content (a revision names a config; these name the numbers). A hub snapshot's files link
    to blobs named by their SHA-256, which the hub client verified on download: read, not recomputed."""
    import re

    from .artifacts import sha256_file

    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
            blob = f.resolve().name
            out[f.relative_to(folder).as_posix()] = blob if f.is_symlink() and re.fullmatch(r"[0-9a-f]{64}", blob) else sha256_file(f)
    return out


def recorded_hashes(folder: Path) -> dict[str, str] | None:
    """The weight hashes a zoo folder was built with (None: built before they were recorded)."""
    return json.loads((folder / "ZOO.json").read_text()).get("weights")


def verify(name: str, folder: Path) -> dict[str, str]:
    """The built folder's weight hashes, checked against those it was built with: a swapped or
    damaged file is a one-line error, never a model used under the wrong name."""
    from .errors import BenchError

    built = recorded_hashes(folder)
    now = weight_hashes(folder)
    changed = sorted(k for k in set(built) | set(now) if built.get(k) != now.get(k))
    if changed:
        raise BenchError(f"zoo model {name} at {folder}: {changed[0]} does not match the weights it was built with "
                         f"({len(changed)} file(s) differ); delete the folder and it is rebuilt")
    return now


def _build_sd(name: str, out_dir: Path, seed: int = 0, pretrain_overrides: dict | None = None):
    """tiny-sd and its variants from their config: built, pre-trained, saved in diffusers layout;
    returns the in-memory pipeline."""
    cfg = ZOO[name]
    unet, vae, text_encoder, tokenizer, scheduler = sd_parts(cfg, out_dir / "tokenizer", seed)
    card = SHIPPED / f"{name}.json"
    shipped = json.loads(card.read_text()) if card.is_file() else {}
    if seed == 0 and not pretrain_overrides and shipped.get("revision") == zoo_revision(name):
        load_shipped(name, card.with_suffix(".safetensors"), shipped["sha256"], (unet, vae, text_encoder), shipped.get("vae_scaling_factor"))
    else:
        pretrain(unet, vae, text_encoder, tokenizer, scheduler, {**cfg["pretrain"], **(pretrain_overrides or {})}, seed)
    return save_sd(out_dir, unet, vae, text_encoder, tokenizer, scheduler)


# Weights this very build produced once (seed 0, the config whose revision the card names), shipped
# so that setup and the test suite need not spend ~6 minutes pre-training tiny-sd-faces and ~3
# tiny-sd; a changed config is a new revision and is pre-trained again (the pre-training itself
# stays tested: tests/test_zoo.py). The hash is verified before loading.
SHIPPED = Path(__file__).resolve().parent / "zoo_weights"


def ensure(name: str, root: Path) -> Path:
    """Path of the built zoo model, building it once (atomically) if missing."""
    from .errors import BenchError

    if not known(name):
        raise BenchError(f"unknown zoo model {name!r}; the zoo has: {', '.join(models())}")
    final = root / f"{name}-{zoo_revision(name)}"
    if (final / "ZOO.json").is_file():
        if recorded_hashes(final) is not None:
            verify(name, final)
            return final
        shutil.rmtree(final)  # built before weight hashes were recorded: build again (deterministic) to record them
    remove_stale_temp(root, ".tmp-")  # leftovers of killed builds
    tmp = root / temp_name(f".tmp-{name}")
    try:
        build(name, tmp)
        root.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:  # built concurrently by another process
            if not (final / "ZOO.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
