"""DreamBooth (Ruiz et al., CVPR 2023): full fine-tuning of the UNet (and
optionally the text encoder) on the subject's images with prior preservation,
then generation with the profile's prompts. Paper-profile defaults follow
Anti-DreamBooth's evaluation (methods.md); class images are generated once per
base model + prompt + count and shared by every cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import sd
from bench.class_images import class_images
from bench.models import load_sd
from bench.params import Needs, Param
from bench.plugin import Attack

from .training import autocast, optimizer, prior_preserving_loss

ANTI_DB = "Anti-DreamBooth evaluation (VinAIResearch/Anti-DreamBooth, scripts/attack_with_db.sh; methods.md)"
FACE_WORLD = "docs/face-world.md (tiny DreamBooth sweep on tiny-sd-face, sample card and faces_glint)"

# The papers' attack settings, selectable with `--set attack.preset=<name>`; parameters given
# explicitly still win. Presets set paper values on any profile (they are for paper runs).
PRESETS: dict[str, dict] = {
    "anti-db": {"lr": 5e-7, "steps": 1000, "batch_size": 2, "num_class_images": 200},  # ANTI_DB
    "dladiff": {"lr": 5e-6, "steps": 400, "batch_size": 4},  # DLADiff Sec. 5.1 "Hyperparameter Setting" (seed 004)
    "apdm": {"lr": 5e-6, "steps": 800, "num_class_images": 200},  # APDM evaluation (seed 003; methods.md)
    "rid": {"lr": 8e-7},  # RID's DreamBooth config (seed 000; methods.md "RID's personalization configs")
}


class DreamBooth(Attack):
    name = "dreambooth"
    links = {"paper": "https://arxiv.org/abs/2208.12242", "code": "https://github.com/huggingface/diffusers/tree/main/examples/dreambooth"}
    aliases = ("db",)
    summary = "Full fine-tune of UNet (+ text encoder) with prior preservation, then generate."
    version = "1"
    params = [
        Param("preset", str, "none", choices=("none", *PRESETS), source="see PRESETS in attacks/dreambooth.py (each cited)",
              help="a paper's DreamBooth settings; explicit parameters override it"),
        Param("steps", int, 1000, tiny=300, source=ANTI_DB + ": 1000 steps; tiny: 300, " + FACE_WORLD, ge=1),
        Param("lr", float, 5e-7, tiny=1e-4, source=ANTI_DB + ": lr 5e-7; tiny: 1e-4 (2e-4 and 6e-4 learned the identity less), " + FACE_WORLD, gt=0),
        Param("batch_size", int, 2, tiny=4, source=ANTI_DB + ": batch 2; tiny: 4, all of set_B in each step (identified 0.89 vs 0.80 at 2), " + FACE_WORLD, ge=1),
        Param("train_text_encoder", bool, True, source=ANTI_DB + ": text encoder trained"),
        Param("instance_prompt", str, "a photo of sks person", source=ANTI_DB),
        Param("class_prompt", str, "a photo of person", source=ANTI_DB),
        Param("prior_weight", float, 1.0, tiny=0.0, source=ANTI_DB + ": prior loss weight 1.0; tiny: 0, because the tiny model's "
              "frozen random text encoder barely separates 'sks person' from 'person', so the prior term undoes the identity "
              "(identified 0.06/0.38 with it, 0.44/0.81 without, two faces_glint identities), " + FACE_WORLD, ge=0),
        Param("num_class_images", int, 200, tiny=4, source=ANTI_DB + ": 200 class images; tiny: 4", ge=0),
        Param("class_steps", int, 50, tiny=5, source="diffusers train_dreambooth.py class-image sampling default (50 steps)", ge=1,
              help="class images are generated in batches of bench.class_images.BATCH and shared by every plugin"),
        Param("max_grad_norm", float, 1.0, source="diffusers train_dreambooth.py default", gt=0),
        Param("mixed_precision", str, "no", paper="bf16", choices=("no", "bf16", "fp16"), source=ANTI_DB + ": bf16 (CUDA only)"),
        Param("gradient_checkpointing", bool, False, source="Anti-DreamBooth scripts/attack_with_aspl.sh: train_dreambooth.py "
              "runs without --gradient_checkpointing", help="trade compute for memory (GPU users)"),
        Param("use_8bit_adam", bool, False, source="Anti-DreamBooth scripts/attack_with_aspl.sh: train_dreambooth.py runs without --use_8bit_adam",
              help="bitsandbytes AdamW8bit when installed"),
    ]
    needs = Needs(weights=("base model (SD)",), gpu_memory_gb={"paper": 24.0})

    def __init__(self, params: dict | None = None, profile: str = "tiny"):
        params = dict(params or {})
        super().__init__({**PRESETS.get(params.get("preset"), {}), **params}, profile)

    # ------------------------------------------------------------ training
    def class_images(self, base, ctx) -> list[np.ndarray]:
        """Prior-preservation images from the base model, cached across cells (and
        shared with the DreamBooth-style surrogates of the defenses)."""
        if self.p.prior_weight == 0:
            return []
        return class_images(base, ctx, self.p.class_prompt, self.p.num_class_images, self.p.class_steps)

    def personalize(self, images, base, recipe, ctx, out_dir):
        import torch

        instance_prompt = self.p.instance_prompt + recipe.instance_suffix
        class_prompt = self.p.class_prompt + recipe.class_suffix
        class_imgs = self.class_images(base, ctx)
        parts = load_sd(base, ctx.device)
        unet, te = parts["unet"], parts["text_encoder"]
        trainable = [unet] + ([te] if self.p.train_text_encoder else [])
        for m in trainable:
            m.requires_grad_(True)
            m.train()
        if self.p.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        params = [p for m in trainable for p in m.parameters()]
        opt = optimizer(params, self.p.lr, self.p.use_8bit_adam)
        x_inst = sd.to_tensor(images, ctx.device)
        x_cls = sd.to_tensor(class_imgs, ctx.device) if class_imgs else None
        g = ctx.generator(202)
        losses, start = [], 0
        saved = ctx.load_progress()  # a killed run of this stage left its progress: continue it exactly
        if saved:
            unet.load_state_dict(saved["unet"])
            if self.p.train_text_encoder:
                te.load_state_dict(saved["text_encoder"])
            opt.load_state_dict(saved["optimizer"])
            g.set_state(saved["rng"])
            losses, start = list(saved["losses"]), int(saved["step"])
        with ctx.progress("dreambooth", self.p.steps) as advance:
            advance(start)
            for step in range(start, self.p.steps):
                with autocast(ctx.device, self.p.mixed_precision):
                    loss = prior_preserving_loss(parts, x_inst, x_cls, instance_prompt, class_prompt, self.p.batch_size,
                                                 self.p.prior_weight, g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, self.p.max_grad_norm)
                opt.step()
                losses.append(round(float(loss.detach()), 5))
                advance()
                ctx.save_progress(step + 1, self.p.steps, lambda: {
                    "unet": unet.state_dict(), "optimizer": opt.state_dict(), "rng": g.get_state(), "losses": losses,
                    **({"text_encoder": te.state_dict()} if self.p.train_text_encoder else {})})
        out_dir.mkdir(parents=True, exist_ok=True)
        unet.save_pretrained(out_dir / "unet", safe_serialization=True)
        if self.p.train_text_encoder:
            te.save_pretrained(out_dir / "text_encoder", safe_serialization=True)
        ctx.notes["attack"] = {
            "instance_prompt": instance_prompt, "class_prompt": class_prompt, "class_images": len(class_imgs),
            "loss_first": losses[0], "loss_last": losses[-1], "loss_trace": losses,
        }

    # ----------------------------------------------------------- generation
    def load_personalized(self, personalized: Path, base, ctx) -> dict:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        parts = load_sd(base, ctx.device)
        parts["unet"] = UNet2DConditionModel.from_pretrained(personalized / "unet").to(ctx.device).eval()
        if (personalized / "text_encoder").is_dir():
            parts["text_encoder"] = CLIPTextModel.from_pretrained(personalized / "text_encoder").to(ctx.device).eval()
        return parts

    def generate(self, personalized, base, gen, recipe, ctx):
        pipe = sd.pipeline(self.load_personalized(personalized, base, ctx), gen.sampler)
        negative = ", ".join(x for x in (gen.negative_prompt, recipe.negative_prompt) if x)
        ctx.notes["attack"] = {"negative_prompt": negative, "sampler": gen.sampler, "steps": gen.steps,
                               "guidance_scale": gen.guidance_scale}
        return gen.run(ctx, lambda prompt, seed: sd.generate(pipe, [prompt], [seed], gen.steps, gen.guidance_scale, negative,
                                                             gen.resolution)[0], recipe.sample_suffix)
