"""The equal-budget noise control: every pixel channel moves by exactly +eps or -eps levels
(a uniform random sign), clipped to [0, 255]. It is the field's standard control for an
adversarial perturbation: Anti-DreamBooth (Van Le et al., ICCV 2023, Sec. 5.2, "random noise"
rows) and the peer benchmarks report it beside the defenses, and a defense that does no better
than noise of the same L-inf budget protects nothing. The harness runs it automatically beside
every image-defense cell at that defense's declared budget (bench/planner.py, companions)."""

from __future__ import annotations

import numpy as np

from bench.params import Param
from bench.plugin import ImageDefense


class Noise(ImageDefense):
    name = "noise"
    links = {"paper": "equal-budget random-noise control of this benchmark (docs/protocol.md)"}
    aliases = ("random-noise", "random-sign")
    summary = "Control: uniform random-sign noise at the full L-inf budget (a defense must beat it)."
    version = "1"
    params = [
        Param("eps", float, 16.0, source="same budget as the defense it controls (set by the harness); default = AdvDM's "
              "16/255 (Diff-Protect setting, methods.md)", help="L-inf budget: every channel moves by +-floor(eps) levels",
              gt=0, le=255, unit="px/255"),
    ]

    def budget(self) -> float:
        return self.p.eps

    def protect(self, subject, base, ctx):
        levels = np.floor(self.p.eps + 1e-6)
        rng = np.random.default_rng(ctx.seed + 303)
        out = []
        for img in subject.train:
            sign = rng.integers(0, 2, size=img.shape) * 2 - 1
            out.append(np.clip(img.astype(np.int16) + sign * levels, 0, 255).astype(np.uint8))
        return out
