"""InstantID (Wang et al. 2024; instantX-research/InstantID, pipeline_stable_diffusion_xl_instantid.py):
zero-shot identity-preserving generation on SDXL. The face embedding goes through a
Resampler to 16 tokens that feed (a) decoupled image cross-attention in the UNet (an
IP-Adapter) and (b) IdentityNet, a ControlNet whose only cross-attention input is those
tokens and whose spatial condition is the drawing of 5 facial keypoints.

Assembled from diffusers components: the checkpoint's Resampler + to_k_ip/to_v_ip keys are
the IP-Adapter Plus layout, so diffusers' `load_ip_adapter` loads InstantID's ip-adapter
file directly (IPAdapterPlusImageProjection + IPAdapterAttnProcessor2_0, 16 tokens); the
denoising loop below is InstantID's (IdentityNet gets the face tokens, not the prompt, as
encoder_hidden_states; the negative branch is the Resampler of a zero embedding).

InstantID is an SDXL method: it ignores the cell's (SD 1.x/2.x) base model and loads its
own `base_model`; both are recorded in ctx.notes["attack"].

Reference: the mean of the raw embeddings of every reference image with a face (InstantID
feeds insightface's un-normalised `embedding` of one image); keypoints from the reference
image with the largest detected face, rescaled to the generation resolution.
"""

from __future__ import annotations

import math

import numpy as np

from bench import sd
from bench.errors import BenchError
from bench.models import quiet_hf, resolve
from bench.params import Needs, Param
from bench.plugin import Attack

from attacks import face_ref

REPO = "instantX-research/InstantID README + pipeline_stable_diffusion_xl_instantid.py"
PIPE = "instantX-research/InstantID pipeline_stable_diffusion_xl_instantid.py"
# draw_kps (PIPE): colours per keypoint (eyes, nose, mouth corners), limbs from each point to
# the nose drawn as ellipses of half-width 4 px at 60% intensity, then discs of radius 10 px.
KPS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
KPS_LIMBS = ((0, 2), (1, 2), (3, 2), (4, 2))
STICK_WIDTH, DISC_RADIUS, DRAW_RESOLUTION = 4, 10, 1024  # px at SDXL's 1024 px working size


def draw_kps(kps: np.ndarray, size: int) -> np.ndarray:
    """InstantID's keypoint image on a size x size black canvas (uint8 RGB). The pixel widths
    are InstantID's at 1024 px, scaled by size/1024 (at least 1 px) so the drawing covers the
    same fraction of the image at every resolution."""
    import cv2

    f = size / DRAW_RESOLUTION
    stick, radius = max(1, round(STICK_WIDTH * f)), max(1, round(DISC_RADIUS * f))
    kps = np.asarray(kps, dtype=np.float64)
    canvas = np.zeros((size, size, 3), dtype=np.float64)
    for a, b in KPS_LIMBS:
        x, y = kps[[a, b], 0], kps[[a, b], 1]
        length = math.hypot(x[0] - x[1], y[0] - y[1])
        angle = math.degrees(math.atan2(y[0] - y[1], x[0] - x[1]))
        poly = cv2.ellipse2Poly((int(np.mean(x)), int(np.mean(y))), (int(length / 2), stick), int(angle), 0, 360, 1)
        canvas = cv2.fillConvexPoly(canvas.copy(), poly, KPS_COLORS[a])
    canvas = (canvas * 0.6).astype(np.uint8)
    for i, (x, y) in enumerate(kps):
        canvas = cv2.circle(canvas.copy(), (int(x), int(y)), radius, KPS_COLORS[i], -1)
    return canvas


class InstantID(Attack):
    name = "instantid"
    links = {"paper": "https://arxiv.org/abs/2401.07519", "code": "https://github.com/instantX-research/InstantID"}
    summary = "Zero-shot: InstantID (SDXL + IdentityNet on face keypoints + face-embedding IP-Adapter)."
    version = "1"
    zero_shot = True
    params = [
        Param("base_model", str, "stabilityai/stable-diffusion-xl-base-1.0", tiny="zoo:tiny-sdxl", source=REPO + " (SDXL base)",
              help="an SDXL model (hub id, local diffusers folder or zoo:<name>); the cell's base model is not used"),
        Param("controlnet", str, "InstantX/InstantID", tiny="zoo:tiny-instantid-controlnet", source=REPO + ": IdentityNet checkpoint"),
        Param("controlnet_subfolder", str, "ControlNetModel", tiny="", source=REPO + ": checkpoints/ControlNetModel"),
        Param("adapter", str, "InstantX/InstantID", tiny="zoo:tiny-instantid", source=REPO + ": checkpoints/ip-adapter.bin"),
        Param("weight_name", str, "ip-adapter.bin", tiny="ip-adapter.safetensors", source=REPO),
        Param("ip_adapter_scale", float, 0.8, source=REPO + ": pipe.set_ip_adapter_scale(0.8); methods.md", ge=0),
        Param("controlnet_scale", float, 0.8, source=REPO + ": controlnet_conditioning_scale=0.8; methods.md", ge=0),
        Param("dtype", str, "fp16", tiny="fp32", choices=sd.DTYPES, source=REPO + ": torch_dtype=torch.float16 (CUDA only; CPU runs fp32)",
              help="weights' precision for generation on CUDA (memory)"),
        Param("face_encoder", str, "insightface-antelopev2", tiny="dlib", choices=face_ref.ENCODERS,
              source=REPO + ": FaceAnalysis(name='antelopev2'), det_size 640; tiny: MTCNN landmarks + dlib (128-d)"),
        Param("face_weights_dir", str, "", source="metrics/face_backends.py: insightface packs are read from disk, never downloaded",
              help="folder holding insightface packs (default ~/.insightface/models)"),
    ]
    needs = Needs(weights=("SDXL base", "InstantX/InstantID ControlNetModel + ip-adapter.bin", "insightface antelopev2 pack"))

    def personalize(self, images, base, recipe, ctx, out_dir):
        meta = face_ref.encode_reference(images, self.p.face_encoder, self.p.face_weights_dir, self.name, out_dir, "raw-mean")
        ctx.notes["attack"] = {"face_encoder": meta["encoder"], "faces_detected": sum(meta["detected"]),
                               "reference_images": meta["images"], "reference": meta["reference"],
                               "kps_image": meta["kps_image"]}

    # ----------------------------------------------------------- loading
    def load_pipeline(self, sampler: str, ctx):
        """SDXL + IdentityNet pipeline with InstantID's adapter loaded by diffusers."""
        import diffusers
        from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

        quiet_hf()
        if sampler not in sd.SAMPLERS:
            raise BenchError(f"unknown sampler {sampler!r}; choose one of {list(sd.SAMPLERS)}")
        model = resolve({"id": self.p.base_model}, ctx.zoo_root)
        cn_dir = face_ref.weights_folder(self.p.controlnet, ctx.zoo_root, self.name, "IdentityNet ControlNet",
                                         [f"{self.p.controlnet_subfolder}/*" if self.p.controlnet_subfolder else "*"])
        ad_dir = face_ref.weights_folder(self.p.adapter, ctx.zoo_root, self.name, "InstantID adapter", [self.p.weight_name])
        face_ref.check_file(ad_dir, self.p.weight_name, self.name, "adapter")
        try:
            dtype = sd.inference_dtype(self.p.dtype, ctx.device)
            controlnet = ControlNetModel.from_pretrained(cn_dir / self.p.controlnet_subfolder if self.p.controlnet_subfolder else cn_dir,
                                                         torch_dtype=dtype)
            pipe = StableDiffusionXLControlNetPipeline.from_pretrained(model.path, controlnet=controlnet, torch_dtype=dtype)
        except (OSError, ValueError, TypeError) as exc:
            raise BenchError(f"{self.name}: cannot load SDXL base {model.source} + IdentityNet {self.p.controlnet}: "
                             f"{str(exc).splitlines()[0][:160]}") from None
        try:
            pipe.load_ip_adapter(str(ad_dir), subfolder="", weight_name=self.p.weight_name, image_encoder_folder=None)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise BenchError(f"{self.name}: {self.p.weight_name} does not fit the base model {model.source} "
                             f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})") from None
        pipe.set_ip_adapter_scale(self.p.ip_adapter_scale)
        pipe.scheduler = getattr(diffusers, sd.SAMPLERS[sampler]).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(ctx.device)
        return pipe, model

    # ----------------------------------------------------------- generation
    def generate(self, personalized, base, gen, recipe, ctx):
        emb, meta = face_ref.load_reference(personalized, self.name)
        pipe, model = self.load_pipeline(gen.sampler, ctx)
        proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
        want = proj.proj_in.in_features
        if want != emb.shape[0]:
            raise BenchError(f"{self.name}: the adapter expects {want}-d face embeddings, face_encoder "
                             f"{meta['encoder']!r} gave {emb.shape[0]}-d; pair the encoder with its adapter")
        h, w = meta["kps_image_size"]
        kps = np.asarray(meta["kps"], dtype=np.float64) * np.array([gen.resolution / w, gen.resolution / h])
        kps_image = draw_kps(kps, gen.resolution)
        negative = ", ".join(x for x in (gen.negative_prompt, recipe.negative_prompt) if x)
        ctx.notes["attack"] = {
            "negative_prompt": negative, "sampler": gen.sampler, "steps": gen.steps, "guidance_scale": gen.guidance_scale,
            "base_model": model.source, "base_revision": model.revision, "dtype": str(pipe.unet.dtype).replace("torch.", ""),
            "cell_base_model_ignored": base.source, "controlnet": f"{self.p.controlnet}/{self.p.controlnet_subfolder}".rstrip("/"),
            "controlnet_revision": face_ref.revision(self.p.controlnet),
            "adapter": f"{self.p.adapter}/{self.p.weight_name}", "adapter_revision": face_ref.revision(self.p.adapter),
            "ip_adapter_scale": self.p.ip_adapter_scale,
            "controlnet_scale": self.p.controlnet_scale, "face_encoder": meta["encoder"], "reference": meta["reference"],
            "faces_detected": sum(meta["detected"]), "kps_image": meta["kps_image"],
        }
        return gen.run(ctx, lambda prompt, seed: sample(pipe, prompt, negative, seed, emb, kps_image, gen.steps,
                                                        gen.guidance_scale, gen.resolution, self.p.controlnet_scale,
                                                        ctx.device), recipe.sample_suffix)


def sample(pipe, prompt: str, negative: str, seed: int, face: np.ndarray, kps_image: np.ndarray, steps: int,
           guidance: float, resolution: int, controlnet_scale: float, device: str = "cpu") -> np.ndarray:
    """One image: InstantID's denoising loop over diffusers modules (PIPE, __call__ without
    guess mode / visual prompt / multi-ControlNet). Initial noise from `seed` alone."""
    import torch
    from PIL import Image

    with torch.no_grad():
        cfg = guidance > 1
        dtype = pipe.unet.dtype
        pe, npe, pooled, npooled = pipe.encode_prompt(prompt, device=device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=cfg, negative_prompt=negative or None)
        emb = torch.from_numpy(face).to(device, dtype).reshape(1, 1, 1, -1)  # (batch, 1 image, 1 token, d)
        embeds = torch.cat([torch.zeros_like(emb), emb]) if cfg else emb
        id_tokens = pipe.unet.encoder_hid_proj([embeds])[0].flatten(1, 2)  # IdentityNet's cross-attention input
        control = pipe.prepare_image(image=Image.fromarray(kps_image), width=resolution, height=resolution, batch_size=1,
                                     num_images_per_prompt=1, device=device, dtype=pipe.controlnet.dtype,
                                     do_classifier_free_guidance=cfg, guess_mode=False)
        sched = pipe.scheduler
        sched.set_timesteps(steps, device=device)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        latents = pipe.prepare_latents(1, pipe.unet.config.in_channels, resolution, resolution, dtype, device, gen)
        time_ids = pipe._get_add_time_ids((resolution, resolution), (0, 0), (resolution, resolution), dtype=dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim).to(device)
        text_embeds = pooled
        if cfg:
            pe, text_embeds, time_ids = torch.cat([npe, pe]), torch.cat([npooled, pooled]), torch.cat([time_ids, time_ids])
        cond = {"text_embeds": text_embeds, "time_ids": time_ids}
        extra = pipe.prepare_extra_step_kwargs(gen, 0.0)  # generator/eta only where the sampler takes them
        for t in sched.timesteps:
            x = sched.scale_model_input(torch.cat([latents] * 2) if cfg else latents, t)
            down, mid = pipe.controlnet(x, t, encoder_hidden_states=id_tokens, controlnet_cond=control,
                                        conditioning_scale=controlnet_scale, added_cond_kwargs=cond, return_dict=False)
            eps = pipe.unet(x, t, encoder_hidden_states=pe, added_cond_kwargs={**cond, "image_embeds": [embeds]},
                            down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False)[0]
            if cfg:
                uncond, text = eps.chunk(2)
                eps = uncond + guidance * (text - uncond)
            latents = sched.step(eps, t, latents, **extra, return_dict=False)[0]
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        arr = pipe.image_processor.postprocess(image, output_type="np")[0]
    return np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)
