"""AdvDM (Liang et al., ICML 2023): untargeted PGD that maximises the frozen
diffusion model's denoising loss, Monte-Carlo over timesteps (a fresh t and
noise at every step). Defaults: Diff-Protect's AdvDM setting (methods.md)."""

from __future__ import annotations

import numpy as np

from bench import sd
from bench.images import quantize_perturbed
from bench.models import load_sd
from bench.params import Needs, Param
from bench.plugin import ImageDefense

from .adversarial import pgd

DIFF_PROTECT = "Diff-Protect (xavihart/Diff-Protect) AdvDM setting, via shared/reference/methods.md"


class AdvDM(ImageDefense):
    name = "advdm"
    links = {"paper": "https://arxiv.org/abs/2302.04578", "code": "https://github.com/xavihart/Diff-Protect"}
    aliases = ("adv-dm",)
    summary = "PGD ascent on the frozen model's denoising loss, Monte-Carlo over timesteps."
    version = "1"
    params = [
        Param("eps", float, 16.0, source=DIFF_PROTECT + ": eps 16/255", help="L-inf budget", gt=0, le=255, unit="px/255"),
        Param("alpha", float, 1.0, tiny=2.0, source=DIFF_PROTECT + ": step 1/255; tiny: 2/255 so 20 steps reach the budget",
              help="PGD step size", gt=0, unit="px/255"),
        Param("steps", int, 100, tiny=20, source=DIFF_PROTECT + ": 100 steps; tiny: 20", help="PGD steps", ge=1),
        Param("mc_samples", int, 1, source="AdvDM Alg. 1: one (t, noise) sample per step", help="(t, noise) samples averaged per step", ge=1),
        Param("prompt", str, "a photo of sks person", source="Anti-DreamBooth instance prompt (methods.md)", help="conditioning prompt"),
        Param("random_start", bool, False, source="AdvDM starts from the clean image", help="uniform random start in the eps ball"),
    ]
    needs = Needs(weights=("base model (SD)",), gpu_memory_gb={"paper": 16.0})

    def budget(self) -> float:
        return self.p.eps

    def protect(self, subject, base, ctx):
        import torch

        parts = load_sd(base, ctx.device)
        x = sd.to_tensor(subject.train, ctx.device)
        with torch.no_grad():
            cond = sd.encode_prompts(parts, [self.p.prompt])
        g = ctx.generator(101)

        def loss_fn(x_adv, step):
            losses = [sd.denoising_loss(parts, x_adv, cond, generator=g) for _ in range(self.p.mc_samples)]
            return torch.stack(losses).mean()

        trace, init, start = [], None, 0
        saved = ctx.load_progress()  # a killed run's PGD state: continue it exactly
        if saved:
            init, trace, start = saved["x_adv"], list(saved["trace"]), int(saved["step"])
            g.set_state(saved["rng"])

        def save(done, x_adv):
            ctx.save_progress(done, self.p.steps, lambda: {"x_adv": x_adv, "rng": g.get_state(), "trace": trace})

        with ctx.progress("advdm PGD", self.p.steps) as advance:
            advance(start)
            adv = pgd(x, loss_fn, self.p.eps, self.p.alpha, self.p.steps, self.p.random_start, g,
                      on_step=lambda s, l: (trace.append(round(l, 5)), advance()), init=init, start=start, on_state=save)
        ctx.notes["defense"] = {"loss_trace": trace}
        adv01 = ((adv + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        return [quantize_perturbed(c, a, self.p.eps) for c, a in zip(subject.train, adv01.astype(np.float64))]
