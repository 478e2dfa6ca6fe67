"""LIQE (Zhang et al., CVPR 2023): CLIP ViT-B/32 blind image quality, 1 (bad) - 5 (excellent).

Through pyiqa's LIQE arch. Backends (in the id): "pyiqa-mix" = the multitask LIQE
checkpoint (pyiqa liqe_mix, the LIQE.pt that MetaCloak loads in
robust_facecloak/eval_score.py); "pyiqa-koniq" = pyiqa's KonIQ-trained `liqe`.
`scale`: "raw" = LIQE's 1-5 score; "pm1" = DiffShortcut's renormalisation to [-1, 1],
((q - 1) / 4) * 2 - 1 (liuyixin-louis/DiffShortcut diffshortcut/get_score_tempalte.py,
the Q column averages it with CLIP-IQAC).

Needs, all on disk (pyiqa would download them): pyiqa's LIQE checkpoint
(<pyiqa cache>/liqe_mix.pt or liqe_koniq.pt, or `weights`), OpenAI CLIP ViT-B/32
(<torch hub>/clip/ViT-B-32.pt) and the `clip` module pyiqa imports (pip openai-clip).
LIQE crops 224-px patches: images with a shorter side below 224 are upsampled
(bicubic) first and counted in extra.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from bench.params import Needs, Param
from bench.plugin import Image, Metric, MetricResult

_LOCK = threading.RLock()
_MODELS: dict[tuple[str, str], Any] = {}
CKPT = {"pyiqa-mix": ("mix", "liqe_mix.pt"), "pyiqa-koniq": ("koniq", "liqe_koniq.pt")}
MIN_SIDE = 224


def renormalize_pm1(q: float) -> float:
    """DiffShortcut: LIQE 1..5 -> [-1, 1]."""
    return ((q - 1.0) / 4.0) * 2.0 - 1.0


def files(backend: str, user_path: str = "") -> tuple[dict[str, Path], str]:
    """Paths LIQE needs, or ({}, reason) when one is missing. Never downloads."""
    try:
        import torch
        from pyiqa.utils.download_util import DEFAULT_CACHE_DIR
    except Exception as exc:  # noqa: BLE001
        return {}, f"pyiqa not importable ({exc.__class__.__name__}: {exc})"
    try:
        from pyiqa.archs import clip_imports  # noqa: F401 - needs the `clip` module
    except Exception as exc:  # noqa: BLE001
        return {}, f"pyiqa's LIQE needs the openai-clip package (import clip failed: {exc.__class__.__name__}: {exc})"
    ckpt = Path(user_path).expanduser() if user_path else Path(DEFAULT_CACHE_DIR) / CKPT[backend][1]
    clip_w = Path(torch.hub.get_dir()) / "clip" / "ViT-B-32.pt"
    for what, p in (("LIQE checkpoint", ckpt), ("CLIP ViT-B/32 weights", clip_w)):
        if not p.is_file():
            return {}, f"{what} not present ({p}); pyiqa would download it - place the file there" + (
                " or pass weights=<path>" if what.startswith("LIQE") else ""
            )
    return {"ckpt": ckpt, "clip": clip_w}, ""


def _model(backend: str, ckpt: Path) -> Any:
    with _LOCK:
        key = (backend, str(ckpt))
        if key not in _MODELS:
            from pyiqa.archs.liqe_arch import LIQE as PyiqaLIQE

            _MODELS[key] = PyiqaLIQE(pretrained=CKPT[backend][0], pretrained_model_path=str(ckpt)).eval()
        return _MODELS[key]


class LIQE(Metric):
    name = "liqe"
    summary = "LIQE blind quality of generated images (CLIP-based; higher = better)"
    target = "generation"
    higher_is_better = True
    params = [
        Param(
            "backend",
            str,
            "pyiqa-mix",
            choices=tuple(CKPT),
            source="liuyixin-louis/MetaCloak robust_facecloak/eval_score.py (LIQE.pt = multitask LIQE)",
            help="pyiqa-mix = LIQE multitask checkpoint; pyiqa-koniq = KonIQ-only checkpoint",
        ),
        Param(
            "scale",
            str,
            "raw",
            choices=("raw", "pm1"),
            source="pm1: liuyixin-louis/DiffShortcut diffshortcut/get_score_tempalte.py ((q-1)/4*2-1)",
            help="raw = 1..5; pm1 = DiffShortcut's [-1, 1]",
        ),
        Param("weights", str, "", setup=True, help="local path to the LIQE checkpoint (default: pyiqa's cache)"),
    ]
    needs = Needs(weights=("pyiqa LIQE checkpoint (liqe_mix.pt / liqe_koniq.pt)", "OpenAI CLIP ViT-B/32 (ViT-B-32.pt)"))

    def available(self) -> tuple[bool, str]:
        paths, reason = files(self.p.backend, self.p.weights)
        return bool(paths), reason

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        paths, reason = files(self.p.backend, self.p.weights)
        if not paths:
            return MetricResult.unavailable(reason)
        if not images:
            return MetricResult.unavailable("no images")
        import torch
        import torch.nn.functional as F

        model = _model(self.p.backend, paths["ckpt"])
        per: list[float | None] = []
        upsampled = 0
        for img in images:
            x = torch.from_numpy(np.array(img[..., :3], dtype=np.float32)).permute(2, 0, 1)[None] / 255.0
            h, w = x.shape[-2:]
            if min(h, w) < MIN_SIDE:
                f = MIN_SIDE / min(h, w)
                x = F.interpolate(x, size=(max(MIN_SIDE, round(h * f)), max(MIN_SIDE, round(w * f))), mode="bicubic")
                x = x.clamp(0, 1)
                upsampled += 1
            with _LOCK, torch.no_grad():
                q = float(model(x).reshape(-1)[0])
            per.append(renormalize_pm1(q) if self.p.scale == "pm1" else q)
        return MetricResult(
            value=float(np.mean(per)),
            per_image=per,
            extra={"n_images": len(per), "n_upsampled_to_224": upsampled, "scale": self.p.scale},
        )
