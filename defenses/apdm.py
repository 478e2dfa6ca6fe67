"""APDM (Lee et al., NeurIPS 2025, "Perturb a Model, Not an Image"): a model-level
defense. Instead of perturbing the subject's photos it fine-tunes the base UNet so
that a later DreamBooth run on the subject's CLEAN photos fails, while other
subjects still personalize.

Two parts, following the reference code (KU-VGI/APDM protect.py + gen_arguments.py):

* Direct Protective Optimization (DPO): on a pair (x_unsafe = a clean image of the
  subject, x_safe = its paired image), with one shared noise eps and timestep t and the
  instance prompt for both, the per-element error differences against a frozen copy of
  the original UNet
      d = [e(theta, safe) - e(ref, safe)] - [e(theta, unsafe) - e(ref, unsafe)]
  give the loss mean(-log sigmoid(-beta * d)): the model denoises the paired image
  relatively better and the subject relatively worse under "a photo of sks person".
* Learning to Protect (L2P): every outer iteration clones the protected UNet and runs
  `inner_iters` alternating steps on the clone: one DreamBooth step (simulated
  personalization, with prior preservation), then the protection loss (DPO + prior
  loss) at the updated clone. The clone's gradients are summed into the protected
  UNet's gradient (first-order, as in the reference) and one AdamW step is taken.

Paired set: the reference ships precomputed images, one per instance image
(paired_set/<subject>/i.png, a count-equality assert pairs them by index), without
the script that made them; its fallback without a paired set uses the base model's
class-prompt generations as the preferred side. Here the paired images are the base
model's generations of the class prompt ("a photo of person"), one per instance image,
with seeds disjoint from the prior-preservation class images (see docs/apdm.md)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np

from bench import sd
from bench.class_images import GUIDANCE, SAMPLER, class_images
from bench.errors import BenchError
from bench.models import load_sd
from bench.params import Needs, Param
from bench.plugin import ModelDefense

PROTECT = "KU-VGI/APDM protect.py"
GEN_ARGS = "KU-VGI/APDM gen_arguments.py get_arguments (apdm001-008)"
PAIRED_SEED = 1_000_000  # paired images use seeds PAIRED_SEED + i: never a prior-preservation class image (seeds 0..n-1)


class APDM(ModelDefense):
    name = "apdm"
    links = {"paper": "Lee et al., NeurIPS 2025: Perturb a Model, Not an Image", "code": "https://github.com/KU-VGI/APDM"}
    aliases = ("anti-personalized-diffusion",)
    summary = "Model-level: fine-tunes the UNet so DreamBooth on the subject fails (DPO loss + Learning to Protect)."
    version = "1"
    params = [
        Param("outer_iters", int, 800, tiny=30, source=GEN_ARGS + ": iter 800 (run.sh evaluates unet_799), as many "
              "protection updates as the evaluation DreamBooth's 800 steps; tiny: 30, the tiny DreamBooth attack's steps",
              help="protection (outer) iterations", ge=1),
        Param("inner_iters", int, 20, tiny=5, source=GEN_ARGS + ": num_inner_iter 20 for SD 1.5 (protect.py default 30, "
              "10 for SD 2.1); tiny: 5", help="simulated personalization steps per outer iteration", ge=1),
        Param("lr", float, 5e-6, tiny=2e-4, source=PROTECT + ": --lr 5e-6 for the protected UNet and its personalized clone "
              "(= the evaluation DreamBooth lr); tiny: 2e-4, the tiny DreamBooth attack's lr", gt=0),
        Param("beta", float, 1.0, source=GEN_ARGS + ": loss_dpo_beta 1 (protect.py argparse default 100)", gt=0),
        Param("batch_size", int, 1, source=GEN_ARGS + ": batch_size 1", ge=1),
        Param("prior_weight", float, 1.0, source=GEN_ARGS + ": with_prior_preservation, prior_loss_weight 1.0", ge=0),
        Param("prior_in_protection", bool, True, source=GEN_ARGS + ": in_ppl (prior loss also in the protection path)"),
        Param("grad_accum", str, "sum", choices=("sum", "mean"), source=GEN_ARGS + ": grad_accum_type sum",
              help="how the clone's gradients over the inner iterations are combined"),
        Param("outer_includes_db_grad", bool, True,
              source=PROTECT + ": the clone's .grad is not cleared between the DreamBooth step and the protection "
              "backward, so the accumulated outer gradient holds both (torch>=2 zero_grad sets None)",
              help="False: only the protection gradient reaches the protected UNet"),
        Param("instance_images", str, "train", choices=("train", "surrogate", "all"),
              source=GEN_ARGS + " + get_arguments_db: protection and the evaluation DreamBooth use the same set_A folder; "
              "here the attacked set is subject.train",
              help="which clean images of the subject the protection uses"),
        Param("instance_prompt", str, "a photo of sks person", source=GEN_ARGS + ": 'a photo of sks person'"),
        Param("class_prompt", str, "a photo of person", source=GEN_ARGS + ": 'a photo of person'"),
        Param("num_class_images", int, 200, tiny=4, source=PROTECT + ": --num_samples 200; tiny: 4", ge=0),
        Param("class_steps", int, 50, tiny=5, source=PROTECT + ": class images with num_inference_steps=50; tiny: 5", ge=1),
        Param("paired_dir", str, "", source=GEN_ARGS + ": loss_dpo_paired_dataset_dir paired_set/<subject> (shipped images)",
              help="folder of paired (preferred) images, one per instance image, paired in sorted order; "
                   "empty = generate them with the base model from class_prompt"),
        Param("paired_steps", int, 50, tiny=5, source="as class_steps (the reference's paired-set script is not published); tiny: 5",
              ge=1, help="sampling steps for the paired (preferred) images"),
    ]
    needs = Needs(weights=("base model (SD)",), gpu_memory_gb={"paper": 24.0},
                  notes="the reference ran protection on one RTX A6000 (48 GB)")

    def check(self) -> None:
        if self.p.prior_weight > 0 and self.p.num_class_images == 0:
            raise BenchError("defense.apdm: prior_weight > 0 needs num_class_images > 0 (or set prior_weight=0)")

    # ------------------------------------------------------------- data
    def instance_set(self, subject) -> list[np.ndarray]:
        which = self.p.instance_images
        imgs = {"train": subject.train, "surrogate": subject.surrogate, "all": subject.surrogate + subject.train}[which]
        if not imgs:
            raise BenchError(f"defense.apdm: the subject has no {which!r} images")
        return imgs

    def paired_images(self, base, ctx, count: int) -> list[np.ndarray]:
        """One preferred image per instance image: from `paired_dir` (as the reference ships
        them), else the base model's class-prompt samples, cached per base model + prompt +
        count like the class images."""
        from bench.images import center_crop_resize, list_images, load_image, load_pngs, save_pngs

        if self.p.paired_dir:
            folder = Path(self.p.paired_dir).expanduser()
            files = list_images(folder) if folder.is_dir() else []
            if len(files) < count:
                raise BenchError(f"defense.apdm.paired_dir {folder}: needs {count} images (one per instance image), found {len(files)}")
            return [center_crop_resize(load_image(f), ctx.resolution) for f in files[:count]]

        inputs = {"base": {"source": base.source, "revision": base.revision}, "prompt": self.p.class_prompt, "count": count,
                  "steps": self.p.paired_steps, "resolution": ctx.resolution, "sampler": SAMPLER, "seed": PAIRED_SEED}

        def build(tmp: Path) -> dict:
            pipe = sd.pipeline(load_sd(base, ctx.device), SAMPLER)
            imgs = sd.generate(pipe, [self.p.class_prompt] * count, [PAIRED_SEED + i for i in range(count)],
                               self.p.paired_steps, GUIDANCE, "", ctx.resolution)
            save_pngs(imgs, tmp / "images")
            return {"count": count}

        return load_pngs(ctx.cached("apdm_paired", inputs, build).path / "images")

    # ------------------------------------------------------------- protection
    def protect_model(self, subject, base, ctx, out_dir: Path) -> None:
        import torch

        p = self.p
        inst = self.instance_set(subject)
        cls = class_images(base, ctx, p.class_prompt, p.num_class_images, p.class_steps) if p.prior_weight > 0 else []
        paired = self.paired_images(base, ctx, len(inst))
        parts = load_sd(base, ctx.device)
        unet = parts["unet"]
        frozen = copy.deepcopy(unet).requires_grad_(False).eval()  # the reference model of the DPO loss
        unet.requires_grad_(True).train()
        outer_opt = _adamw(unet.parameters(), p.lr)
        x_inst, x_pair = sd.to_tensor(inst, ctx.device), sd.to_tensor(paired, ctx.device)
        x_cls = sd.to_tensor(cls, ctx.device) if cls else None
        with torch.no_grad():
            c_inst = sd.encode_prompts(parts, [p.instance_prompt])
            c_cls = sd.encode_prompts(parts, [p.class_prompt])
        g = ctx.generator(303)
        pick = lambda n: torch.randint(0, n, (p.batch_size,), generator=g)  # noqa: E731
        trace = {"db": [], "dpo": [], "prior": []}
        with ctx.progress("apdm L2P", p.outer_iters) as advance:
            for _ in range(p.outer_iters):
                clone = copy.deepcopy(unet)
                inner_opt = _adamw(clone.parameters(), p.lr)
                cparts = {**parts, "unet": clone}
                accum = [torch.zeros_like(q) for q in clone.parameters()]
                for _ in range(p.inner_iters):
                    inner_opt.zero_grad(set_to_none=True)
                    # personalization path: one DreamBooth step of the clone on the subject
                    cls_batch = x_cls[pick(len(x_cls))] if x_cls is not None else None
                    loss_db = sd.dreambooth_loss(cparts, x_inst[pick(len(x_inst))], c_inst, cls_batch, c_cls, p.prior_weight, g)
                    loss_db.backward()
                    inner_opt.step()
                    if not p.outer_includes_db_grad:
                        inner_opt.zero_grad(set_to_none=True)
                    # protection path, at the just-personalized clone
                    idx = pick(len(x_inst))
                    loss_dpo = dpo_loss(cparts, frozen, x_inst[idx], x_pair[idx], c_inst, p.beta, g)
                    loss = loss_dpo
                    if p.prior_in_protection and x_cls is not None:
                        loss_prior = sd.denoising_loss(cparts, x_cls[pick(len(x_cls))], c_cls, g)
                        loss = loss + p.prior_weight * loss_prior
                        trace["prior"].append(round(float(loss_prior.detach()), 5))
                    loss.backward()
                    for a, q in zip(accum, clone.parameters()):
                        if q.grad is not None:
                            a.add_(q.grad)
                    trace["db"].append(round(float(loss_db.detach()), 5))
                    trace["dpo"].append(round(float(loss_dpo.detach()), 5))
                outer_opt.zero_grad(set_to_none=True)
                scale = 1.0 / p.inner_iters if p.grad_accum == "mean" else 1.0
                for q, a in zip(unet.parameters(), accum):
                    q.grad = a * scale
                outer_opt.step()
                del clone, inner_opt, cparts
                advance()
        write_model(base.path, unet, out_dir)
        ctx.notes["defense"] = {
            "instance_images": len(inst), "paired_images": len(paired), "class_images": len(cls),
            "updates": p.outer_iters, "inner_steps": p.outer_iters * p.inner_iters,
            "dpo_first": trace["dpo"][0], "dpo_last": trace["dpo"][-1], "loss_trace": trace,
        }


def dpo_loss(parts, frozen, x_unsafe, x_safe, cond, beta: float, generator):
    """Direct Protective Optimization: per-element Bradley-Terry loss preferring the paired
    ("safe") image over the subject ("unsafe") image, measured as denoising error relative
    to the frozen reference UNet; one noise draw and timestep shared by all four predictions.
    Elementwise, as in the reference (Diffusion-DPO averages per sample first)."""
    import torch
    import torch.nn.functional as F

    unet, sched = parts["unet"], parts["scheduler"]
    with torch.no_grad():
        z_u = sd.encode_images(parts, x_unsafe, generator)
        z_s = sd.encode_images(parts, x_safe, generator)
    eps = torch.randn(z_u.shape, generator=generator).to(z_u.device, z_u.dtype)
    t = torch.randint(0, sched.config.num_train_timesteps, (z_u.shape[0],), generator=generator).to(z_u.device)
    if cond.shape[0] != z_u.shape[0]:
        cond = cond.expand(z_u.shape[0], -1, -1)

    def target(z):  # the reference compares with eps (SD 1.5 is epsilon); v-models get their velocity
        return eps if sched.config.prediction_type == "epsilon" else sched.get_velocity(z, eps, t)

    n_u, n_s = sched.add_noise(z_u, eps, t), sched.add_noise(z_s, eps, t)
    with torch.no_grad():
        ref_u = F.mse_loss(frozen(n_u, t, cond).sample, target(z_u), reduction="none")
        ref_s = F.mse_loss(frozen(n_s, t, cond).sample, target(z_s), reduction="none")
    cur_u = F.mse_loss(unet(n_u, t, cond).sample, target(z_u), reduction="none")
    cur_s = F.mse_loss(unet(n_s, t, cond).sample, target(z_s), reduction="none")
    diff = (cur_s - ref_s) - (cur_u - ref_u)
    return -F.logsigmoid(-beta * diff).mean()


def write_model(base_path: Path, unet, out_dir: Path) -> None:
    """The protected model in diffusers layout: the new UNet (safetensors) plus every other
    file of the base model, hard-linked where the filesystem allows (no extra space, and
    the artifact survives removal of the base), copied otherwise."""
    base_path, out_dir = Path(base_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(base_path.rglob("*")):
        rel = src.relative_to(base_path)
        if rel.parts[0] == "unet" or src.is_dir():
            continue
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        real = src.resolve()  # hub snapshots hold symlinks into the blob store
        try:
            os.link(real, dst)
        except OSError:
            shutil.copy2(real, dst)
    unet.save_pretrained(out_dir / "unet", safe_serialization=True)


def _adamw(params, lr: float):
    import torch

    # protect.py: AdamW(lr, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-8) for both paths
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-8)
