"""Offline face backend "dlib": MTCNN detection + dlib ResNet identity descriptors.

Why this pair: both ship their weights inside pip packages (facenet-pytorch carries
pnet/rnet/onet.pt, face_recognition_models carries the dlib .dat files), so identity
metrics run with no hub download. It is NOT the RetinaFace + ArcFace pair the papers
use (Anti-DreamBooth evaluations/ism_fdfr.py via deepface), so its ISM/FDFR numbers
are comparable with each other, not with published tables.

Pipeline per image: MTCNN (facenet-pytorch defaults) -> largest box -> dlib 5-point
shape predictor on that box -> dlib_face_recognition_resnet_model_v1 -> L2-normalised
128-d descriptor. Models load once per process (lazy, under a lock); results are
memoised by image content because fdfr/ism/aism run on the same images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKEND_NAME = "dlib"
DEFAULT_MIN_FACE_SIZE = 20  # facenet-pytorch MTCNN(min_face_size=20) default
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
MTCNN_WEIGHTS = ("pnet.pt", "rnet.pt", "onet.pt")

_LOCK = threading.RLock()  # guards loading and inference (dlib/torch objects are shared)
_DLIB: tuple[Any, Any] | None = None  # (shape_predictor, face_recognition_model_v1)
_MTCNN: dict[int, Any] = {}  # one detector per min_face_size
_AVAILABLE: tuple[bool, str] | None = None
_CACHE: "OrderedDict[tuple, FaceResult | None]" = OrderedDict()
_CACHE_MAX = 4096


@dataclass(frozen=True)
class FaceResult:
    """The largest detected face of one image."""

    box: np.ndarray  # (4,) float x1, y1, x2, y2 in pixels (MTCNN)
    prob: float  # MTCNN detection probability
    landmarks: np.ndarray  # (5, 2) float MTCNN points: eyes, nose, mouth corners
    embedding: np.ndarray  # (128,) float64, L2-normalised dlib descriptor
    n_faces: int  # faces MTCNN found in the image (the largest one is described)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))


# ------------------------------------------------------------------ files
def dlib_model_dir() -> Path | None:
    """face_recognition_models' model folder, found without importing the package
    (its __init__ needs pkg_resources, which may be absent)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def mtcnn_weight_dir() -> Path | None:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def model_files() -> dict[str, Path]:
    """Every weight file the backend reads (for records and `bench list`)."""
    out: dict[str, Path] = {}
    mdir, ddir = mtcnn_weight_dir(), dlib_model_dir()
    if mdir is not None:
        out.update({f"mtcnn/{n}": mdir / n for n in MTCNN_WEIGHTS})
    if ddir is not None:
        out.update({f"dlib/{n}": ddir / n for n in (SHAPE_PREDICTOR, DESCRIPTOR_MODEL)})
    return out


def available() -> tuple[bool, str]:
    """(True, "") or (False, reason); never raises, so metrics can report why."""
    global _AVAILABLE
    if _AVAILABLE is not None:
        return _AVAILABLE
    with _LOCK:
        _AVAILABLE = _check()
    return _AVAILABLE


def _check() -> tuple[bool, str]:
    try:
        import torch  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
        return False, f"torch not importable ({exc.__class__.__name__}: {exc})"
    if importlib.util.find_spec("facenet_pytorch") is None:
        return False, "facenet-pytorch not installed"
    try:
        from facenet_pytorch import MTCNN  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"facenet-pytorch not importable ({exc.__class__.__name__}: {exc})"
    if importlib.util.find_spec("dlib") is None:
        return False, "dlib not installed (pip install dlib-bin)"
    try:
        import dlib  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"dlib not importable ({exc.__class__.__name__}: {exc})"
    if dlib_model_dir() is None:
        return False, "face_recognition_models not installed (it ships the dlib model files)"
    missing = [str(p) for p in model_files().values() if not p.is_file()]
    if missing:
        return False, f"model file missing: {missing[0]}"
    return True, ""


# ------------------------------------------------------------------ models
def _load_dlib() -> tuple[Any, Any]:
    global _DLIB
    with _LOCK:
        if _DLIB is None:
            import dlib

            ddir = dlib_model_dir()
            assert ddir is not None
            _DLIB = (
                dlib.shape_predictor(str(ddir / SHAPE_PREDICTOR)),
                dlib.face_recognition_model_v1(str(ddir / DESCRIPTOR_MODEL)),
            )
        return _DLIB


def load_mtcnn(min_face_size: int) -> Any:
    with _LOCK:
        if min_face_size not in _MTCNN:
            from facenet_pytorch import MTCNN

            # select_largest=True: detect() returns boxes sorted by area, largest first,
            # matching Anti-DreamBooth's "biggest face" rule (evaluations/ism_fdfr.py).
            _MTCNN[min_face_size] = MTCNN(min_face_size=min_face_size, select_largest=True, device="cpu")
        return _MTCNN[min_face_size]


def load(min_face_size: int = DEFAULT_MIN_FACE_SIZE) -> None:
    """Load every model now (else the first detect_and_embed call does it)."""
    ok, reason = available()
    if not ok:
        raise RuntimeError(f"face backend {BACKEND_NAME!r} unavailable: {reason}")
    _load_dlib()
    load_mtcnn(int(min_face_size))


# ------------------------------------------------------------------ inference
def _as_rgb8(img: np.ndarray) -> np.ndarray:
    """Contract images are uint8 RGB; also accept grey (H, W) / (H, W, 1) and RGBA."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[..., :3]
    elif arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _key(img: np.ndarray, min_face_size: int) -> tuple:
    return (img.shape, min_face_size, hashlib.blake2b(img.tobytes(), digest_size=16).digest())


def _embed(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    import dlib

    sp, rec = _load_dlib()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    # MTCNN boxes may overshoot the frame; dlib wants integer, in-frame corners.
    left, top = int(round(max(0.0, x1))), int(round(max(0.0, y1)))
    right, bottom = int(round(min(w - 1.0, x2))), int(round(min(h - 1.0, y2)))
    shape = sp(img, dlib.rectangle(left, top, max(right, left + 1), max(bottom, top + 1)))
    desc = np.asarray(rec.compute_face_descriptor(img, shape), dtype=np.float64)
    norm = float(np.linalg.norm(desc))
    return desc / norm if norm > 0 else desc


def _detect_group(imgs: list[np.ndarray], min_face_size: int) -> list[FaceResult | None]:
    """Detect on same-shape images as one MTCNN batch (facenet-pytorch requires equal sizes)."""
    h, w = imgs[0].shape[:2]
    if min(h, w) < max(12, min_face_size):
        # MTCNN's image pyramid is empty below its minimum face size: no face is the real answer.
        return [None] * len(imgs)
    mtcnn = load_mtcnn(min_face_size)
    boxes, probs, points = mtcnn.detect(np.stack(imgs), landmarks=True)
    out: list[FaceResult | None] = []
    for img, b, p, pts in zip(imgs, boxes, probs, points):
        if b is None or len(b) == 0:
            out.append(None)
            continue
        b = np.asarray(b, dtype=np.float64)
        pts = np.asarray(pts, dtype=np.float64)
        out.append(
            FaceResult(
                box=b[0],
                prob=float(np.asarray(p, dtype=np.float64)[0]),
                landmarks=pts[0],
                embedding=_embed(img, b[0]),
                n_faces=int(len(b)),
            )
        )
    return out


def detect_and_embed(
    images: list[np.ndarray],
    min_face_size: int = DEFAULT_MIN_FACE_SIZE,
    batch_size: int = 8,
    cache: bool = True,
) -> list[FaceResult | None]:
    """One FaceResult (largest face) or None (no face) per image, in input order.

    Raises RuntimeError when the backend is unavailable; metrics call available()
    first and report the reason instead.
    """
    load(min_face_size)
    min_face_size = int(min_face_size)
    rgb = [_as_rgb8(im) for im in images]
    results: list[FaceResult | None] = [None] * len(rgb)
    todo: dict[tuple, list[int]] = {}  # shape -> indices still to compute
    keys = [_key(im, min_face_size) for im in rgb]
    with _LOCK:
        for i, k in enumerate(keys):
            if cache and k in _CACHE:
                results[i] = _CACHE[k]
                _CACHE.move_to_end(k)
            else:
                todo.setdefault(rgb[i].shape, []).append(i)
        for idx in todo.values():
            for s in range(0, len(idx), max(1, batch_size)):
                chunk = idx[s : s + max(1, batch_size)]
                for i, res in zip(chunk, _detect_group([rgb[i] for i in chunk], min_face_size)):
                    results[i] = res
                    if cache:
                        _CACHE[keys[i]] = res
                        while len(_CACHE) > _CACHE_MAX:
                            _CACHE.popitem(last=False)
    return results


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
