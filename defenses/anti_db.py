"""Anti-DreamBooth FSMG (Le et al., ICCV 2023): fine-tune a DreamBooth surrogate on
the clean "leaked" images (set_A), then run PGD on the published images (set_B)
against that fixed surrogate. Optional target-shift term (targeted FSMG).

Reference: VinAIResearch/Anti-DreamBooth, scripts/attack_with_fsmg.sh (surrogate
= train_dreambooth.py, 1000 steps) and attacks/fsmg.py (PGD)."""

from __future__ import annotations

from bench import sd
from bench.errors import BenchError
from bench.params import Needs, Param
from bench.plugin import ImageDefense

from .adversarial import check_target, gpu_params, load_surrogate, surrogate_params, target_image, target_params, to_images

SH = "Anti-DreamBooth scripts/attack_with_fsmg.sh"
EPS_SRC = (SH + ": --pgd_eps=5e-2 in [-1,1] = 6.375/255; saved PNGs measure 6/255 (methods.md), "
           "so the integer 6 is declared and measured; set eps=6.375 to declare the nominal value")


class AntiDreamBooth(ImageDefense):
    name = "anti-db"
    links = {"paper": "https://arxiv.org/abs/2303.15433", "code": "https://github.com/VinAIResearch/Anti-DreamBooth"}
    aliases = ("fsmg",)
    summary = "FSMG: DreamBooth surrogate fine-tuned on clean set_A, then PGD on set_B against it."
    version = "1"
    params = [
        Param("eps", float, 6.0, source=EPS_SRC, help="L-inf budget", gt=0, le=255, unit="px/255"),
        Param("alpha", float, 0.6375, tiny=1.0, source=SH + ": --pgd_alpha=5e-3 in [-1,1] = 0.6375/255; tiny: 1/255",
              help="PGD step size", gt=0, unit="px/255"),
        Param("steps", int, 100, tiny=20, source=SH + ": attacks/fsmg.py --max_train_steps=100; tiny: 20", help="PGD steps", ge=1),
        Param("surrogate_steps", int, 1000, tiny=20, source=SH + ": train_dreambooth.py --max_train_steps=1000; tiny: 20",
              help="surrogate fine-tuning steps on set_A", ge=1),
        Param("batch_size", int, 2, source=SH + ": train_dreambooth.py --train_batch_size=2", help="surrogate batch (instance + as many class images)", ge=1),
        Param("mc_samples", int, 1, source="attacks/fsmg.py: one (t, noise) draw per image per step", help="(t, noise) draws averaged per PGD step", ge=1),
        Param("random_start", bool, False, source="attacks/fsmg.py starts from the clean images", help="uniform random start in the eps ball"),
        *target_params(SH.replace("fsmg", "targeted_fsmg")),
        *surrogate_params(SH + " (train_dreambooth.py)", 5e-7, 2e-4, "shuffled"),
        *gpu_params(SH + " (train_dreambooth.py --mixed_precision=bf16)", "bf16"),
    ]
    needs = Needs(weights=("base model (SD)",), gpu_memory_gb={"paper": 24.0},
                  notes="surrogate: full DreamBooth fine-tune (UNet + text encoder); see docs/defenses.md for measured memory")

    def budget(self) -> float:
        return self.p.eps

    def check(self) -> None:
        check_target(self.p.target)

    def protect(self, subject, base, ctx):
        if not subject.surrogate:
            raise BenchError("anti-db needs clean surrogate images (set_A) in the data card's 'surrogate' role")
        p = self.p
        sur = load_surrogate(p, base, ctx, batch_size=p.batch_size)
        g = ctx.generator(303)
        x_a, x_b = sd.to_tensor(subject.surrogate, ctx.device), sd.to_tensor(subject.train, ctx.device)
        with ctx.progress("anti-db surrogate (set_A)", p.surrogate_steps) as advance:
            sur_trace = sur.train(x_a, p.surrogate_steps, g, on_step=lambda s, l: advance())
        tgt = sur.encode_target(target_image(p.target, ctx.resolution), g)
        trace: list[float] = []
        with ctx.progress("anti-db PGD (set_B)", p.steps) as advance:
            adv = sur.attack(x_b, p.eps, p.alpha, p.steps, g, mc_samples=p.mc_samples, target_latents=tgt,
                             target_weight=p.target_weight, random_start=p.random_start,
                             on_step=lambda s, l: (trace.append(round(l, 5)), advance()))
        ctx.notes["defense"] = {"surrogate_loss_trace": sur_trace, "loss_trace": trace, "optimizer": sur.optimizer_name,
                                "targeted": bool(p.target)}
        return to_images(subject.train, adv, p.eps)
