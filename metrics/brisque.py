"""BRISQUE no-reference image quality (Mittal et al., IEEE TIP 2012); lower is better.

Backend "libsvm": the `brisque` PyPI package (0.2.x) - 36 natural-scene-statistics
features (MSCN + paired products at two scales) scaled by its bundled
models/normalize.pickle and scored by the epsilon-SVR in its bundled models/svm.txt
through libsvm. This is the implementation Anti-DreamBooth uses
(VinAIResearch/Anti-DreamBooth evaluations/brisque.py: `BRISQUE(url=False).score`).
Implementations disagree: piq and pyiqa ship other feature code and SVR weights
(MetaCloak scores with piq on 256x256 resizes), so numbers are only comparable
within one backend - hence the id "brisque[libsvm]". Typical range 0-100.

Backends "piq" and "pyiqa": piq.brisque / pyiqa's BRISQUE arch (version "original"),
the same torch feature code family, scored by the SVR file brisque_svm_weights.pt(h)
that both download from piq's GitHub release (v0.4.0) - 774 support vectors with
rho -153.591 hard-coded, where the `brisque` package's svm.txt has 770 SVs and
rho -155.845: two different LIVE-trained SVR files (docs/metrics.md, "BRISQUE
calibration"). Nothing is downloaded: the file must be in the package's cache
(torch hub checkpoints/ for piq, the pyiqa cache for pyiqa) or given as `weights`;
it is loaded with torch.load(weights_only=True) before the package reads it.
Without it the backend is "unavailable: ...".

brisque 0.2.0 breaks under numpy 2 ("only 0-dimensional arrays can be converted to
Python scalars" in BRISQUE.scale_features: some features are 1-element arrays);
_PatchedBRISQUE flattens each feature to a float first. Same model, same numbers.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
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


# ------------------------------------------------------------------ piq / pyiqa
SVR_FILES = {"piq": "brisque_svm_weights.pt", "pyiqa": "brisque_svm_weights.pth"}
_TORCH_MODELS: dict[tuple[str, str], Any] = {}


def svr_weights(backend: str, user_path: str = "") -> tuple[Path | None, str]:
    """(path, "") or (None, reason) for piq / pyiqa's SVR file; never downloads."""
    if user_path:
        p = Path(user_path).expanduser()
        return (p, "") if p.is_file() else (None, f"BRISQUE SVR weights not found: {p}")
    try:
        if backend == "piq":
            import torch

            p = Path(torch.hub.get_dir()) / "checkpoints" / SVR_FILES["piq"]
        else:
            from pyiqa.utils.download_util import DEFAULT_CACHE_DIR

            p = Path(DEFAULT_CACHE_DIR) / SVR_FILES["pyiqa"]
    except Exception as exc:  # noqa: BLE001
        return None, f"{backend} not importable ({exc.__class__.__name__}: {exc})"
    if p.is_file():
        return p, ""
    return None, (
        f"{backend} BRISQUE SVR weights not present ({p}; {backend} would download piq's v0.4.0 SVR "
        f"file); place {SVR_FILES[backend]} there or pass weights=<path>"
    )


def torch_available(backend: str, user_path: str = "") -> tuple[bool, str]:
    try:
        if backend == "piq":
            importlib.import_module("piq.brisque")
        else:
            importlib.import_module("pyiqa.archs.brisque_arch")
    except Exception as exc:  # noqa: BLE001
        return False, f"{backend} not importable ({exc.__class__.__name__}: {exc})"
    path, reason = svr_weights(backend, user_path)
    return (path is not None), reason


def _load_svr(backend: str, path: Path) -> Any:
    """(sv_coef, sv) tensors for piq; a pyiqa BRISQUE module. Loaded once per process."""
    key = (backend, str(path))
    with _LOCK:
        if key not in _TORCH_MODELS:
            import torch

            sv_coef, sv = torch.load(path, map_location="cpu", weights_only=True)  # refuses pickled code
            if backend == "piq":
                _TORCH_MODELS[key] = (sv_coef, sv)
            else:
                from pyiqa.archs.brisque_arch import BRISQUE as PyiqaBRISQUE

                _TORCH_MODELS[key] = PyiqaBRISQUE(pretrained_model_path=str(path), version="original").eval()
        return _TORCH_MODELS[key]


def torch_score(img: np.ndarray, backend: str, path: Path) -> float | None:
    """BRISQUE of one image through piq or pyiqa (input RGB in [0, 1], data_range 1)."""
    import torch

    arr = _as_rgb8(img)
    if min(arr.shape[:2]) < MIN_SIDE:
        return None
    x = torch.from_numpy(np.array(arr, dtype=np.float64)).permute(2, 0, 1)[None] / 255.0
    model = _load_svr(backend, path)
    with _LOCK, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if backend == "piq":
                mod = importlib.import_module("piq.brisque")
                sv_coef, sv = model
                real = mod.load_url
                # piq's _score_svr fetches its SVR with load_url (a download when absent) and
                # transposes sv in place: hand it fresh copies of the file we loaded.
                mod.load_url = lambda *a, **k: (sv_coef.clone(), sv.clone())
                try:
                    value = float(mod.brisque(x, data_range=1.0, reduction="none").reshape(-1)[0])
                finally:
                    mod.load_url = real
            else:
                value = float(model.double()(x).reshape(-1)[0])
        except Exception:  # noqa: BLE001 - degenerate statistics (flat image)
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
            choices=("libsvm", "piq", "pyiqa"),
            source="libsvm: `brisque` PyPI package (models/svm.txt + normalize.pickle), as in "
            "VinAIResearch/Anti-DreamBooth evaluations/brisque.py; piq: as in liuyixin-louis/MetaCloak "
            "robust_facecloak/eval_score.py (BRISQUELoss)",
            help="libsvm = the brisque package's bundled SVR; piq / pyiqa = their torch code + piq's SVR file",
        ),
        Param("weights", str, "", setup=True, help="piq / pyiqa: local path to brisque_svm_weights.pt(h)"),
        Param(
            "resize",
            int,
            0,
            ge=0,
            source="MetaCloak robust_facecloak/eval_score.py BRISQUE_get_score resizes to 256x256 before piq",
            help="0 = score at native size; N = bilinear resize to N x N first (MetaCloak: 256)",
        ),
    ]
    needs = Needs(
        weights=(
            "libsvm: brisque package models/svm.txt + normalize.pickle (in the pip package)",
            "piq / pyiqa: brisque_svm_weights.pt(h) from piq's release v0.4.0 (cache or `weights`)",
        )
    )

    def check(self) -> None:
        if self.p.weights and self.p.backend == "libsvm":
            raise BenchError("metric.brisque: weights is only used by backends piq and pyiqa")

    def available(self) -> tuple[bool, str]:
        if self.p.backend == "libsvm":
            return available()
        return torch_available(self.p.backend, self.p.weights)

    def _score(self, img: np.ndarray) -> float | None:
        if self.p.resize:
            from PIL import Image as PILImage

            img = np.asarray(PILImage.fromarray(_as_rgb8(img)).resize((self.p.resize,) * 2, PILImage.BILINEAR))
        if self.p.backend == "libsvm":
            return score(img)
        path, _ = svr_weights(self.p.backend, self.p.weights)
        return torch_score(img, self.p.backend, path)

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        ok, reason = self.available()
        if not ok:
            return MetricResult.unavailable(reason)
        if not images:
            return MetricResult.unavailable("no images")
        per = [self._score(im) for im in images]
        good = [v for v in per if v is not None]
        if not good:
            return MetricResult.unavailable("BRISQUE undefined on every image (flat or smaller than 16 px)")
        return MetricResult(
            value=float(np.mean(good)),
            per_image=per,
            extra={"n_images": len(per), "n_scored": len(good)},
        )
