"""FID, extra identity / quality backends, and statistics (issue 8).

Offline here: every backend whose weights are not on disk must say "unavailable: ..."
with value None (and must not download). The offline FID backend and the statistics
are checked against known answers; BRISQUE against degradations.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from PIL import Image as PILImage
from PIL import ImageFilter
from scipy import stats as sps

from bench.images import load_image
from bench.models import resolve
from metrics import brisque as brisque_mod
from bench import stats
from metrics import face_backends
from metrics.brisque import BRISQUE
from metrics.clip_iqac import CLIPIQAC
from metrics.fid import FID, fid_from_features, frechet_distance, gaussian_stats, pooled_fid
from metrics.identity import FDFR, IMS, ISM
from metrics.liqe import LIQE, renormalize_pm1


def _load(folder: Path, pattern: str) -> list[np.ndarray]:
    """The portraits at 256 px: faces stay > 100 px, detection costs a quarter of 512 px."""
    files = sorted(folder.glob(pattern))
    assert files, f"no {pattern} in {folder}"
    return [np.asarray(PILImage.fromarray(load_image(p)).resize((256, 256), PILImage.BICUBIC)) for p in files]


@pytest.fixture(scope="module")
def imgs(faces) -> dict[str, list[np.ndarray]]:
    n50 = faces / "n000050"
    return {
        "A": _load(n50 / "set_A", "*.png"),
        "B": _load(n50 / "set_B", "*.png"),
        "C": _load(n50 / "set_C", "*.png"),
        "rid": _load(faces / "rid_103", "*.jpg"),
    }


def noise(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------ Frechet distance
def test_frechet_distance_matches_scipy_and_handles_singular_covariances():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) * 0.5 + 1.0
    (m1, s1), (m2, s2) = gaussian_stats(a), gaussian_stats(b)
    ref = float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)
    # 1-d closed form: (mu1-mu2)^2 + (sd1-sd2)^2
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9.0 + 1.0)
    # 5 samples in 128-d: rank-deficient covariances; finite, >= 0, and ~0 against itself
    few = rng.normal(size=(5, 128))
    assert math.isfinite(fid_from_features(few, few[::-1])) and fid_from_features(few, few) < 1e-8
    assert fid_from_features(few, few + 1.0) == pytest.approx(128.0, rel=1e-6)  # pure mean shift


# ------------------------------------------------------------------ FID plugin
def test_fid_dlib_face_same_identity_below_cross_identity(imgs):
    m = FID({"backend": "dlib-face"})
    assert m.metric_id == "fid[dlib-face]" and m.higher_is_better is False and m.available() == (True, "")
    refs = imgs["A"] + imgs["C"]
    same = m.compute(imgs["B"], refs, None)
    cross = m.compute(imgs["rid"], refs, None)
    assert same.status == cross.status == "ok"
    assert same.extra["n_generated"] == 4 and cross.extra["n_generated"] == 12 and same.extra["n_reference"] == 8
    assert same.value < cross.value * 0.5, (same.value, cross.value)
    assert "few samples" in same.extra["warning"]  # 4 and 8 images << 128-d features
    ident = m.compute(refs, refs, None)
    assert ident.value == pytest.approx(0.0, abs=1e-9)
    # faceless images are excluded and counted, not embedded
    mixed = m.compute(imgs["B"] + [noise(128, 1), noise(96, 2)], refs, None)
    assert mixed.extra["n_generated"] == 4 and mixed.extra["n_generated_excluded"] == 2
    assert mixed.value == pytest.approx(same.value, rel=1e-12)
    none = m.compute([noise(128, 3), noise(128, 4)], refs, None)
    assert none.value is None and none.status.startswith("unavailable: need >= 2 images")
    # ISM "pairwise" (MetaCloak IMS): mean_i mean_j cos(e_i, r_j), on the memoised faces
    from metrics import face_offline

    e = np.array([f.embedding for f in face_offline.detect_and_embed(imgs["B"])])
    r = np.array([f.embedding for f in face_offline.detect_and_embed(refs)])
    pw = ISM({"definition": "pairwise"}).compute(imgs["B"], refs, None)
    assert pw.value == pytest.approx(float((e @ r.T).mean()), abs=1e-9)
    assert pw.extra["encoder_family"] == "dlib-resnet"


def test_fid_pooled_mode_combines_cells(imgs):
    m = FID({"backend": "dlib-face", "pooling": "pooled"})
    c1 = m.compute(imgs["B"], imgs["A"], None)
    c2 = m.compute(imgs["rid"][:6], imgs["C"], None)
    assert c1.status == "ok" and c1.value is None and len(c1.extra["features_generated"]) == 4
    pooled = pooled_fid([c1, {"extra": c2.extra}])
    g = np.array(c1.extra["features_generated"] + c2.extra["features_generated"])
    r = np.array(c1.extra["features_reference"] + c2.extra["features_reference"])
    assert pooled.value == pytest.approx(fid_from_features(g, r), rel=1e-12)
    assert pooled.extra["n_generated"] == 10 and pooled.extra["n_cells"] == 2
    assert pooled_fid([FID({"backend": "dlib-face"}).compute(imgs["B"], imgs["A"], None)]).status.startswith(
        "unavailable"
    )


# ------------------------------------------------------------------ unavailable backends
def test_unavailable_backends_report_reasons_not_numbers(imgs, tmp_path):
    hub_ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    before = set(hub_ckpt.glob("*")) if hub_ckpt.is_dir() else set()
    gen, refs = imgs["B"][:2], imgs["A"][:2]
    cases = [
        (FID({"backend": "inception"}), "Inception-v3 FID weights not present"),
        (FID({"backend": "inception", "weights": str(tmp_path / "missing.pth")}), "not found"),
        (ISM({"backend": "insightface-antelopev2", "weights_dir": str(tmp_path)}), "model pack 'antelopev2' not found"),
        (FDFR({"backend": "insightface-buffalo_l", "weights_dir": str(tmp_path)}), "model pack 'buffalo_l' not found"),
        (ISM({"backend": "deepface-arcface", "weights_dir": str(tmp_path)}), "deepface weights missing"),
        (ISM({"backend": "deepface-vggface", "weights_dir": str(tmp_path)}), "vgg_face_weights"),
        (IMS({"insightface_dir": str(tmp_path), "deepface_home": str(tmp_path)}), "ism[insightface-antelopev2]"),
        (CLIPIQAC(), "not on disk"),
        (CLIPIQAC({"backend": str(tmp_path / "no-clip")}), "not on disk"),
        (LIQE(), ""),
        (BRISQUE({"backend": "piq", "weights": str(tmp_path / "x.pt")}), "not found"),
        (BRISQUE({"backend": "pyiqa", "weights": str(tmp_path / "x.pth")}), "not found"),
    ]
    for metric, words in cases:
        ok, reason = metric.available()
        assert not ok and words in reason, (metric.metric_id, reason)
        res = metric.compute(gen, refs, None)
        assert res.value is None and res.status == f"unavailable: {reason}", (metric.metric_id, res.status)
    assert CLIPIQAC().metric_id == "clip-iqac[openai/clip-vit-base-patch32]"
    assert IMS().metric_id == "ims" and ISM({"backend": "deepface-arcface"}).metric_id == "ism[deepface-arcface]"
    after = set(hub_ckpt.glob("*")) if hub_ckpt.is_dir() else set()
    assert after == before  # nothing was downloaded
    assert list(tmp_path.iterdir()) == []  # nor written where weights were looked for


def test_independent_encoder_and_deepface_glue(monkeypatch):
    assert face_backends.independent_backends("arcface") == ["dlib", "deepface-vggface"]
    be = face_backends.get_backend("deepface-arcface", "/nonexistent")
    faces = [
        {"embedding": [3.0, 4.0], "facial_area": {"x": 0, "y": 0, "w": 10, "h": 10}, "face_confidence": 0.9},
        {"embedding": [0.0, 2.0], "facial_area": {"x": 5, "y": 5, "w": 40, "h": 30}, "face_confidence": 0.99},
    ]

    def represent(rgb):
        if rgb[0, 0, 0] == 0:
            raise ValueError("Face could not be detected")
        return faces

    monkeypatch.setattr(be, "available", lambda: (True, ""))
    monkeypatch.setattr(be, "_represent", represent)
    out = be.detect_and_embed([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 9, np.uint8)])
    assert out[0] is None  # deepface's "no face" ValueError -> detection failure
    assert out[1].n_faces == 2 and np.allclose(out[1].embedding, [0.0, 1.0])  # largest face, unit norm
    assert np.allclose(out[1].box, [5, 5, 45, 35])


# ------------------------------------------------------------------ statistics
def _records(values: dict[str, list[float]], metric: str = "ism") -> pd.DataFrame:
    rows = [
        {"identity": f"id{i}", "defense": d, "metric": metric, "value": v}
        for d, vals in values.items()
        for i, v in enumerate(vals)
    ]
    return pd.DataFrame(rows)


def test_summary_mean_std_and_bootstrap_ci():
    df = _records({"none": [1.0, 2.0, 3.0, 4.0]})
    df = pd.concat([df, pd.DataFrame([{"identity": "id0", "defense": "none", "metric": "ism", "value": 3.0}])])
    df = pd.concat([df, pd.DataFrame([{"identity": "id9", "defense": "none", "metric": "ism", "value": None}])])
    per = stats.per_identity(df)
    assert per.loc[per.identity == "id0", "value"].item() == 2.0  # (1 + 3) / 2: identity is the unit
    s = stats.summarize(df, seed=0).iloc[0]
    assert s.n_identities == 4  # the None row is dropped
    assert s["mean"] == pytest.approx(2.75) and s["std"] == pytest.approx(np.std([2, 2, 3, 4], ddof=1))
    assert s.ci_low <= s["mean"] <= s.ci_high
    assert stats.summarize(df, seed=0).equals(stats.summarize(df, seed=0))  # seeded

    rng = np.random.default_rng(1)
    widths = []
    for n in (8, 200):
        x = rng.normal(5.0, 1.0, size=n)
        lo, hi = stats.bootstrap_ci(x, n_boot=4000, seed=3)
        assert lo < x.mean() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(n): sqrt(200/8) = 5
    assert stats.bootstrap_ci([7.0]) == (7.0, 7.0)


def test_wilcoxon_against_baseline_matches_scipy():
    base = [0.61, 0.55, 0.70, 0.48, 0.66, 0.59, 0.73, 0.52]
    other = [0.50, 0.57, 0.41, 0.45, 0.49, 0.47, 0.69, 0.40]
    df = _records({"none": base, "advdm": other})
    w = stats.wilcoxon_vs_baseline(df, baseline="none")
    row = w[w.defense == "advdm"].iloc[0]
    ref = sps.wilcoxon(other, base)
    assert row.p_value == pytest.approx(ref.pvalue) and row.statistic == pytest.approx(ref.statistic)
    assert row.n_pairs == 8 and row.median_diff < 0
    # a consistent shift over 12 identities: exact two-sided p = 2 / 2^12
    rng = np.random.default_rng(0)
    b = rng.normal(size=12)
    shifted = stats.wilcoxon_vs_baseline(_records({"none": list(b), "x": list(b + 0.3 + rng.uniform(0, 0.01, 12))}))
    assert shifted.p_value.item() == pytest.approx(2.0 / 2**12) and shifted.p_value.item() < 0.01
    same = stats.wilcoxon_vs_baseline(_records({"none": [1.0, 2.0], "x": [1.0, 2.0]}))
    assert math.isnan(same.p_value.item())  # all differences zero: undefined, not 1.0
    assert stats.wilcoxon_vs_baseline(_records({"x": [1.0, 2.0]})).empty  # no baseline: no rows


# ------------------------------------------------------------------ quality metrics
def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="JPEG", quality=q)
    return np.asarray(PILImage.open(buf).convert("RGB"))


def _libsvm_as_torch_svr(path: Path) -> None:
    """The brisque package's SVR in piq's file layout (sv_coef, sv): test-only, to run the
    piq / pyiqa code paths offline; never used for reported numbers."""
    from brisque.models import MODEL_PATH

    lines = (Path(MODEL_PATH) / "svm.txt").read_text().split("\n")
    coef, sv = [], []
    for ln in lines[lines.index("SV") + 1 :]:
        if ln.strip():
            parts = ln.split()
            coef.append(float(parts[0]))
            row = np.zeros(36)
            for kv in parts[1:]:
                k, v = kv.split(":")
                row[int(k) - 1] = float(v)
            sv.append(row)
    torch.save((torch.tensor(coef, dtype=torch.float64), torch.tensor(np.array(sv))), path)


def test_brisque_rises_under_degradations_for_every_backend(imgs, tmp_path):
    svr = tmp_path / "svr.pt"
    _libsvm_as_torch_svr(svr)
    clean = [imgs["A"][0], imgs["rid"][2]]
    rng = np.random.default_rng(0)
    variants = {
        "jpeg10": [_jpeg(x, 10) for x in clean],
        "noise": [np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8) for x in clean],
        "blur": [np.asarray(PILImage.fromarray(x).filter(ImageFilter.GaussianBlur(2))) for x in clean],
    }
    metrics = [BRISQUE({"backend": b}) for b in ("libsvm", "piq", "pyiqa")]
    metrics = [m for m in metrics if m.available()[0]]
    assert [m.metric_id for m in metrics][:1] == ["brisque[libsvm]"]  # the offline one always runs
    metrics += [BRISQUE({"backend": b, "weights": str(svr)}) for b in ("piq", "pyiqa")]
    for m in metrics:
        assert m.available() == (True, ""), m.metric_id
        base = m.compute(clean, [], None)
        assert base.status == "ok" and all(v is not None for v in base.per_image)
        for name, degraded in variants.items():
            r = m.compute(degraded, [], None)
            assert r.value > base.value + 10, (m.metric_id, name, base.value, r.value)
    assert BRISQUE({"backend": "piq", "resize": 64}).p.resize == 64
    assert brisque_mod.svr_weights("piq", str(svr)) == (svr, "")


def test_clip_iqac_runs_on_a_local_clip_and_liqe_rescale(tmp_path, shared_zoo):
    """Plumbing on a tiny random CLIP saved locally (the metric loads any local CLIPModel)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(resolve({"id": "zoo:tiny-sd"}, shared_zoo).path / "tokenizer")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
    )
    proc.save_pretrained(tmp_path / "clip")
    m = CLIPIQAC({"backend": str(tmp_path / "clip")})
    assert m.available() == (True, "")
    images = [noise(64, 1), noise(48, 2), np.full((40, 40, 3), 200, np.uint8)]
    r = m.compute(images, [], None)
    assert r.status == "ok" and len(r.per_image) == 3
    assert all(-1.0 <= v <= 1.0 for v in r.per_image) and r.value == pytest.approx(np.mean(r.per_image))
    assert renormalize_pm1(1.0) == -1.0 and renormalize_pm1(5.0) == 1.0 and renormalize_pm1(3.0) == 0.0


# ------------------------------------------------------------------ YuNet (a second detector)
def test_yunet_fdfr_finds_real_faces_and_none_in_noise(imgs, faces, tmp_path):
    """fdfr[yunet]: OpenCV's YuNet, a detector independent of MTCNN: every real portrait has
    a face (the 112 px faces_glint crops, whose face fills the frame, it misses half of: a
    property of the detector that FDFR then reports), noise and flat images have none; without its model
    file it is unavailable with the reason; it is a detector only, so ism[yunet] is refused."""
    from bench.errors import BenchError

    YUNET_DIR = faces.parents[1] / "models" / "yunet"  # ../shared/models/yunet (conftest checks it is there)
    fdfr = FDFR({"backend": "yunet", "weights_dir": str(YUNET_DIR)})
    assert fdfr.metric_id == "fdfr[yunet]" and fdfr.available() == (True, "")
    for portraits in (imgs["A"], imgs["B"], imgs["rid"]):
        r = fdfr.compute(portraits, [], None)
        assert r.status == "ok" and r.value == 0.0 and r.extra["n_faces"] == len(portraits)
    r = fdfr.compute([noise(256, 1), noise(256, 2), np.full((256, 256, 3), 128, np.uint8)], [], None)
    assert r.value == 1.0 and r.per_image == [1.0, 1.0, 1.0]
    missing = FDFR({"backend": "yunet", "weights_dir": str(tmp_path)}).compute(imgs["B"], [], None)
    assert missing.status.startswith("unavailable: YuNet model not present") and str(tmp_path) in missing.status
    with pytest.raises(BenchError, match="yunet"):
        ISM({"backend": "yunet"})
