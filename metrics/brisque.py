"""BRISQUE no-reference image quality (Mittal et al., IEEE TIP 2012); lower is better.

Backend "libsvm": the `brisque` PyPI package (0.2.x) - 36 natural-scene-statistics
features (MSCN + paired products at two scales) scaled by its bundled
models/normalize.pickle and scored by the epsilon-SVR in its bundled models/svm.txt
through libsvm. This is the implementation Anti-DreamBooth uses
(VinAIResearch/Anti-DreamBooth evaluations/brisque.py: `BRISQUE(url=False).score`).
Implementations disagree: piq and pyiqa ship other feature code and SVR weights
(MetaCloak scores with piq on 256x256 resizes), so numbers are only comparable
within one backend - hence the id "brisque[libsvm]". Typical range 0-100.

brisque 0.2.0 breaks under numpy 2 ("only 0-dimensional arrays can be converted to
Python scalars" in BRISQUE.scale_features: some features are 1-element arrays);
_PatchedBRISQUE flattens each feature to a float first. Same model, same numbers.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from bench.params import Needs, Param
from bench.plugin import Image, Metric, MetricResult

_LOCK = threading.Lock()
_MODEL: Any = None  # the patched BRISQUE scorer, loaded once per process
_AVAILABLE: tuple[bool, str] | None = None
MIN_SIDE = 16  # below this the 7x7 MSCN window and the /2 scale leave no statistics


def available() -> tuple[bool, str]:
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            import brisque  # noqa: F401
            from brisque import BRISQUE  # noqa: F401
            from brisque.models import MODEL_PATH  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
            _AVAILABLE = (False, f"brisque package not importable ({exc.__class__.__name__}: {exc})")
        else:
            _AVAILABLE = (True, "")
    return _AVAILABLE


def _scorer() -> Any:
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            from brisque import BRISQUE

            class _PatchedBRISQUE(BRISQUE):
                def scale_features(self, features):
                    flat = np.array([np.asarray(f, dtype=float).reshape(-1)[0] for f in features])
                    return super().scale_features(flat)

            _MODEL = _PatchedBRISQUE(url=False)
        return _MODEL


def _as_rgb8(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)  # the package converts RGB to grey itself
    return np.ascontiguousarray(arr[..., :3])


def score(img: np.ndarray) -> float | None:
    """BRISQUE of one image; None when it has no usable statistics (flat or tiny image)."""
    arr = _as_rgb8(img)
    if min(arr.shape[:2]) < MIN_SIDE:
        return None
    model = _scorer()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            value = float(model.score(arr))
        except Exception:  # noqa: BLE001 - degenerate statistics (e.g. constant image)
            return None
    return value if np.isfinite(value) else None


class BRISQUE(Metric):
    name = "brisque"
    summary = "BRISQUE no-reference quality of generated images (lower = better quality)"
    target = "generation"  # no-reference: references are ignored
    higher_is_better = False
    params = [
        Param(
            name="backend",
            type=str,
            default="libsvm",
            choices=("libsvm",),
            source="`brisque` PyPI package (models/svm.txt + normalize.pickle), as in "
            "VinAIResearch/Anti-DreamBooth evaluations/brisque.py",
            help="libsvm = the brisque package's bundled SVR and feature normalisation",
        )
    ]
    needs = Needs(weights=("brisque package models/svm.txt + normalize.pickle (in the pip package)",))

    def available(self) -> tuple[bool, str]:
        return available()

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        ok, reason = self.available()
        if not ok:
            return MetricResult.unavailable(reason)
        if not images:
            return MetricResult.unavailable("no images")
        per = [score(im) for im in images]
        good = [v for v in per if v is not None]
        if not good:
            return MetricResult.unavailable("BRISQUE undefined on every image (flat or smaller than 16 px)")
        return MetricResult(
            value=float(np.mean(good)),
            per_image=per,
            extra={"n_images": len(per), "n_scored": len(good)},
        )
