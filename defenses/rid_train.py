"""Training a RID perturbation network (Guo et al., arXiv 2412.09844, Methods).

Objective (paper Eq. 11; RID-Ensemble Eq. 14)::

    1/N sum_i E_{x~D}[L_Sur-Adv-SDS^(i)(phi, x)] + lambda E_{x~D'}[|| delta_phi(x) - delta_iw(x) ||_1]

* Surrogate Adv-SDS (Eq. 9): z_t = sqrt(abar_t) E(x + delta_phi(x)) + sqrt(1 - abar_t) eps,
  loss = 0.5 * mse(z_t, stop_grad(z_t + w(t) (eps_theta(z_t, t, null) - eps))).
  Its gradient w.r.t. z_t is -w(t)(eps_theta - eps): DESCENDING it moves the defended
  latents along +(eps_theta - eps), i.e. UP the diffusion loss, without the UNet
  Jacobian (so the UNet runs under no_grad; only the VAE encoder and RID carry
  gradients). The form (0.5 * mse against a detached target, w(t) = 1 - abar_t, null
  text) follows Guohanzhong/RID train_sd_ensemble_dmd.py; the paper (Sec.
  "Adversarial score distillation sampling") states a constant w as the simplification,
  available here as weighting="constant".
* Regression (Eq. 10): L1 between RID's perturbation and a precomputed image-wise
  perturbation, both in [-1, 1] model units, on D' = 10% of the data (paper Sec.
  "Training details": 7,000 of 70,000 images perturbed by Anti-DreamBooth ASPL).
  lambda = 3 (paper, after Eq. 11).
* Two loaders (paper Sec. "Training details"): a paired loader (clean image + its
  precomputed perturbation) feeding the regression, an unpaired loader (the other
  images) feeding Adv-SDS, as in the reference where the Adv-SDS batch ("images") and
  the regression batch ("source_images") are separate.
* RID-Ensemble (Eq. 13-14): the Adv-SDS term is averaged over N surrogate base models
  (paper: SD 1.4, 1.5, 2.1). Members given as the same model are loaded once and differ
  only in their (t, noise) random streams (the tiny profile: the zoo model listed twice).

Units: the network outputs tanh * eps_255/255 added in [-1, 1] space, i.e. eps_255/2
pixel levels (see defenses/rid_net.py); the training budget is given in PIXEL levels
and converted once (``eps_255 = 2 * eps_px``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench import sd
from bench.errors import BenchError
from bench.params import parse_assignments

from .rid_net import RIDNet

PAPER = "Guo et al. 2024 (arXiv 2412.09844) RID"
REF_TRAIN = "Guohanzhong/RID train_sd_ensemble_dmd.py"


@dataclass
class RIDTrainConfig:
    """Everything that determines the trained generator (hashed into the artifact key)."""

    eps_px: float = 6.0            # pixel levels; released eps-12_255 checkpoint = 6 levels
    input_size: int = 64           # tiny: 64 (released: 512)
    patch_size: int = 8            # tiny: 8 (released: 16)
    hidden_size: int = 96          # tiny: 96 (released: 1152)
    depth: int = 2                 # tiny: 2 (released: 14)
    num_heads: int = 4             # tiny: 4 (released: 8)
    steps: int = 120
    batch_size: int = 4
    lr: float = 1e-3
    reg_weight: float = 3.0        # lambda, paper after Eq. 11
    paired_fraction: float = 0.1   # |D'| / |D|, paper "Training details"
    num_images: int = 40           # tiny training set size (random crops of the zoo pool)
    weighting: str = "reference"   # "reference": w(t) = 1 - abar_t; "constant": w = 1
    ensemble: int = 2              # N surrogates when only the base model is given
    reg_method: str = "aspl"       # precomputed image-wise perturbations: "aspl" or "advdm"
    reg_steps: int = 2             # ASPL outer steps / AdvDM PGD steps for the paired subset
    seed: int = 0
    surrogates: list[str] = field(default_factory=list)  # extra base models for RID-Ensemble

    def net_kwargs(self) -> dict[str, Any]:
        return dict(input_size=self.input_size, patch_size=self.patch_size, in_channels=3,
                    hidden_size=self.hidden_size, depth=self.depth, num_heads=self.num_heads, mlp_ratio=4.0)


def check_config(cfg: RIDTrainConfig) -> None:
    if cfg.input_size % cfg.patch_size:
        raise BenchError(f"rid: input_size {cfg.input_size} is not a multiple of patch_size {cfg.patch_size}")
    if cfg.hidden_size % cfg.num_heads or cfg.hidden_size % 4:
        raise BenchError(f"rid: hidden_size {cfg.hidden_size} must be divisible by num_heads {cfg.num_heads} and by 4")
    if cfg.weighting not in ("reference", "constant"):
        raise BenchError(f"rid: weighting {cfg.weighting!r} is not one of ['reference', 'constant']")
    if cfg.reg_method not in ("aspl", "advdm"):
        raise BenchError(f"rid: reg_method {cfg.reg_method!r} is not one of ['aspl', 'advdm']")
    if not 0 < cfg.paired_fraction < 1:
        raise BenchError(f"rid: paired_fraction must be in (0, 1), got {cfg.paired_fraction}")


# ------------------------------------------------------------------ data
def tiny_dataset(size: int, count: int, seed: int) -> list[np.ndarray]:
    """`count` seeded random crops (size x size, random flips) of the zoo's pretraining pool:
    scikit-image pictures + the sample card's face views. Identity-independent, so one
    trained generator serves every cell."""
    from bench.zoo import _pretrain_pool

    pool = _pretrain_pool(size)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        img = pool[rng.integers(len(pool))]
        y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        crop = img[y:y + size, x:x + size]
        out.append(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return out


def precompute_perturbations(images: list[np.ndarray], base, ctx, cfg: RIDTrainConfig) -> tuple[torch.Tensor, str]:
    """Image-wise perturbations (adv - clean, [-1, 1] units) for the paired subset D'.

    The paper uses Anti-DreamBooth (ASPL) "under default settings"; on the tiny profile
    a few outer steps, without prior preservation (no class images to generate)."""
    from bench.plugin import Subject

    subject = Subject(identity="rid-train", train=images, surrogate=images, reference=images)
    if cfg.reg_method == "aspl":
        from .aspl import ASPL

        plugin = ASPL({"eps": cfg.eps_px, "outer_steps": cfg.reg_steps, "prior_weight": 0.0}, "tiny")
    else:
        from .advdm import AdvDM

        plugin = AdvDM({"eps": cfg.eps_px, "steps": max(cfg.reg_steps, 1), "alpha": 1.0}, "tiny")
    notes = dict(ctx.notes)
    adv = plugin.protect(subject, base, ctx)
    ctx.notes.clear()
    ctx.notes.update(notes)
    return sd.to_tensor(adv) - sd.to_tensor(images), cfg.reg_method


# --------------------------------------------------------------- the loss
def adv_sds_loss(parts: dict[str, Any], x_def: torch.Tensor, cond: torch.Tensor, generator: torch.Generator,
                 weighting: str = "reference") -> torch.Tensor:
    """Surrogate Adv-SDS (Eq. 9) on defended images x_def ([-1, 1]); minimise it to
    raise the diffusion loss. The UNet runs without a graph (the Jacobian is dropped)."""
    sched = parts["scheduler"]
    latents = sd.encode_images(parts, x_def, generator)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=generator).to(latents.device)
    z_t = sched.add_noise(latents, noise, t)
    with torch.no_grad():
        c = cond.expand(latents.shape[0], -1, -1) if cond.shape[0] != latents.shape[0] else cond
        pred = parts["unet"](z_t.detach(), t, c).sample
        target_eps = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(latents, noise, t)
        if weighting == "reference":
            w = (1.0 - sched.alphas_cumprod.to(latents.device)[t]).view(-1, 1, 1, 1).to(latents)
        else:
            w = torch.ones(latents.shape[0], 1, 1, 1).to(latents)
        target = z_t + w * (pred - target_eps)
    return 0.5 * F.mse_loss(z_t.float(), target.float())


# --------------------------------------------------------------- training
def _load_members(base, cfg: RIDTrainConfig, ctx) -> list[dict[str, Any]]:
    """The N surrogates: [base] * ensemble when no extra models are given, else base + surrogates."""
    from bench.models import load_sd, resolve

    refs = [base] * max(cfg.ensemble, 1) if not cfg.surrogates else [base]
    for entry in cfg.surrogates:
        local = Path(str(entry)).expanduser()
        refs.append(resolve({"path": str(local)} if local.is_dir() else {"id": str(entry)}, ctx.zoo_root))
    loaded: dict[str, dict[str, Any]] = {}
    members = []
    for ref in refs:
        key = str(ref.path)
        if key not in loaded:
            loaded[key] = load_sd(ref, ctx.device)
        members.append(loaded[key])
    return members


def train(base, ctx, cfg: RIDTrainConfig, images: list[np.ndarray] | None = None,
          log: Callable[[str], None] | None = None) -> tuple[RIDNet, dict[str, Any]]:
    """Train a RID network on `images` (default: the tiny dataset) against `base` (+ ensemble).

    Runs with ONE torch thread on CPU (restored afterwards): the tiny model's many small
    ops make a second OpenMP thread spin, and on 2 shared cores the same training took
    28 s with one thread vs 195-406 s with two (tests/test_rid.py, docs/rid.md)."""
    check_config(cfg)
    threads = torch.get_num_threads()
    if not str(ctx.device).startswith("cuda"):
        torch.set_num_threads(1)
    try:
        return _train(base, ctx, cfg, images, log)
    finally:
        torch.set_num_threads(threads)


def _train(base, ctx, cfg: RIDTrainConfig, images: list[np.ndarray] | None,
           log: Callable[[str], None] | None) -> tuple[RIDNet, dict[str, Any]]:
    started = time.time()
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed + 7)
    images = images if images is not None else tiny_dataset(cfg.input_size, cfg.num_images, cfg.seed)
    images = [np.asarray(im) for im in images]
    if any(im.shape[:2] != (cfg.input_size, cfg.input_size) for im in images):
        from bench.images import center_crop_resize

        images = [center_crop_resize(im, cfg.input_size) for im in images]
    n_paired = max(1, int(round(cfg.paired_fraction * len(images))))
    if n_paired >= len(images):
        raise BenchError(f"rid: {len(images)} training images leave none unpaired at paired_fraction {cfg.paired_fraction}")
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    paired_idx, unpaired_idx = order[:n_paired], order[n_paired:]
    paired_x = sd.to_tensor([images[i] for i in paired_idx], ctx.device)
    unpaired_x = sd.to_tensor([images[i] for i in unpaired_idx], ctx.device)
    t0 = time.time()
    paired_delta, reg_method = precompute_perturbations([images[i] for i in paired_idx], base, ctx, cfg)
    paired_delta = paired_delta.to(ctx.device)
    reg_seconds = time.time() - t0

    members = _load_members(base, cfg, ctx)
    with torch.no_grad():
        null = {id(m): sd.encode_prompts(m, [""]) for m in members}  # null text conditioning
    gens = [torch.Generator().manual_seed(cfg.seed + 1000 * (i + 1)) for i in range(len(members))]

    net = RIDNet(**cfg.net_kwargs(), eps_255=2.0 * cfg.eps_px).to(ctx.device)
    _init_alive(net, cfg.seed)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    trace_sds, trace_reg = [], []
    b = cfg.batch_size
    with ctx.progress("rid training", cfg.steps) as advance:
        for step in range(cfg.steps):
            u = unpaired_x[torch.randint(0, len(unpaired_x), (b,), generator=g)]
            pi = torch.randint(0, len(paired_x), (max(1, b // 4),), generator=g)
            p_x, p_d = paired_x[pi], paired_delta[pi]
            delta = net(torch.cat([u, p_x]))
            d_u, d_p = delta[: len(u)], delta[len(u):]
            sds = torch.stack([adv_sds_loss(m, u + d_u, null[id(m)], gm, cfg.weighting)
                               for m, gm in zip(members, gens)]).mean()
            reg = F.l1_loss(d_p, p_d)
            loss = sds + cfg.reg_weight * reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            trace_sds.append(round(float(sds.detach()), 5))
            trace_reg.append(round(float(reg.detach()), 5))
            advance()
    net.eval()
    info = {
        "config": asdict(cfg), "reg_method": reg_method, "reg_seconds": round(reg_seconds, 2),
        "n_images": len(images), "n_paired": n_paired, "n_surrogates": len(members),
        "surrogates": [str(base.source)] * (len(members) if not cfg.surrogates else 1) + list(cfg.surrogates),
        "sds_trace": trace_sds, "reg_trace": trace_reg, "seconds": round(time.time() - started, 2),
    }
    if log:
        log(f"rid: trained {cfg.steps} steps in {info['seconds']} s (paired perturbations: {reg_method}, "
            f"{n_paired}/{len(images)} images; N={len(members)} surrogates)")
    return net, info


def _init_alive(net: RIDNet, seed: int) -> None:
    """DiT's adaLN-Zero init zeroes the final layer, so tanh(0) = 0 and the zero
    condition never changes that gradient path's modulation; start from small
    non-zero modulation biases so every block contributes from the first step."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not p.requires_grad:
                continue
            if name.endswith("weight") and p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * p.shape[1] ** -0.5 if p.ndim == 2
                        else torch.randn(p.shape, generator=gen) * float(np.prod(p.shape[1:])) ** -0.5)
            elif "adaLN_modulation" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.zero_()
        net.final_layer.linear.weight.mul_(0.1)  # start near tanh's linear range


# ------------------------------------------------------------ save / load
def save(net: RIDNet, path: Path) -> None:
    """safetensors in the released key layout (loadable with rid_net.load_checkpoint)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}, str(path))


def cached_generator(base, ctx, cfg: RIDTrainConfig) -> tuple[Path, dict[str, Any]]:
    """The trained generator as an artifact (stage 'rid_generator'): trained once per
    (base model, config), reused by every cell. Returns (weights file, meta)."""
    check_config(cfg)
    inputs = {"base": str(base.source), "revision": base.revision, "config": asdict(cfg), "version": 1}

    def build(out: Path) -> dict[str, Any]:
        net, info = train(base, ctx, cfg, log=ctx.log)
        save(net, out / "rid.safetensors")
        return {k: v for k, v in info.items() if k not in ("config",)}

    art = ctx.cached("rid_generator", inputs, build)
    return art.path / "rid.safetensors", art.meta


# ------------------------------------------------------------------- CLI
def cli_train(plugin_cls, base_id: str, home: Path, sets: list[str], out: Path | None, device: str, quiet: bool,
              log: Callable[[str], None] = print) -> Path:
    """`bench train rid` (RID.train): train (or reuse) the generator exactly as `bench run --defense
    rid` does without a checkpoint (same artifact store, same key), optionally export it. The
    plugin class is passed in, so this module does not import rid.py (which imports it)."""
    import shutil

    from bench.artifacts import ArtifactStore
    from bench.context import Context
    from bench.models import resolve

    plugin = plugin_cls(parse_assignments(sets, "defense", "train_steps=200"), "tiny")
    if plugin.p.checkpoint:
        raise BenchError("bench train rid: checkpoint= is for inference; drop it to train")
    ctx = Context(profile="tiny", seed=0, resolution=plugin.train_config().input_size, store=ArtifactStore(home / "artifacts"),
                  home=home, device=device, quiet=quiet, log=log)
    base = resolve({"id": base_id} if not Path(base_id).expanduser().is_dir() else {"path": base_id}, ctx.zoo_root)
    path, meta = cached_generator(base, ctx, plugin.train_config())
    sds = meta.get("sds_trace") or [0.0]
    log(f"rid generator: {path} ({meta.get('seconds')} s; Adv-SDS loss {sds[0]:.4g} -> {np.mean(sds[-10:]):.4g}; "
        f"paired perturbations: {meta.get('reg_method')})")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        log(f"wrote {out} (load with defense.checkpoint={out} defense.config="
            f"input_size={plugin.train_config().input_size},patch_size={plugin.train_config().patch_size},"
            f"hidden_size={plugin.train_config().hidden_size},depth={plugin.train_config().depth},"
            f"num_heads={plugin.train_config().num_heads})")
    return path
