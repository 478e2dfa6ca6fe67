"""Shared Stable Diffusion math for defenses and attacks: image <-> tensor,
prompt encoding, the denoising loss (with DreamBooth prior preservation), and
sampling with the profile's sampler. It knows SD, not any method."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(images: list[np.ndarray], device: str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) list -> float tensor (N, 3, H, W) in [-1, 1] (SD's input range)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return x.to(device)


def to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in arr]


def encode_prompts(parts: dict[str, Any], prompts: list[str]) -> torch.Tensor:
    tok = parts["tokenizer"]
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
    enc = parts["text_encoder"]
    return enc(ids.to(enc.device))[0]


def encode_images(parts: dict[str, Any], x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    vae = parts["vae"]
    dist = vae.encode(x.to(vae.dtype)).latent_dist
    return dist.sample(generator=generator) * vae.config.scaling_factor


def denoising_loss(
    parts: dict[str, Any],
    x: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator | None = None,
    timesteps: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """The LDM training loss ||eps - eps_theta(z_t, t, c)||^2 at random t (or given t)."""
    unet, sched = parts["unet"], parts["scheduler"]
    latents = encode_images(parts, x, generator)
    noise = torch.randn(latents.shape, generator=generator, device="cpu").to(latents.device, latents.dtype)
    if timesteps is None:
        timesteps = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    timesteps = timesteps.to(latents.device)
    noisy = sched.add_noise(latents, noise, timesteps)
    if cond.shape[0] != latents.shape[0]:
        cond = cond.expand(latents.shape[0], -1, -1)
    pred = unet(noisy, timesteps, cond).sample
    target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(latents, noise, timesteps)
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return loss.mean() if reduction == "mean" else loss


def dreambooth_loss(
    parts: dict[str, Any],
    instance: torch.Tensor,
    instance_cond: torch.Tensor,
    class_images: torch.Tensor | None,
    class_cond: torch.Tensor | None,
    prior_weight: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DreamBooth objective: instance loss + prior_weight x class (prior preservation) loss."""
    loss = denoising_loss(parts, instance, instance_cond, generator)
    if class_images is not None and prior_weight > 0:
        loss = loss + prior_weight * denoising_loss(parts, class_images, class_cond, generator)
    return loss


SAMPLERS = {
    "dpm-solver": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}


DTYPES = ("fp32", "fp16", "bf16")


def inference_dtype(name: str, device: str):
    """Weights' dtype for generation: half precision only on CUDA (CPU kernels are fp32)."""
    import torch

    if name not in DTYPES:
        from .errors import BenchError

        raise BenchError(f"unknown dtype {name!r}; choose one of {list(DTYPES)}")
    if not device.startswith("cuda"):
        return torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def pipeline(parts: dict[str, Any], sampler: str):
    import diffusers
    from diffusers import StableDiffusionPipeline

    from .errors import BenchError

    if sampler not in SAMPLERS:
        raise BenchError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
    sched = getattr(diffusers, SAMPLERS[sampler]).from_config(parts["scheduler"].config)
    pipe = StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=parts["unet"],
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(
    pipe,
    prompts: list[str],
    seeds: list[int],
    steps: int,
    guidance_scale: float,
    negative_prompt: str,
    resolution: int,
    batch_size: int = 1,
    **extra: Any,
) -> list[np.ndarray]:
    """One image per (prompt, seed); each image's initial noise comes from its own seed
    (a generator per image), so batching changes speed, not which noise an image gets."""
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk_p, chunk_s = prompts[i:i + batch_size], seeds[i:i + batch_size]
        gens = [torch.Generator(device="cpu").manual_seed(s) for s in chunk_s]
        images = pipe(
            chunk_p,
            negative_prompt=[negative_prompt] * len(chunk_p) if negative_prompt else None,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            height=resolution,
            width=resolution,
            generator=gens if len(gens) > 1 else gens[0],
            output_type="np",
            **extra,
        ).images
        out += [np.clip(np.round(img * 255), 0, 255).astype(np.uint8) for img in images]
    return out
