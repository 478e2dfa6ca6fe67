"""FID (Heusel et al., NeurIPS 2017): Frechet distance between Gaussian fits of the
features of generated and reference images; lower = closer distributions.

Backends (named in the id, "fid[inception]", "fid[dlib-face]"):
- "inception": torchmetrics FrechetInceptionDistance (torch-fidelity's Inception-v3,
  2048-d pool features), the features every paper's FID uses. Its weights
  (pt_inception-2015-12-05) come from torch-fidelity's release URL; here they must
  already be in the torch hub cache or be passed as `weights` - nothing is downloaded,
  without them the metric is "unavailable: ...".
- "dlib-face": an offline stand-in whose extractor needs no download: the 128-d dlib
  ResNet descriptor of the largest face (metrics/face_offline.py). Images without a
  detected face are excluded and counted. Not comparable with Inception FID.

Pooling (param `pooling`): "identity" = FID of one cell's generated images against
that identity's clean references (RID / Anti-DreamBooth compute FID per identity and
average); "pooled" = DLADiff's protocol (200 clean vs 1000 generated images pooled
over identities): a cell cannot see the other identities, so it stores its per-image
features in `extra` and returns value None; `pooled_fid(results)` combines cells.

Why the care: with the few images of a cell the covariances are rank-deficient and
sqrtm(S1 S2) of a singular product is ill-conditioned; `frechet_distance` uses the
symmetric form tr sqrt(S1^1/2 S2 S1^1/2) with eigh in float64, exact for PSD
matrices, and `extra["warning"]` flags sample sizes below the feature dimension or 50.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.stats import fid_from_features, frechet_distance, gaussian_stats  # noqa: F401 (re-exported)
from bench.params import Needs, Param
from bench.plugin import Image, Metric, MetricResult

from . import face_offline

MIN_STABLE_N = 50  # below this (or below the feature dimension) FID is strongly biased
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file name
_LOCK = threading.RLock()
_INCEPTION: dict[str, Any] = {}  # weights path -> FrechetInceptionDistance (loaded once)


# ------------------------------------------------------------------ the distance (bench.stats:
# numerics only, shared with the leaderboard's pooled FID)
def sample_warning(n_gen: int, n_ref: int, dim: int) -> str | None:
    n = min(n_gen, n_ref)
    if n < max(MIN_STABLE_N, dim):
        return (
            f"few samples (generated {n_gen}, reference {n_ref}; feature dim {dim}): covariances are "
            f"rank-deficient below {max(MIN_STABLE_N, dim)}, FID is biased upward and unstable; compare "
            "only at equal sample sizes"
        )
    return None


def pooled_fid(results: list[dict[str, Any] | MetricResult]) -> MetricResult:
    """DLADiff-style pooled FID over cells run with pooling="pooled" (each stores its
    per-image features in extra["features_generated"/"features_reference"])."""
    gen, ref = [], []
    for r in results:
        extra = r.extra if isinstance(r, MetricResult) else r.get("extra", {})
        if "features_generated" not in extra:
            return MetricResult.unavailable("a cell has no stored features (run fid with pooling=pooled)")
        gen += extra["features_generated"]
        ref += extra["features_reference"]
    if len(gen) < 2 or len(ref) < 2:
        return MetricResult.unavailable("need >= 2 feature vectors on each side")
    g, f = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
    extra: dict[str, Any] = {"n_generated": len(g), "n_reference": len(f), "n_cells": len(results)}
    warn = sample_warning(len(g), len(f), g.shape[1])
    if warn:
        extra["warning"] = warn
    return MetricResult(value=fid_from_features(g, f), extra=extra)


# ------------------------------------------------------------------ extractors
def inception_weights(user_path: str) -> tuple[Path | None, str]:
    """(path, "") or (None, reason). Never downloads."""
    if user_path:
        p = Path(user_path).expanduser()
        return (p, "") if p.is_file() else (None, f"Inception weights file not found: {p}")
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached, ""
    return None, (
        f"Inception-v3 FID weights not present ({cached}); pass metric param weights=<path to "
        f"{INCEPTION_FILE}> (torch-fidelity's pt_inception-2015-12-05)"
    )


def _inception_metric(path: Path) -> Any:
    with _LOCK:
        key = str(path)
        if key not in _INCEPTION:
            import torch
            from torchmetrics.image.fid import FrechetInceptionDistance

            # Refuse pickled code: torch-fidelity itself loads with weights_only=False.
            torch.load(path, map_location="cpu", weights_only=True)
            _INCEPTION[key] = FrechetInceptionDistance(
                feature=2048, normalize=False, feature_extractor_weights_path=str(path)
            )
        return _INCEPTION[key]


def inception_features(images: list[Image], path: Path, batch_size: int = 16) -> np.ndarray:
    """2048-d pool3 features, uint8 input resized inside torch-fidelity's extractor (bilinear to 299)."""
    import torch

    metric = _inception_metric(path)
    out = []
    with _LOCK, torch.no_grad():
        for s in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.stack([np.ascontiguousarray(im[..., :3]) for im in images[s : s + batch_size]]))
            feats = metric.inception(batch.permute(0, 3, 1, 2).contiguous())
            out.append(feats.reshape(len(batch), -1).double().numpy())
    return np.concatenate(out, axis=0)


def dlib_face_features(images: list[Image]) -> tuple[np.ndarray, int]:
    """(n_with_face, 128) descriptors and the number of images without a face."""
    faces = face_offline.detect_and_embed(list(images))
    found = [f.embedding for f in faces if f is not None]
    arr = np.asarray(found, np.float64).reshape(len(found), 128)
    return arr, len(faces) - len(found)


# ------------------------------------------------------------------ plugin
class FID(Metric):
    name = "fid"
    summary = "Frechet distance between generated and clean-reference feature distributions (lower = closer)"
    target = "generation"
    higher_is_better = False  # for the attacker; a defense wants it high
    version = "1"
    id_params = ("pooling",)  # fid[dlib-face,pooling=pooled]: a pooled cell has no value of its own
    params = [
        Param(
            "backend",
            str,
            "inception",
            tiny="dlib-face",
            choices=("inception", "dlib-face"),
            source="Heusel et al. 2017 (Inception-v3 pool3); dlib-face = offline stand-in "
            "(face_recognition_models dlib ResNet, ships in pip)",
            help="feature extractor; the value is only comparable within one backend",
        ),
        Param(
            "pooling",
            str,
            "identity",
            choices=("identity", "pooled"),
            source="RID arXiv:2412.09844 / Anti-DreamBooth: per identity; DLADiff: pooled "
            "(200 clean vs 1000 generated)",
            help="identity = this cell's FID; pooled = store features, combine cells with metrics.fid.pooled_fid",
        ),
        Param("weights", str, "", setup=True, help="inception: local path to torch-fidelity's pt_inception-2015-12-05 weights"),
    ]
    needs = Needs(
        weights=(
            "inception: torch-fidelity pt_inception-2015-12-05 (torch hub cache or `weights`)",
            "dlib-face: facenet-pytorch MTCNN + dlib ResNet (in pip packages)",
        )
    )

    def check(self) -> None:
        if self.p.weights and self.p.backend != "inception":
            raise BenchError(f"metric.fid: weights is only used by backend=inception, not {self.p.backend!r}")

    def available(self) -> tuple[bool, str]:
        if self.p.backend == "dlib-face":
            return face_offline.available()
        try:
            import torch_fidelity  # noqa: F401
            from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
            return False, f"torchmetrics/torch-fidelity not importable ({exc.__class__.__name__}: {exc})"
        path, reason = inception_weights(self.p.weights)
        return (path is not None), reason

    def _features(self, images: list[Image]) -> tuple[np.ndarray, int]:
        if self.p.backend == "dlib-face":
            return dlib_face_features(images)
        path, _ = inception_weights(self.p.weights)
        return inception_features(images, path), 0

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        ok, reason = self.available()
        if not ok:
            return MetricResult.unavailable(reason)
        if not images or not references:
            return MetricResult.unavailable("no generated or no reference images")
        gen, gen_missing = self._features(images)
        ref, ref_missing = self._features(references)
        extra: dict[str, Any] = {
            "backend": self.p.backend,
            "pooling": self.p.pooling,
            "n_generated": len(gen),
            "n_reference": len(ref),
            "n_generated_excluded": gen_missing,  # dlib-face: images without a detected face
            "n_reference_excluded": ref_missing,
        }
        if self.p.pooling == "pooled":
            extra["features_generated"] = np.round(gen, 6).tolist()
            extra["features_reference"] = np.round(ref, 6).tolist()
            extra["note"] = "pooled: combine cells with metrics.fid.pooled_fid"
            extra["undefined"] = "pooled FID has one value per pool of identities (leaderboard: pooled FID table)"
            return MetricResult(value=None, extra=extra)
        if len(gen) < 2 or len(ref) < 2:
            return MetricResult.unavailable(
                f"need >= 2 images with features on each side (generated {len(gen)}, reference {len(ref)})"
            )
        warn = sample_warning(len(gen), len(ref), gen.shape[1])
        if warn:
            extra["warning"] = warn
        return MetricResult(value=fid_from_features(gen, ref), extra=extra)
