"""SDEdit machinery shared by DiffPure and GrIDPure: pixel-space DDPM purification,
latent (Stable Diffusion img2img) purification, DDSPure's optimal timestep, and
resolving the diffusion models they use. It knows diffusion, not any purifier.

Images enter and leave as float tensors (N, 3, H, W) in [-1, 1] (the models' range);
`to_tensor`/`to_uint8` in bench.sd convert from/to the uint8 contract images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError

# The paper-profile pixel model: a face DDPM in diffusers format. Seed 002 (C.1) and the
# GrIDPure code use guided-diffusion's 256x256_diffusion_uncond (ImageNet), which is not a
# diffusers model; pass a local diffusers UNet2DModel folder to use any other DDPM.
PAPER_PIXEL_MODEL = "google/ddpm-celebahq-256"
TINY_PIXEL_MODEL = "zoo:tiny-ddpm"

DDS_SOURCE = (
    "DDSPure: Carlini et al. 2023 (Certified!! robustness for free, DDS): t* with (1-abar_t)/abar_t = sigma^2, "
    "seed 002 App. C.1 item 5; DiffShortcut diffshortcut/defenses/ddspure.py get_opt_t (sigma = r/255, r = 11)"
)


# ----------------------------------------------------------------- timesteps
def dds_timestep(alphas_cumprod: torch.Tensor | np.ndarray, sigma: float) -> int:
    """DDSPure's t*: the DDPM step whose noise-to-signal ratio (1 - abar_t) / abar_t equals
    sigma^2 (sigma in the model's [-1, 1] units), i.e. abar_t closest to 1 / (1 + sigma^2).
    Returns t in 1..T (step t uses alphas_cumprod[t - 1]); seed 002 clips t* to the range."""
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    target = 1.0 / (1.0 + float(sigma) ** 2)
    return int(np.argmin(np.abs(abar - target))) + 1


def dds_sigma_model_units(sigma_px: float, convention: str) -> float:
    """sigma in 0-255 pixel units -> the model's [-1, 1] units.

    "carlini": x2 because [0, 1] -> [-1, 1] doubles every distance (Carlini et al. DDS);
    "diffshortcut": sigma/255 as DiffShortcut's ddspure.py passes it (no x2)."""
    return (2.0 if convention == "carlini" else 1.0) * sigma_px / 255.0


# ----------------------------------------------------------- model loading
def resolve_pixel_model(spec: str, zoo_root: Path) -> Path:
    """`zoo:tiny-ddpm`, a local diffusers folder, or a hub id (cached / downloaded)."""
    if spec == TINY_PIXEL_MODEL:
        from . import tiny_ddpm

        return tiny_ddpm.ensure(zoo_root)
    local = Path(spec).expanduser()
    if local.is_dir():
        return local
    from bench.models import offline

    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=offline(), allow_patterns=["*.json", "*.safetensors", "*.bin"]))
    except Exception as exc:
        raise BenchError(
            f"pixel diffusion model {spec!r} is not available ({exc.__class__.__name__}); download it on a connected "
            "machine and pass --set purifier.pixel_model=/path/to/diffusers/folder"
        ) from None


def load_pixel_model(folder: Path, device: str = "cpu"):
    """(UNet2DModel, DDPMScheduler config) from a DDPMPipeline folder or a bare UNet folder."""
    from diffusers import DDPMScheduler, UNet2DModel

    from bench.models import quiet_hf

    quiet_hf()
    sub = "unet" if (folder / "unet").is_dir() else None
    try:
        unet = UNet2DModel.from_pretrained(folder, subfolder=sub)
        sched_dir = folder / "scheduler" if (folder / "scheduler").is_dir() else folder
        scheduler = DDPMScheduler.from_pretrained(sched_dir)
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot load a pixel DDPM from {folder}: {str(exc).splitlines()[0]}") from None
    unet.to(device).eval().requires_grad_(False)
    return unet, scheduler.config


def resolve_sd(spec: str, profile: str, zoo_root: Path):
    """The latent model: `spec` (zoo:name, local folder or hub id) or, when empty, the
    profile's base model (purifiers are not handed the cell's base model)."""
    from bench import models
    from bench.profiles import PROFILES

    if not spec:
        source = dict(PROFILES[profile]["base_model"])
    elif Path(spec).expanduser().is_dir():
        source = {"path": spec}
    else:
        source = {"id": spec}
    try:
        return models.resolve(source, zoo_root)
    except BenchError as exc:
        raise BenchError(f"{exc} (for this purifier: --set purifier.model=/path/to/diffusers/folder)") from None


# ------------------------------------------------------------ purification
@torch.no_grad()
def pixel_sdedit(unet, scheduler_config, x: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
    """DiffPure (Nie et al. 2022) with a DDPM: diffuse to step t,
    x_t = sqrt(abar[t-1]) x + sqrt(1 - abar[t-1]) eps, then t ancestral DDPM steps
    (t-1 ... 0) back, as NVlabs/DiffPure runners/diffpure_guided.py image_editing_sample.
    t = 0 returns the input unchanged."""
    from diffusers import DDPMScheduler

    if t <= 0:
        return x.clone()
    sched = DDPMScheduler.from_config(scheduler_config)
    if t > sched.config.num_train_timesteps:
        raise BenchError(f"diffusion timestep t={t} exceeds the model's {sched.config.num_train_timesteps} steps")
    sched.set_timesteps(sched.config.num_train_timesteps)  # every step: prev(t) = t - 1
    steps = sched.timesteps[-t:]
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    xt = sched.add_noise(x, noise, steps[:1].repeat(x.shape[0]))
    for s in steps:
        eps = unet(xt, s).sample
        xt = sched.step(eps, s, xt, generator=generator).prev_sample
    return xt.clamp(-1, 1)


def img2img_pipeline(parts: dict, sampler: str):
    """StableDiffusionImg2ImgPipeline over already-loaded SD components (bench.models.load_sd)."""
    import diffusers
    from diffusers import StableDiffusionImg2ImgPipeline

    from bench.sd import SAMPLERS

    sched = getattr(diffusers, SAMPLERS[sampler]).from_config(parts["scheduler"].config)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
        scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def vae_roundtrip(vae, x: torch.Tensor) -> torch.Tensor:
    """Decode(encode(x)) with the posterior mean: latent SDEdit at zero noise."""
    z = vae.encode(x.to(vae.dtype)).latent_dist.mode()
    return vae.decode(z).sample.float().clamp(-1, 1)


@torch.no_grad()
def latent_sdedit(pipe, image: np.ndarray, prompt: str, strength: float, steps: int, guidance: float,
                  negative_prompt: str, generator: torch.Generator) -> np.ndarray:
    """SD img2img (SDEdit in latent space) of one uint8 image; zero denoising steps
    (strength x steps < 1) is the VAE round trip, which the pipeline itself cannot run."""
    from PIL import Image

    from bench.sd import to_tensor, to_uint8

    if int(steps * strength) < 1:
        vae = pipe.vae
        x = to_tensor([image], str(vae.device))
        return to_uint8(vae_roundtrip(vae, x))[0]
    out = pipe(
        prompt=prompt, image=Image.fromarray(image), strength=strength, num_inference_steps=steps,
        guidance_scale=guidance, negative_prompt=negative_prompt or None, generator=generator, output_type="np",
    ).images[0]
    out = np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
    if out.shape != image.shape:  # the pipeline rounds sizes to multiples of the VAE factor
        out = np.asarray(Image.fromarray(out).resize((image.shape[1], image.shape[0]), Image.BICUBIC))
    return out
