"""Identity metrics on generated images: FDFR, ISM and aISM.

Definitions (see /work/shared/reference/methods.md, "Metrics"):
- FDFR, face detection failure rate: fraction of generated images in which no face
  is detected (Anti-DreamBooth, Van Le et al. ICCV 2023, Sec. 5.1;
  VinAIResearch/Anti-DreamBooth evaluations/ism_fdfr.py, `fail_detection_count / len`).
- ISM, identity score matching, two published definitions, chosen by `definition`:
  "antidb": mean over generated images WITH a detected face of
      cos(embedding of the largest face, mean embedding of the clean references)
      (VinAIResearch/Anti-DreamBooth evaluations/ism_fdfr.py `matching_score_genimage_id`,
      reference mean from evaluations/compute_idx_emb.py);
  "rid": cos(mean generated-face embedding, mean reference embedding)
      (RID, Guo et al. 2024, arXiv:2412.09844, Eq. 16).
- aISM = ISM x (1 - FDFR), i.e. ISM x detection rate (RID, arXiv:2412.09844).

The papers embed with RetinaFace + ArcFace (deepface); backend "dlib" is an offline
MTCNN + dlib-ResNet stand-in (metrics/face_offline.py), so values are only
comparable between runs with the same backend - hence the id "ism[dlib]".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.params import Needs, Param
from bench.plugin import Image, Metric, MetricResult

from . import face_offline

_BACKENDS = {"dlib": face_offline}

BACKEND_PARAM = Param(
    name="backend",
    type=str,
    default="dlib",
    choices=("dlib",),
    source="offline stand-in for the papers' RetinaFace+ArcFace (deepface) used by "
    "VinAIResearch/Anti-DreamBooth evaluations/ism_fdfr.py; weights ship in pip packages",
    help="face detector + embedder: dlib = MTCNN (facenet-pytorch) + dlib ResNet descriptor",
)
DEFINITION_PARAM = Param(
    name="definition",
    type=str,
    default="antidb",
    choices=("antidb", "rid"),
    source="antidb: VinAIResearch/Anti-DreamBooth evaluations/ism_fdfr.py (mean per-image cosine); "
    "rid: RID arXiv:2412.09844 Eq. 16 (cosine of mean embeddings)",
    help="antidb = mean_i cos(e_i, mean_ref); rid = cos(mean_i e_i, mean_ref)",
)
_NEEDS = Needs(
    weights=(
        "facenet-pytorch MTCNN pnet/rnet/onet.pt (in the pip package)",
        "dlib shape_predictor_5_face_landmarks + dlib_face_recognition_resnet_model_v1 (face_recognition_models)",
    ),
    notes="CPU only; models load once per process",
)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


class _FaceMetric(Metric):
    target = "generation"
    needs = _NEEDS

    @property
    def backend(self):
        return _BACKENDS[self.p.backend]

    def available(self) -> tuple[bool, str]:
        return self.backend.available()

    def _faces(self, images: list[Image]) -> list[Any]:
        return self.backend.detect_and_embed(list(images))

    def _fdfr(self, faces: list[Any]) -> tuple[float, list[float]]:
        per = [0.0 if f is not None else 1.0 for f in faces]
        return float(np.mean(per)), per

    def _ism(self, images: list[Image], references: list[Image]) -> MetricResult:
        """Shared by ISM and AISM; returns value=None (status ok) when no generated face."""
        ok, reason = self.available()
        if not ok:
            return MetricResult.unavailable(reason)
        if not images:
            return MetricResult.unavailable("no generated images")
        ref_faces = self._faces(references)
        ref_emb = [f.embedding for f in ref_faces if f is not None]
        if not ref_emb:
            return MetricResult.unavailable("no face detected in the reference images")
        # Mean of the references' (unit) embeddings, as compute_idx_emb.py averages the
        # reference embeddings before the cosine.
        ref_mean = np.mean(ref_emb, axis=0)
        faces = self._faces(images)
        fdfr, _ = self._fdfr(faces)
        per = [(_cos(f.embedding, ref_mean) if f is not None else None) for f in faces]
        found = [f.embedding for f in faces if f is not None]
        extra: dict[str, Any] = {
            "definition": self.p.definition,
            "n_images": len(images),
            "n_faces": len(found),
            "fdfr": fdfr,
            "n_references": len(references),
            "n_reference_faces": len(ref_emb),
        }
        if not found:
            # Anti-DreamBooth's script returns ISM=None here; there is no face to compare.
            extra["undefined"] = "no face detected in any generated image"
            return MetricResult(value=None, per_image=per, extra=extra)
        if self.p.definition == "antidb":
            value = float(np.mean([v for v in per if v is not None]))
        else:  # "rid": RID Eq. 16, cosine between the mean embeddings
            value = _cos(np.mean(found, axis=0), ref_mean)
        return MetricResult(value=value, per_image=per, extra=extra)


class FDFR(_FaceMetric):
    name = "fdfr"
    summary = "face detection failure rate: fraction of generated images with no detected face"
    higher_is_better = False  # for the attacker; a defense wants it high
    params = [BACKEND_PARAM]

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        ok, reason = self.available()
        if not ok:
            return MetricResult.unavailable(reason)
        if not images:
            return MetricResult.unavailable("no generated images")
        faces = self._faces(images)
        value, per = self._fdfr(faces)
        return MetricResult(
            value=value,
            per_image=per,  # 1.0 = no face detected in that image
            extra={"n_images": len(images), "n_faces": sum(f is not None for f in faces)},
        )


class ISM(_FaceMetric):
    name = "ism"
    summary = "identity score matching: cosine between generated faces and the clean identity"
    higher_is_better = True
    params = [BACKEND_PARAM, DEFINITION_PARAM]

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        return self._ism(images, references)


class AISM(_FaceMetric):
    name = "aism"
    summary = "ISM x (1 - FDFR): identity match discounted by face detection failures (RID)"
    higher_is_better = True
    # Same ISM definition choice as `ism` so that aism = ism x (1 - fdfr) holds between
    # the benchmark's own columns; RID itself pairs aISM with its Eq. 16 ("rid").
    params = [BACKEND_PARAM, DEFINITION_PARAM]

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        res = self._ism(images, references)
        if res.status != "ok":
            return res
        fdfr = res.extra["fdfr"]
        ism = res.value
        extra = dict(res.extra, ism=ism)
        if ism is None:
            # Every image failed detection: detection rate 0, so aISM = 0 (the limit of
            # ISM x DR); the undefined ISM is recorded in extra.
            return MetricResult(value=0.0, per_image=res.per_image, extra=extra)
        # per_image: each face's cosine to the reference mean (None: no face), as for ISM.
        return MetricResult(value=float(ism * (1.0 - fdfr)), per_image=res.per_image, extra=extra)
