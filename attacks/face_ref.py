"""Reference-face encoding and adapter files shared by the zero-shot attacks
(IP-Adapter FaceID, InstantID). Their personalize() step is only this: detect the
largest face of every reference image, embed it, and write the result to files, so the
encoded face is an artifact that generate() (and the record) can read back.

Encoders (never substituted for one another; a missing one is a BenchError naming
what to install or which folder to fill):
- "insightface-buffalo_l" / "insightface-antelopev2": insightface FaceAnalysis (SCRFD
  detector + ArcFace), the packs IP-Adapter FaceID (buffalo_l) and InstantID
  (antelopev2) use; files under <face_weights_dir or ~/.insightface/models>/<pack>/.
- "dlib": the offline backend (metrics/face_offline.py): MTCNN boxes and 5 landmarks,
  dlib ResNet 128-d unit-norm descriptor. The tiny profile's encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchError

ENCODERS = ("dlib", "insightface-buffalo_l", "insightface-antelopev2")
DESCRIBE = {
    "dlib": "MTCNN (facenet-pytorch, 5 landmarks) + dlib ResNet 128-d descriptor (metrics/face_offline.py)",
    "insightface-buffalo_l": "insightface buffalo_l: SCRFD-10GF detector (5 keypoints) + ArcFace R50 512-d",
    "insightface-antelopev2": "insightface antelopev2: SCRFD-10GF detector (5 keypoints) + ArcFace R100 (glintr100) 512-d",
}
EMBEDDINGS_FILE = "face_embeddings.npy"  # (n_detected, d): one row per reference image with a face
REFERENCE_FILE = "face_embedding.npy"  # (d,): what generation conditions on
META_FILE = "face.json"


@dataclass
class Face:
    raw: np.ndarray  # the encoder's embedding as it comes out (insightface `embedding`)
    unit: np.ndarray  # L2-normalised (insightface `normed_embedding`)
    kps: np.ndarray  # (5, 2) eyes, nose, mouth corners, image-left first, in pixels
    box: np.ndarray  # (4,) x1, y1, x2, y2

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def detect(images: list[np.ndarray], encoder: str, weights_dir: str, who: str) -> list[Face | None]:
    """Largest face of each image (or None), with the encoder's raw and unit embedding."""
    if encoder == "dlib":
        from metrics import face_offline

        ok, reason = face_offline.available()
        if not ok:
            raise BenchError(f"{who}: face encoder 'dlib' unavailable: {reason}")
        out: list[Face | None] = []
        for r in face_offline.detect_and_embed(list(images)):
            out.append(None if r is None else Face(r.embedding.copy(), _unit(r.embedding), np.asarray(r.landmarks, float), r.box))
        return out
    if encoder not in ENCODERS:
        raise BenchError(f"{who}: unknown face encoder {encoder!r}; choose one of {list(ENCODERS)}")
    from metrics import face_backends

    backend = face_backends.get_backend(encoder, weights_dir)
    ok, reason = backend.available()
    if not ok:
        raise BenchError(f"{who}: face encoder {encoder!r} unavailable: {reason}")
    app = backend._load()  # FaceAnalysis on the checked local pack (no download); det_size 640
    out = []
    for img in images:
        faces = app.get(np.ascontiguousarray(np.asarray(img)[..., ::-1]))  # insightface expects BGR
        if not faces:
            out.append(None)
            continue
        f = max(faces, key=lambda x: float((x.bbox[2] - x.bbox[0]) * (x.bbox[3] - x.bbox[1])))  # the READMEs' "largest face"
        raw = np.asarray(f.embedding, np.float64)
        out.append(Face(raw, _unit(raw), np.asarray(f.kps, float), np.asarray(f.bbox, float)))
    return out


def encode_reference(images: list[np.ndarray], encoder: str, weights_dir: str, who: str, out_dir: Path,
                     mode: str) -> dict:
    """Detect + embed every reference image and write the reference embedding.

    mode "unit-mean": mean of the unit embeddings, re-normalised (IP-Adapter FaceID was
    trained on `normed_embedding`); mode "raw-mean": mean of the raw embeddings (InstantID
    feeds insightface's un-normalised `embedding`). Keypoints come from the image with the
    largest detected face (InstantID draws one image's keypoints)."""
    faces = detect(images, encoder, weights_dir, who)
    found = [i for i, f in enumerate(faces) if f is not None]
    if not found:
        raise BenchError(f"{who}: no face detected in any of the {len(images)} reference images "
                         f"(encoder {encoder!r}); a zero-shot attack needs at least one visible face")
    rows = np.stack([faces[i].unit if mode == "unit-mean" else faces[i].raw for i in found]).astype(np.float32)
    ref = rows.mean(axis=0)
    if mode == "unit-mean":
        ref = _unit(ref)
    best = max(found, key=lambda i: faces[i].area)
    h, w = np.asarray(images[best]).shape[:2]
    meta = {
        "encoder": encoder,
        "detector_encoder": DESCRIBE[encoder],
        "reference": mode,
        "dim": int(ref.shape[0]),
        "images": len(images),
        "detected": [f is not None for f in faces],
        "kps": faces[best].kps.tolist(),
        "kps_image": best,
        "kps_image_size": [int(h), int(w)],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / EMBEDDINGS_FILE, rows)
    np.save(out_dir / REFERENCE_FILE, ref.astype(np.float32))
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


def load_reference(personalized: Path, who: str) -> tuple[np.ndarray, dict]:
    try:
        emb = np.load(personalized / REFERENCE_FILE)
        meta = json.loads((personalized / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{who}: no encoded reference face in {personalized} ({exc.__class__.__name__}); rerun personalize") from None
    return emb.astype(np.float32), meta


# ------------------------------------------------------------------ weight files
def weights_folder(source: str, zoo_root: Path, who: str, what: str, allow: list[str]) -> Path:
    """A local folder holding `what`: "zoo:<name>" (built once), a local path, or a hub id
    (hub cache only when offline). A missing file is a BenchError naming the parameter."""
    if source.startswith("zoo:"):
        from bench import zoo

        return zoo.ensure(source[4:], zoo_root)
    p = Path(source).expanduser()
    if p.exists():
        return p if p.is_dir() else p.parent
    try:
        from huggingface_hub import snapshot_download

        from bench.models import offline

        return Path(snapshot_download(source, allow_patterns=allow, local_files_only=offline()))
    except Exception as exc:  # noqa: BLE001 - offline cache miss, network refused, repo gone
        raise BenchError(f"{who}: {what} {source!r} not available ({exc.__class__.__name__}); download it on a "
                         f"connected machine and pass the local folder instead") from None


def revision(source: str) -> str | None:
    """The zoo revision of a "zoo:<name>" source (recorded beside it), else None."""
    from bench import zoo

    name = source[4:] if source.startswith("zoo:") else None
    return zoo.zoo_revision(name) if zoo.known(name) else None


def check_file(folder: Path, name: str, who: str, param: str) -> None:
    if not (folder / name).is_file():
        raise BenchError(f"{who}: {folder / name} missing; pass --set attack.{param}=<folder holding it>")
