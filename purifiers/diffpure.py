"""DiffPure (Nie et al., ICML 2022): SDEdit purification - diffuse the protected image a
little, then denoise it with a diffusion model - in pixel space (an unconditional DDPM)
or in latent space (Stable Diffusion img2img, RID's "Diffpure" and seed 002's
LatentDiffPure). DDSPure's optimal-timestep rule is an option for both."""

from __future__ import annotations

from PIL import Image

from bench import sd
from bench.params import Needs, Param
from bench.plugin import Purifier
from bench.sd import SAMPLERS

from . import sdedit

SEED002 = "seed 002 (DiffShortcut) App. C.1 item 4"
RID = "RID (seed 000) Diffpure setting, via shared/reference/methods.md"


class DiffPure(Purifier):
    name = "diffpure"
    links = {"paper": "https://arxiv.org/abs/2205.07460 (RID's SD img2img setting)"}
    aliases = ("diff-pure", "sdedit")
    summary = "SDEdit purification with a pixel DDPM (space=pixel) or SD img2img (space=latent); DDSPure timestep optional."
    version = "1"
    params = [
        Param("space", str, "pixel", choices=("pixel", "latent"),
              source=SEED002 + ": PixelDiffPure (pixel DDPM) and LatentDiffPure (SD)", help="where the SDEdit runs"),
        Param("timestep_rule", str, "fixed", choices=("fixed", "ddspure"), source=sdedit.DDS_SOURCE,
              help="fixed: use t / strength; ddspure: t* from the noise level dds_sigma"),
        Param("dds_sigma", float, 11.0, source="DiffShortcut ddspure.py --perturb_r 11 (= the protection's 11/255 radius)",
              help="DDSPure smoothing noise level", gt=0, le=255, unit="px/255"),
        Param("dds_convention", str, "diffshortcut", choices=("diffshortcut", "carlini"), source=sdedit.DDS_SOURCE,
              help="diffshortcut: sigma = dds_sigma/255; carlini: x2 for the model's [-1, 1] range"),
        # pixel space
        Param("t", int, 100, tiny=20,
              source="GrIDPure diffpure.py --pure_steps 100; DiffShortcut pdiffp.py t=100; tiny: 20 (the 300-step tiny DDPM "
                     "leaves speckle from t ~ 50 on)",
              help="pixel: diffusion steps (of the model's 1000) to noise and denoise", ge=0, le=1000),
        Param("pixel_model", str, sdedit.TINY_PIXEL_MODEL, paper=sdedit.PAPER_PIXEL_MODEL,
              source="paper: a face DDPM in diffusers format (seed 002 used guided-diffusion 256x256_diffusion_uncond); "
                     "tiny: purifiers/tiny_ddpm.py", help="pixel: zoo:tiny-ddpm, hub id or local diffusers folder"),
        Param("resize", bool, True, source="GrIDPure diffpure.py / DiffShortcut ddspure.py resize to the model's 256 px and back",
              help="pixel: resize to the model's sample size and back"),
        # latent space
        Param("strength", float, 0.1, source=RID + ": strength 0.1", help="latent: img2img strength", ge=0, le=1),
        Param("prompt", str, "A photo of a person", source=RID + ": prompt 'A photo of a person'",
              help="latent: conditioning prompt (seed 002 LatentDiffPure: 'a photo of [class_name], high quality, highres')"),
        Param("guidance_scale", float, 7.5, source=RID + ": CFG 7.5", ge=0),
        Param("negative_prompt", str, "", source=RID + " gives prompt and CFG only: no negative prompt",
              help="latent: negative prompt"),
        Param("steps", int, 50, source="diffusers StableDiffusionImg2ImgPipeline default num_inference_steps=50",
              help="latent: sampler steps for strength 1 (strength x steps are run)", ge=1),
        Param("sampler", str, "ddim", choices=tuple(SAMPLERS), source=RID + " does not name the scheduler; ours: DDIM "
              "(deterministic given the seed)", help="latent: scheduler of the img2img pipeline"),
        Param("model", str, "", source="ours: the cell's base model, so a purifier adds no second SD to a protocol group",
              help="latent: SD model (zoo:name, hub id or folder); empty = the profile's base model"),
    ]
    needs = Needs(weights=("pixel DDPM (space=pixel) or SD base model (space=latent)",), gpu_memory_gb={"paper": 8.0})

    def purify(self, images, ctx):
        if self.p.space == "pixel":
            return self._pixel(images, ctx)
        return self._latent(images, ctx)

    # ------------------------------------------------------------ pixel
    def _pixel(self, images, ctx):
        unet, sched_cfg = sdedit.load_pixel_model(sdedit.resolve_pixel_model(self.p.pixel_model, ctx.zoo_root), ctx.device)
        t = self.p.t
        if self.p.timestep_rule == "ddspure":
            from diffusers import DDPMScheduler

            abar = DDPMScheduler.from_config(sched_cfg).alphas_cumprod
            t = sdedit.dds_timestep(abar, sdedit.dds_sigma_model_units(self.p.dds_sigma, self.p.dds_convention))
        size = unet.config.sample_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        out = []
        for i, img in enumerate(ctx.track(images, "diffpure (pixel)", len(images))):
            h, w = img.shape[:2]
            work = img if not self.p.resize or not size or (h, w) == (size, size) else _resize(img, size, size)
            x = sd.to_tensor([work], ctx.device)
            y = sd.to_uint8(sdedit.pixel_sdedit(unet, sched_cfg, x, t, ctx.generator(i)))[0]
            out.append(y if y.shape == img.shape else _resize(y, h, w))
        ctx.notes["purifier"] = {"space": "pixel", "t": t, "model": self.p.pixel_model}
        return out

    # ----------------------------------------------------------- latent
    def _latent(self, images, ctx):
        from bench.models import load_sd

        base = sdedit.resolve_sd(self.p.model, self.profile, ctx.zoo_root)
        parts = load_sd(base, ctx.device)
        pipe = sdedit.img2img_pipeline(parts, self.p.sampler)
        strength = self.p.strength
        if self.p.timestep_rule == "ddspure":
            sched = parts["scheduler"]
            t = sdedit.dds_timestep(sched.alphas_cumprod, sdedit.dds_sigma_model_units(self.p.dds_sigma, self.p.dds_convention))
            strength = t / sched.config.num_train_timesteps
        out = [
            sdedit.latent_sdedit(pipe, img, self.p.prompt, strength, self.p.steps, self.p.guidance_scale,
                                 self.p.negative_prompt, ctx.generator(i))
            for i, img in enumerate(ctx.track(images, "diffpure (latent)", len(images)))
        ]
        ctx.notes["purifier"] = {
            "space": "latent", "strength": strength, "denoising_steps": int(self.p.steps * strength),
            "model": base.source, "revision": base.revision,
        }
        return out


def _resize(img, h, w):
    import numpy as np

    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))
