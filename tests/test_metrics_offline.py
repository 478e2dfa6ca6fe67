"""Offline metric plugins on the real shared portraits (two identities, 512x512).

Models load once (module-scoped fixtures; face_offline also memoises per image), so
the file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFilter

from bench.images import load_image
from bench.plugin import MetricResult
from metrics import face_offline
from metrics.brisque import BRISQUE
from metrics.fidelity import PSNR, SSIM, LInf
from metrics.identity import AISM, FDFR, ISM

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def _load(folder: Path, pattern: str) -> list[np.ndarray]:
    files = sorted(folder.glob(pattern))
    assert files, f"no {pattern} images in {folder}"
    return [load_image(p) for p in files]


@pytest.fixture(scope="module")
def faces() -> dict[str, list[np.ndarray]]:
    # Must fail (not skip) without the shared data: these tests are the metrics' evidence.
    assert FACES.is_dir(), f"shared test faces missing: {FACES}"
    n50 = FACES / "n000050"
    return {
        "A": _load(n50 / "set_A", "*.png"),
        "B": _load(n50 / "set_B", "*.png"),
        "C": _load(n50 / "set_C", "*.png"),
        "rid": _load(FACES / "rid_103", "*.jpg"),
    }


@pytest.fixture(scope="module")
def backend() -> None:
    ok, reason = face_offline.available()
    assert ok, reason
    face_offline.load()


def noise(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


# ----------------------------------------------------------- face backend
def test_backend_detects_every_portrait(faces, backend):
    allimgs = faces["A"] + faces["B"] + faces["C"] + faces["rid"]
    res = face_offline.detect_and_embed(allimgs)
    assert len(res) == len(allimgs) == 24
    for r in res:
        assert r is not None
        assert r.embedding.shape == (128,)
        assert abs(np.linalg.norm(r.embedding) - 1.0) < 1e-6
        assert r.landmarks.shape == (5, 2) and r.box.shape == (4,) and r.prob > 0.9
        x1, y1, x2, y2 = r.box
        assert x2 - x1 > 100 and y2 - y1 > 100  # portraits: a large face


def test_backend_no_face_in_noise_small_or_grey_inputs(backend, faces):
    tiny = np.asarray(PILImage.fromarray(faces["A"][0]).resize((16, 16)))
    grey = faces["A"][0].mean(axis=2).astype(np.uint8)  # (H, W) grey must not crash
    res = face_offline.detect_and_embed([noise(64), noise(256), tiny, grey])
    assert res[:3] == [None, None, None]
    assert res[3] is not None


def test_backend_available_reports_reason(monkeypatch):
    real = face_offline.importlib.util.find_spec
    monkeypatch.setattr(
        face_offline.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "facenet_pytorch" else real(name, *a),
    )
    ok, reason = face_offline._check()
    assert not ok and reason == "facenet-pytorch not installed"


# ----------------------------------------------------------- identity metrics
def test_metric_ids_and_directions():
    assert ISM().metric_id == "ism[dlib]"
    assert FDFR().metric_id == "fdfr[dlib]"
    assert AISM().metric_id == "aism[dlib]"
    assert (FDFR.higher_is_better, ISM.higher_is_better, AISM.higher_is_better) == (False, True, True)
    assert ISM().p.definition == "antidb"
    assert ISM().available() == (True, "")


def test_ism_same_identity_beats_cross_identity(faces, backend):
    refs = faces["A"] + faces["C"]
    for definition in ("antidb", "rid"):
        m = ISM({"definition": definition})
        same = m.compute(faces["B"], refs, None)
        cross = m.compute(faces["rid"], refs, None)
        assert same.status == cross.status == "ok"
        assert same.extra["n_reference_faces"] == 8
        assert same.extra["n_faces"] == 4 and cross.extra["n_faces"] == 12
        # measured with dlib: same ~0.95, cross ~0.77
        assert same.value - cross.value > 0.1, (definition, same.value, cross.value)
        assert all(v is not None for v in same.per_image)


def test_ism_definitions_in_range_and_differ(faces, backend):
    refs = faces["A"] + faces["C"]
    gen = faces["rid"][:6] + faces["B"][:2]
    antidb = ISM({"definition": "antidb"}).compute(gen, refs, None).value
    rid = ISM({"definition": "rid"}).compute(gen, refs, None).value
    for v in (antidb, rid):
        assert -1.0 <= v <= 1.0
    # cos of the mean embedding >= mean of cosines (the mean of unit vectors is shorter)
    assert rid - antidb > 1e-4


def test_fdfr_noise_and_portraits(faces, backend):
    fdfr = FDFR()
    r = fdfr.compute([noise(64, 1), noise(256, 2), noise(64, 3), noise(256, 4)], [], None)
    assert r.value == 1.0 and r.per_image == [1.0] * 4
    r = fdfr.compute(faces["B"] + faces["rid"][:4], [], None)
    assert r.value == 0.0 and r.extra["n_faces"] == 8


def test_aism_is_ism_times_detection_rate(faces, backend):
    refs = faces["A"] + faces["C"]
    mixed = [faces["B"][0], noise(256, 5), faces["rid"][0], noise(64, 6)]
    fdfr = FDFR().compute(mixed, refs, None).value
    assert fdfr == 0.5
    for definition in ("antidb", "rid"):
        ism = ISM({"definition": definition}).compute(mixed, refs, None)
        aism = AISM({"definition": definition}).compute(mixed, refs, None)
        assert ism.per_image[1] is None and ism.per_image[3] is None
        assert ism.extra["n_faces"] == 2
        assert aism.value == pytest.approx(ism.value * (1.0 - fdfr), abs=1e-12)
    # no face at all: ISM undefined, aISM = 0 (detection rate 0)
    allnoise = [noise(64, 7), noise(256, 8)]
    assert ISM().compute(allnoise, refs, None).value is None
    assert AISM().compute(allnoise, refs, None).value == 0.0


def test_identity_unavailable_instead_of_numbers(faces, backend, monkeypatch):
    r = ISM().compute(faces["B"], [noise(256, 9), noise(64, 10)], None)
    assert r.value is None and r.status == "unavailable: no face detected in the reference images"
    assert AISM().compute(faces["B"], [noise(256, 9)], None).status.startswith("unavailable")
    monkeypatch.setattr(face_offline, "available", lambda: (False, "facenet-pytorch not installed"))
    for cls in (FDFR, ISM, AISM):
        m = cls()
        assert m.available() == (False, "facenet-pytorch not installed")
        r = m.compute(faces["B"], faces["A"], None)
        assert r.value is None and r.status == "unavailable: facenet-pytorch not installed"


# ----------------------------------------------------------- BRISQUE
def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(PILImage.open(buf).convert("RGB"))


def test_brisque_rises_under_degradations(faces):
    m = BRISQUE()
    assert m.metric_id == "brisque[libsvm]" and m.higher_is_better is False and m.available()[0]
    clean = [faces["A"][0], faces["B"][1], faces["rid"][2]]
    rng = np.random.default_rng(0)
    variants = {
        "jpeg10": [_jpeg(x, 10) for x in clean],
        "noise": [np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8) for x in clean],
        "blur": [np.asarray(PILImage.fromarray(x).filter(ImageFilter.GaussianBlur(3))) for x in clean],
    }
    base = m.compute(clean, [], None)
    assert base.status == "ok" and all(math.isfinite(v) for v in base.per_image)
    for name, imgs in variants.items():
        r = m.compute(imgs, [], None)
        assert all(v is not None and math.isfinite(v) for v in r.per_image), name
        assert r.value > base.value + 10, (name, base.value, r.value)


def test_brisque_odd_inputs_do_not_crash(faces):
    m = BRISQUE()
    x = faces["A"][1]
    grey = x.mean(axis=2).astype(np.uint8)
    odd = x[:101, :57]
    flat = np.full((64, 64, 3), 128, np.uint8)
    tiny = x[:5, :3]
    r = m.compute([grey, odd, flat, tiny], [], None)
    assert r.status == "ok"
    assert math.isfinite(r.per_image[0]) and math.isfinite(r.per_image[1])
    assert r.per_image[2] is None and r.per_image[3] is None  # no statistics: undefined, not a number
    assert m.compute([flat], [], None).status.startswith("unavailable")


# ----------------------------------------------------------- fidelity
def test_fidelity_known_values(faces):
    img = np.clip(faces["A"][0], 0, 250).astype(np.uint8)
    shifted = img.copy()
    shifted[:128] += 3  # a quarter of the rows, +3 levels: MSE = 9/4
    expected_psnr = 10 * math.log10(255.0**2 / 2.25)

    same = PSNR().compute([img], [img], None)
    assert same.value == math.inf
    r = PSNR().compute([shifted, shifted], [img, img], None)
    assert r.value == pytest.approx(expected_psnr, abs=1e-9) and r.per_image == [r.value] * 2
    assert PSNR.higher_is_better and PSNR.target == "protection"

    s = SSIM().compute([img, shifted], [img, img], None)
    assert s.per_image[0] == pytest.approx(1.0) and 0.9 < s.per_image[1] < 1.0
    assert s.value == pytest.approx(np.mean(s.per_image))

    li = LInf().compute([img, shifted], [img, img], None)
    assert li.per_image == [0.0, 3.0] and li.value == 3.0
    assert isinstance(li, MetricResult) and LInf().metric_id == "linf"
