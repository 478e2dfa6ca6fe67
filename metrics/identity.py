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

  "pairwise" (IMS): mean over generated faces of the mean over reference faces of
      cos(e_i, r_j) - MetaCloak robust_facecloak/eval_score.py IMS_get_score
      (1 - mean deepface cosine distance to every clean image), whose VGG-Face score
      DiffShortcut reuses as IMS_VGG-Face_cosine.
- IMS (DiffShortcut, App. A.2; diffshortcut/get_score_tempalte.py) =
  0.7 x IMS(insightface antelopev2) + 0.3 x IMS(deepface VGG-Face).

Backends (metrics/face_backends.py) are named in the id: "ism[dlib]" is the offline
MTCNN + dlib-ResNet stand-in (metrics/face_offline.py); "ism[deepface-arcface]" is
the papers' RetinaFace + ArcFace; "ism[insightface-antelopev2]" the IP-Adapter pack.
Values are only comparable within one backend. For zero-shot attacks that condition
on ArcFace embeddings, report an encoder the attack did not use beside ArcFace:
face_backends.independent_backends("arcface") -> dlib, deepface-vggface.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.params import Needs, Param
from bench.plugin import Image, Metric, MetricResult

from . import face_backends

BACKEND_PARAM = Param(
    name="backend",
    type=str,
    default="dlib",
    choices=face_backends.BACKENDS,
    source="deepface-arcface = the papers' RetinaFace+ArcFace (VinAIResearch/Anti-DreamBooth "
    "evaluations/ism_fdfr.py); dlib = offline stand-in whose weights ship in pip packages",
    help="face detector + embedder: dlib (MTCNN + dlib ResNet), insightface-antelopev2/-buffalo_l "
    "(SCRFD + ArcFace ONNX), deepface-arcface/-vggface (RetinaFace + ArcFace/VGG-Face)",
)
WEIGHTS_DIR_PARAM = Param(
    name="weights_dir",
    type=str,
    default="",
    setup=True,
    help="insightface: folder holding <pack>/*.onnx (default ~/.insightface/models); "
    "deepface: folder holding .deepface/weights (default $DEEPFACE_HOME or ~); unused by dlib",
)
DEFINITION_PARAM = Param(
    name="definition",
    type=str,
    default="antidb",
    choices=("antidb", "rid", "pairwise"),
    source="antidb: VinAIResearch/Anti-DreamBooth evaluations/ism_fdfr.py (mean per-image cosine); "
    "rid: RID arXiv:2412.09844 Eq. 16 (cosine of mean embeddings); "
    "pairwise: liuyixin-louis/MetaCloak robust_facecloak/eval_score.py IMS_get_score",
    help="antidb = mean_i cos(e_i, mean_ref); rid = cos(mean_i e_i, mean_ref); "
    "pairwise = mean_i mean_j cos(e_i, r_j)",
)
_NEEDS = Needs(
    weights=(
        "dlib: facenet-pytorch MTCNN pnet/rnet/onet.pt (in the pip package)",
        "dlib: shape_predictor_5_face_landmarks + dlib_face_recognition_resnet_model_v1 (face_recognition_models)",
        "insightface-<pack>: ~/.insightface/models/<pack>/*.onnx (antelopev2 or buffalo_l)",
        "deepface-*: ~/.deepface/weights/retinaface + arcface_weights / vgg_face_weights",
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
        return face_backends.get_backend(self.p.backend, self.p.get("weights_dir", ""))

    def check(self) -> None:
        if self.p.get("weights_dir") and self.p.backend == "dlib":
            raise BenchError(f"metric.{self.name}: weights_dir is not used by backend=dlib (its weights ship in pip)")

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
            "encoder_family": face_backends.FAMILY[self.p.backend],
        }
        if not found:
            # Anti-DreamBooth's script returns ISM=None here; there is no face to compare.
            extra["undefined"] = "no face detected in any generated image"
            return MetricResult(value=None, per_image=per, extra=extra)
        if self.p.definition == "pairwise":
            # per image: mean cosine to every reference face (MetaCloak IMS_get_score)
            per = [(float(np.mean([_cos(f.embedding, r) for r in ref_emb])) if f is not None else None) for f in faces]
        if self.p.definition in ("antidb", "pairwise"):
            value = float(np.mean([v for v in per if v is not None]))
        else:  # "rid": RID Eq. 16, cosine between the mean embeddings
            value = _cos(np.mean(found, axis=0), ref_mean)
        return MetricResult(value=value, per_image=per, extra=extra)


FDFR_BACKEND_PARAM = Param(
    name="backend", type=str, default="dlib", choices=face_backends.BACKENDS + face_backends.DETECTORS,
    source=BACKEND_PARAM.source + "; yunet = OpenCV FaceDetectorYN (opencv/opencv_zoo face_detection_yunet), a second "
    "offline detector", help=BACKEND_PARAM.help + "; yunet (OpenCV YuNet, detection only)",
)


class FDFR(_FaceMetric):
    name = "fdfr"
    summary = "face detection failure rate: fraction of generated images with no detected face"
    higher_is_better = False  # for the attacker; a defense wants it high
    params = [FDFR_BACKEND_PARAM, WEIGHTS_DIR_PARAM]

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
    params = [BACKEND_PARAM, DEFINITION_PARAM, WEIGHTS_DIR_PARAM]

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        return self._ism(images, references)


class AISM(_FaceMetric):
    name = "aism"
    summary = "ISM x (1 - FDFR): identity match discounted by face detection failures (RID)"
    higher_is_better = True
    # Same ISM definition choice as `ism` so that aism = ism x (1 - fdfr) holds between
    # the benchmark's own columns; RID itself pairs aISM with its Eq. 16 ("rid").
    params = [BACKEND_PARAM, DEFINITION_PARAM, WEIGHTS_DIR_PARAM]

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


class IMS(Metric):
    """DiffShortcut's identity score: lambda x IMS_IP(antelopev2) + (1 - lambda) x IMS_VGG."""

    name = "ims"
    summary = "DiffShortcut IMS = 0.7 x ISM(insightface antelopev2) + 0.3 x ISM(deepface VGG-Face)"
    target = "generation"
    higher_is_better = True
    params = [
        Param(
            "ip_weight",
            float,
            0.7,
            source="DiffShortcut App. A.2 (lambda = 0.7); liuyixin-louis/DiffShortcut "
            "diffshortcut/get_score_tempalte.py",
            ge=0.0,
            le=1.0,
        ),
        Param(
            "definition",
            str,
            "pairwise",
            choices=("antidb", "rid", "pairwise"),
            source="liuyixin-louis/MetaCloak robust_facecloak/eval_score.py IMS_get_score "
            "(IMS_VGG-Face_cosine, reused by DiffShortcut)",
            help="ISM definition used for both parts (see metric ism)",
        ),
        Param("insightface_dir", str, "", setup=True, help="folder holding antelopev2/*.onnx (default ~/.insightface/models)"),
        Param("deepface_home", str, "", setup=True, help="folder holding .deepface/weights (default $DEEPFACE_HOME or ~)"),
    ]
    needs = Needs(
        weights=(
            "~/.insightface/models/antelopev2/*.onnx",
            "~/.deepface/weights/retinaface + vgg_face_weights (engine-specific extension)",
        )
    )

    def _parts(self) -> tuple[ISM, ISM]:
        ip = ISM(
            {"backend": "insightface-antelopev2", "definition": self.p.definition, "weights_dir": self.p.insightface_dir},
            self.profile,
        )
        vgg = ISM(
            {"backend": "deepface-vggface", "definition": self.p.definition, "weights_dir": self.p.deepface_home},
            self.profile,
        )
        return ip, vgg

    def available(self) -> tuple[bool, str]:
        reasons = []
        for part in self._parts():
            ok, reason = part.available()
            if not ok:
                reasons.append(f"{part.metric_id}: {reason}")
        return (not reasons), "; ".join(reasons)

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        ok, reason = self.available()
        if not ok:
            return MetricResult.unavailable(reason)
        ip, vgg = (part.compute(images, references, ctx) for part in self._parts())
        for part, res in (("ip", ip), ("vgg", vgg)):
            if res.status != "ok":
                return MetricResult.unavailable(f"{part} part: {res.status}")
        w = self.p.ip_weight
        extra = {"ims_ip": ip.value, "ims_vgg": vgg.value, "ip_weight": w, "definition": self.p.definition}
        per = [
            (w * a + (1.0 - w) * b) if (a is not None and b is not None) else None
            for a, b in zip(ip.per_image, vgg.per_image)
        ]
        if ip.value is None or vgg.value is None:
            extra["undefined"] = "no face detected in any generated image by one of the encoders"
            return MetricResult(value=None, per_image=per, extra=extra)
        return MetricResult(value=float(w * ip.value + (1.0 - w) * vgg.value), per_image=per, extra=extra)
