"""Face detector + embedder backends for the identity metrics (fdfr / ism / aism / ims).

Each backend has `available() -> (ok, reason)` and `detect_and_embed(images)` -> one
face_offline.FaceResult (largest face, L2-normalised embedding) or None per image.
Nothing here downloads: the packages insightface and deepface fetch missing weights
from GitHub / Google Drive / the hub on first use, so every backend first checks that
its files are on disk and otherwise reports "unavailable" with the path to fill.

- "dlib": MTCNN + dlib ResNet, weights inside pip packages (metrics/face_offline.py).
- "insightface-antelopev2", "insightface-buffalo_l": insightface FaceAnalysis
  (SCRFD detector + ArcFace recognition ONNX models of the pack) - antelopev2 is the
  pack IP-Adapter FaceID / InstantID / DiffShortcut's IMS_IP use (glintr100 ArcFace).
  Files: <weights_dir or ~/.insightface/models>/<pack>/*.onnx.
- "deepface-arcface", "deepface-vggface": deepface.DeepFace.represent with
  detector_backend="retinaface", align=True, enforce_detection=True, as
  VinAIResearch/Anti-DreamBooth evaluations/ism_fdfr.py (ArcFace) and MetaCloak /
  DiffShortcut's IMS_VGG-Face (VGG-Face). Files: $DEEPFACE_HOME/.deepface/weights/
  retinaface.<ext> + arcface_weights.<ext> / vgg_face_weights.<ext>, <ext> set by
  deepface's engine (tensorflow .h5, pytorch .pth, onnx .onnx).

- "yunet" (FDFR only: a detector, no embedder): OpenCV's `cv2.FaceDetectorYN` with the
  YuNet ONNX model (MIT; opencv/opencv_zoo models/face_detection_yunet), a second detector
  independent of MTCNN and RetinaFace. File: face_detection_yunet*.onnx in `weights_dir`,
  $BENCH_YUNET_DIR or ~/.cache/bench/yunet (tests: ../shared/models/yunet). Thresholds as the
  zoo's demo.py: score 0.9, NMS 0.3, top-k 5000.

`family` names the encoder so that a zero-shot attack that conditions on ArcFace
embeddings (IP-Adapter FaceID, InstantID, PhotoMaker-style) can be scored by an
encoder it did not optimise against: `independent_backends("arcface")`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from . import face_offline
from .face_offline import FaceResult

BACKENDS = ("dlib", "insightface-antelopev2", "insightface-buffalo_l", "deepface-arcface", "deepface-vggface")
DETECTORS = ("yunet",)  # detection only: FDFR backends, never ISM
FAMILY = {
    "dlib": "dlib-resnet",
    "insightface-antelopev2": "arcface",
    "insightface-buffalo_l": "arcface",
    "deepface-arcface": "arcface",
    "deepface-vggface": "vggface",
}
_LOCK = threading.RLock()
_INSTANCES: dict[tuple[str, str], Any] = {}
_CACHE_MAX = 4096


def independent_backends(attack_family: str = "arcface") -> list[str]:
    """Backends whose encoder differs from the one the attack conditions on."""
    return [b for b in BACKENDS if FAMILY[b] != attack_family]


def get_backend(name: str, weights_dir: str = "") -> Any:
    """One instance per (backend, weights_dir) per process, so models load once."""
    if name not in BACKENDS + DETECTORS:
        raise ValueError(f"unknown face backend {name!r}; choose one of {list(BACKENDS + DETECTORS)}")
    key = (name, weights_dir)
    with _LOCK:
        if key not in _INSTANCES:
            if name == "yunet":
                _INSTANCES[key] = _YuNet(weights_dir)
            elif name == "dlib":
                _INSTANCES[key] = _Dlib()
            elif name.startswith("insightface-"):
                _INSTANCES[key] = _InsightFace(name.split("-", 1)[1], weights_dir)
            else:
                _INSTANCES[key] = _DeepFace({"deepface-arcface": "ArcFace", "deepface-vggface": "VGG-Face"}[name], weights_dir)
        return _INSTANCES[key]


def clear_caches() -> None:
    """Forget memoised detections (benchmarks time the per-cell cost without them)."""
    face_offline.clear_cache()
    with _LOCK:
        for inst in _INSTANCES.values():
            if isinstance(inst, _Memo):
                inst._cache.clear()


def _rgb8(img: np.ndarray) -> np.ndarray:
    return face_offline._as_rgb8(img)


class _Dlib:
    name = "dlib"

    def available(self) -> tuple[bool, str]:
        return face_offline.available()

    def detect_and_embed(self, images: list[np.ndarray]) -> list[FaceResult | None]:
        return face_offline.detect_and_embed(list(images))


class _Memo:
    """Per-image memo (fdfr, ism and aism score the same generated images)."""

    def __init__(self) -> None:
        self._cache: "OrderedDict[bytes, FaceResult | None]" = OrderedDict()

    def run(self, images: list[np.ndarray], one) -> list[FaceResult | None]:
        out = []
        for img in images:
            arr = _rgb8(img)
            k = hashlib.blake2b(repr(arr.shape).encode() + arr.tobytes(), digest_size=16).digest()
            with _LOCK:
                if k not in self._cache:
                    self._cache[k] = one(arr)
                    while len(self._cache) > _CACHE_MAX:
                        self._cache.popitem(last=False)
                out.append(self._cache[k])
        return out


def _unit(v: Any) -> np.ndarray:
    e = np.asarray(v, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(e))
    return e / n if n > 0 else e


# ------------------------------------------------------------------ YuNet (detector only)
YUNET_SCORE, YUNET_NMS, YUNET_TOP_K = 0.9, 0.3, 5000  # opencv_zoo face_detection_yunet demo.py defaults


class _YuNet(_Memo):
    name = "yunet"

    def __init__(self, weights_dir: str) -> None:
        super().__init__()
        self.root = Path(weights_dir or os.environ.get("BENCH_YUNET_DIR") or "~/.cache/bench/yunet").expanduser()
        self._net: Any = None

    def model_file(self) -> Path | None:
        found = sorted(self.root.glob("face_detection_yunet*.onnx")) if self.root.is_dir() else []
        return found[-1] if found else None

    def available(self) -> tuple[bool, str]:
        import cv2

        if not hasattr(cv2, "FaceDetectorYN"):
            return False, f"this OpenCV ({cv2.__version__}) has no FaceDetectorYN"
        if self.model_file() is None:
            return False, (f"YuNet model not present (no face_detection_yunet*.onnx in {self.root}); get it from "
                           "opencv/opencv_zoo models/face_detection_yunet and pass metric param weights_dir")
        return True, ""

    def _one(self, arr: np.ndarray) -> FaceResult | None:
        import cv2

        with _LOCK:
            if self._net is None:
                self._net = cv2.FaceDetectorYN.create(str(self.model_file()), "", (arr.shape[1], arr.shape[0]),
                                                      YUNET_SCORE, YUNET_NMS, YUNET_TOP_K)
            self._net.setInputSize((arr.shape[1], arr.shape[0]))
            _, faces = self._net.detect(np.ascontiguousarray(arr[..., ::-1]))  # OpenCV wants BGR
        if faces is None or len(faces) == 0:
            return None
        best = max(faces, key=lambda f: f[2] * f[3])
        x, y, w, h = (float(v) for v in best[:4])
        return FaceResult(box=np.array([x, y, x + w, y + h]), prob=float(best[14]),
                          landmarks=np.asarray(best[4:14], np.float64).reshape(5, 2), embedding=np.zeros(0), n_faces=len(faces))

    def detect_and_embed(self, images: list[np.ndarray]) -> list[FaceResult | None]:
        return self.run(images, self._one)


# ------------------------------------------------------------------ insightface
class _InsightFace(_Memo):
    def __init__(self, pack: str, weights_dir: str) -> None:
        super().__init__()
        self.pack = pack
        self.name = f"insightface-{pack}"
        self.root = Path(weights_dir or "~/.insightface/models").expanduser()
        self._app: Any = None

    def model_dir(self) -> Path | None:
        d = self.root / self.pack
        for cand in (d, d / self.pack):  # the antelopev2 zip unpacks one level deeper
            if cand.is_dir() and len(list(cand.glob("*.onnx"))) >= 2:
                return cand
        return None

    def available(self) -> tuple[bool, str]:
        for mod, pip in (("insightface", "insightface"), ("onnxruntime", "onnxruntime")):
            if importlib.util.find_spec(mod) is None:
                return False, f"{pip} not installed"
        if self.model_dir() is None:
            return False, (
                f"insightface model pack {self.pack!r} not found in {self.root / self.pack} "
                "(needs its detection + recognition .onnx files; insightface would download them - "
                "unpack the pack there or pass weights_dir)"
            )
        try:
            import insightface  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            return False, f"insightface not importable ({exc.__class__.__name__}: {exc})"
        return True, ""

    def _load(self) -> Any:
        with _LOCK:
            if self._app is None:
                from insightface.app import FaceAnalysis

                # A directory as `name` makes FaceAnalysis read it directly (no download).
                app = FaceAnalysis(
                    name=str(self.model_dir()),
                    allowed_modules=["detection", "recognition"],
                    providers=["CPUExecutionProvider"],
                )
                # det_size 640: IP-Adapter FaceID / InstantID README usage of antelopev2.
                app.prepare(ctx_id=-1, det_size=(640, 640))
                self._app = app
            return self._app

    def _one(self, rgb: np.ndarray) -> FaceResult | None:
        app = self._load()
        faces = app.get(np.ascontiguousarray(rgb[..., ::-1]))  # insightface expects BGR
        if not faces:
            return None
        area = lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))  # noqa: E731
        best = max(faces, key=area)
        kps = getattr(best, "kps", None)
        return FaceResult(
            box=np.asarray(best.bbox, np.float64),
            prob=float(best.det_score),
            landmarks=np.asarray(kps, np.float64) if kps is not None else np.full((5, 2), np.nan),
            embedding=_unit(best.embedding),
            n_faces=len(faces),
        )

    def detect_and_embed(self, images: list[np.ndarray]) -> list[FaceResult | None]:
        ok, reason = self.available()
        if not ok:
            raise RuntimeError(f"face backend {self.name!r} unavailable: {reason}")
        return self.run(images, self._one)


# ------------------------------------------------------------------ deepface
_DEEPFACE_FILES = {"ArcFace": "arcface_weights", "VGG-Face": "vgg_face_weights"}
_ENGINE_EXT = {"tensorflow": ".h5", "pytorch": ".pth", "onnx": ".onnx"}


class _DeepFace(_Memo):
    def __init__(self, model_name: str, weights_dir: str) -> None:
        super().__init__()
        self.model_name = model_name
        self.name = "deepface-" + model_name.replace("-", "").lower()
        self.weights_dir = weights_dir
        self._built = False

    def home(self) -> Path:
        """deepface and retina-face read <DEEPFACE_HOME>/.deepface/weights."""
        if self.weights_dir:
            return Path(self.weights_dir).expanduser()
        return Path(os.environ.get("DEEPFACE_HOME", str(Path.home()))).expanduser()

    def files(self, engine: str) -> list[Path]:
        ext = _ENGINE_EXT[engine]
        wdir = self.home() / ".deepface" / "weights"
        return [wdir / f"retinaface{ext}", wdir / f"{_DEEPFACE_FILES[self.model_name]}{ext}"]

    def available(self) -> tuple[bool, str]:
        for mod, pip in (("deepface", "deepface"), ("retinaface", "retina-face")):
            if importlib.util.find_spec(mod) is None:
                return False, f"{pip} not installed"
        try:
            from deepface.commons import backend_utils  # no side effects (no folder, no download)

            engine = backend_utils.get_backend_engine()
        except Exception as exc:  # noqa: BLE001
            return False, f"deepface has no usable engine ({exc.__class__.__name__}: {exc})"
        missing = [str(p) for p in self.files(engine) if not p.is_file()]
        if missing:
            return False, (
                f"deepface weights missing: {', '.join(missing)} (deepface would download them; place the "
                f"files there, or pass weights_dir=<folder holding .deepface/weights>)"
            )
        return True, ""

    def _represent(self, rgb: np.ndarray) -> list[dict]:
        from deepface import DeepFace

        with _LOCK:
            old = os.environ.get("DEEPFACE_HOME")
            os.environ["DEEPFACE_HOME"] = str(self.home())  # files checked present: no download
            try:
                return DeepFace.represent(
                    img_path=np.ascontiguousarray(rgb[..., ::-1]),  # deepface expects BGR arrays
                    model_name=self.model_name,
                    detector_backend="retinaface",
                    enforce_detection=True,
                    align=True,
                )
            finally:
                if old is None:
                    os.environ.pop("DEEPFACE_HOME", None)
                else:
                    os.environ["DEEPFACE_HOME"] = old

    def _one(self, rgb: np.ndarray) -> FaceResult | None:
        try:
            resps = self._represent(rgb)
        except ValueError:
            return None  # deepface raises ValueError when enforce_detection finds no face
        if not resps:
            return None
        area = lambda r: float(r["facial_area"]["w"] * r["facial_area"]["h"])  # noqa: E731
        best = max(resps, key=area)
        fa = best["facial_area"]
        return FaceResult(
            box=np.asarray([fa["x"], fa["y"], fa["x"] + fa["w"], fa["y"] + fa["h"]], np.float64),
            prob=float(best.get("face_confidence", np.nan) or np.nan),
            landmarks=np.full((5, 2), np.nan),
            embedding=_unit(best["embedding"]),
            n_faces=len(resps),
        )

    def detect_and_embed(self, images: list[np.ndarray]) -> list[FaceResult | None]:
        ok, reason = self.available()
        if not ok:
            raise RuntimeError(f"face backend {self.name!r} unavailable: {reason}")
        return self.run(images, self._one)
