"""Total-variation minimisation (TVM): reconstruct the image as the smoothest image
consistent with (most of) its pixels, so that an adversarial texture, which has high
total variation, is dropped.

Two solvers:
- "guo": the formulation seed 002 (DiffShortcut) App. C.1 item 2 describes, from Guo et al.
  2018 (Countering adversarial images using input transformations) / Wang et al. 2020:
  a random 2 % pixel-dropout mask X, then
      min_Z ||(1 - X) * (Z - x)||_2 + lambda_TV * TV_2(Z),
  TV_2 = sum over rows and columns of the L2 norm of the row (column) difference vector,
  per colour channel, pixels in [0, 1], solved exactly with cvxpy (the reference,
  diffshortcut/defenses/tvm.py, uses cvxpy with MOSEK; its reshape to (h, w*c) mixes colour
  channels in the column term, Guo et al.'s per-channel definition is used here).
  The paper first resizes to 64x64 and returns to 512 with two unspecified SR steps; here
  `work_size` does the resize and the way back is bicubic.
- "chambolle": scikit-image's denoise_tv_chambolle (ROF model, squared fidelity), the
  common library form of TVM; fast at any size, no mask.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench.errors import BenchError
from bench.params import Param
from bench.plugin import Purifier

SEED002 = "seed 002 (DiffShortcut) App. C.1 item 2 and diffshortcut/defenses/tvm.py"


def tv_guo(x: np.ndarray, keep: np.ndarray, lam: float) -> np.ndarray:
    """Exact solution of min ||keep * (Z - x)||_2 + lam * TV_2(Z) for x (H, W, C) in [0, 1]."""
    import cvxpy as cp

    h, w, c = x.shape
    z = [cp.Variable((h, w)) for _ in range(c)]
    fidelity = cp.norm(cp.hstack([cp.vec(cp.multiply(keep[..., k], z[k] - x[..., k]), order="C") for k in range(c)]), 2)
    tv = sum(
        cp.sum(cp.norm(z[k][1:, :] - z[k][:-1, :], 2, axis=1)) + cp.sum(cp.norm(z[k][:, 1:] - z[k][:, :-1], 2, axis=0))
        for k in range(c)
    )
    problem = cp.Problem(cp.Minimize(fidelity + lam * tv))
    problem.solve(solver=cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise BenchError(f"purifier tvm: the TV problem was not solved (cvxpy status {problem.status})")
    return np.stack([v.value for v in z], axis=-1)


class TVM(Purifier):
    name = "tvm"
    links = {"paper": "https://arxiv.org/abs/1711.00117"}
    aliases = ("total-variation",)
    summary = "Total-variation minimisation: seed 002's masked TV_2 problem (cvxpy) or scikit-image Chambolle."
    version = "1"
    params = [
        Param("method", str, "chambolle", paper="guo", choices=("guo", "chambolle"),
              source="paper: " + SEED002 + "; tiny: scikit-image denoise_tv_chambolle (seconds, any size)",
              help="guo: masked TV_2 problem; chambolle: ROF denoising"),
        Param("lambda_tv", float, 0.01, source=SEED002 + ": TVM_WEIGHT 0.01", help="guo: TV weight (pixels in [0, 1])", gt=0),
        Param("dropout", float, 0.02, source=SEED002 + ": PIXEL_DROP_RATE 0.02", help="guo: pixel dropout rate", ge=0, le=0.99),
        Param("weight", float, 0.04,
              source="no paper value for the Chambolle form: 0.04 minimised L2-to-clean of AdvDM-protected n000050 at 128 px",
              help="chambolle: denoising weight (pixels in [0, 1])", gt=0),
        Param("work_size", int, 0, paper=64, source=SEED002 + ": images resized to 64x64 before TVM",
              help="solve at this square size and resize back (0 = native size)", ge=0),
    ]

    def check(self):
        if 0 < self.p.work_size < 8:
            raise BenchError(f"purifier.tvm.work_size must be 0 or >= 8, got {self.p.work_size}")

    def purify(self, images, ctx):
        if self.p.method == "guo":
            try:
                import cvxpy  # noqa: F401
            except ImportError:
                raise BenchError("purifier tvm method=guo needs cvxpy: pip install cvxpy (or --set purifier.method=chambolle)") from None
        out = []
        for i, img in enumerate(ctx.track(images, "tvm", len(images))):
            h, w = img.shape[:2]
            n = self.p.work_size
            work = img if n == 0 or (h, w) == (n, n) else np.asarray(Image.fromarray(img).resize((n, n), Image.BICUBIC))
            x = work.astype(np.float64) / 255.0
            if self.p.method == "guo":
                rng = np.random.default_rng(ctx.seed * 1000003 + i)
                keep = 1.0 - rng.binomial(1, self.p.dropout, x.shape)
                z = tv_guo(x, keep, self.p.lambda_tv)
            else:
                from skimage.restoration import denoise_tv_chambolle

                z = denoise_tv_chambolle(x, weight=self.p.weight, channel_axis=-1)
            y = np.clip(np.round(z * 255.0), 0, 255).astype(np.uint8)
            if y.shape != img.shape:
                y = np.asarray(Image.fromarray(y).resize((w, h), Image.BICUBIC))
            out.append(y)
        return out
