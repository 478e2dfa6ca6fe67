"""A tiny pixel-space DDPM for the tiny profile's DiffPure / GrIDPure.

Why: pixel DiffPure needs an unconditional image DDPM (the papers use guided-diffusion's
256x256 ImageNet model; a face DDPM such as google/ddpm-celebahq-256 is the paper-profile
default here). Neither runs offline on a CPU, so the tiny profile builds its own: a small
diffusers UNet2DModel with DDPM's linear noise schedule, built from a config with a fixed
seed and pre-trained briefly and deterministically on 64 px crops of the pictures that ship
inside scikit-image (the same pool as bench/zoo.py's tiny-sd). It is saved ONCE per machine
in diffusers layout under the zoo root (atomic rename) and loaded with `from_pretrained`,
exactly like real weights. It is a (very small) working denoiser, not a face model.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from bench.artifacts import stable_hash

VERSION = "1"
NAME = "tiny-ddpm"

TINY_DDPM = {
    "unet": dict(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ),
    # DDPM (Ho et al. 2020) / guided-diffusion linear schedule: betas 1e-4 .. 0.02 over 1000 steps,
    # x0 clipped to [-1, 1] (guided-diffusion p_sample clip_denoised=True, as DiffPure runs it).
    "scheduler": dict(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        clip_sample=True,
        variance_type="fixed_small",
        prediction_type="epsilon",
    ),
    # SDEdit purification only visits small t (GrIDPure t=10, DiffShortcut's pixel DiffPure t=100),
    # so half of every batch draws t below `small_t`; the other half covers the whole range.
    # Crops of 32 px from the 64 px pool keep the build near a minute on 2 CPU cores; the UNet
    # is convolutional and runs on 64 px images and 32 px GrIDPure windows alike.
    "pretrain": dict(steps=300, lr=1e-3, batch=8, pool_size=64, crop=32, small_t=150, seed=0),
}


def revision() -> str:
    return f"{NAME}{VERSION}-{stable_hash(TINY_DDPM, 10)}"


def pretrain(unet, scheduler, cfg: dict) -> list[float]:
    """Deterministic denoising pre-training on random 64 px crops (bench.zoo's picture pool)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from bench.zoo import _pretrain_pool

    size, batch, seed = cfg["crop"], cfg["batch"], cfg["seed"]
    pool = _pretrain_pool(cfg["pool_size"])
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    n_t = scheduler.config.num_train_timesteps
    losses = []
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"])
    unet.train()
    for _ in range(cfg["steps"]):
        crops = []
        for _ in range(batch):
            img = pool[rng.integers(len(pool))]
            y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
            crop = img[y : y + size, x : x + size]
            crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
        x0 = torch.from_numpy(np.stack(crops).copy()).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        half = batch // 2
        t = torch.cat([
            torch.randint(0, cfg["small_t"], (half,), generator=g),
            torch.randint(0, n_t, (batch - half,), generator=g),
        ])
        noise = torch.randn(x0.shape, generator=g)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    unet.eval().requires_grad_(False)
    return losses


def build(out_dir: Path) -> None:
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from bench.models import quiet_hf

    quiet_hf()
    torch.manual_seed(TINY_DDPM["pretrain"]["seed"])
    unet = UNet2DModel(**TINY_DDPM["unet"])
    scheduler = DDPMScheduler(**TINY_DDPM["scheduler"])
    # One intra-op thread: these small kernels gain little from a second thread, and on a
    # shared 2-core machine the OpenMP workers' busy waiting made the build ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = pretrain(unet, scheduler, TINY_DDPM["pretrain"])
    finally:
        torch.set_num_threads(threads)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out_dir, safe_serialization=True)
    head, tail = losses[:20], losses[-20:]
    (out_dir / "ZOO.json").write_text(json.dumps({
        "name": NAME, "revision": revision(),
        "loss_first20": sum(head) / len(head), "loss_last20": sum(tail) / len(tail),
    }))


def ensure(root: Path) -> Path:
    """Path of the built tiny DDPM (diffusers layout), building it once, atomically."""
    root = Path(root)
    final = root / revision()
    if (final / "ZOO.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{NAME}-{uuid.uuid4().hex[:8]}"
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # built concurrently by another process
            if not (final / "ZOO.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
