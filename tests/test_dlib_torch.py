"""The torch port of dlib's face ResNet must reproduce dlib's own descriptors.

Real faces: n000050/set_B (one identity) and rid_103 (another). dlib-bin is the
reference (face_recognition_model_v1.compute_face_descriptor on dlib's chip).
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import BenchError
from metrics import dlib_torch
from metrics.face_offline import _load_dlib

torch.set_num_threads(1)


def _cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def aligned(faces: Path):
    """{name: (image, M, dlib chip, dlib descriptor)} for 3 + 3 real faces."""
    _, rec = _load_dlib()
    files = sorted((faces / "n000050" / "set_B").glob("*"))[:3] + sorted((faces / "rid_103").glob("*"))[:3]
    out = {}
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"))
        res = dlib_torch.align_matrix(img)
        assert res is not None, f"no face found in {f}"
        m, chip = res
        assert chip.shape == (150, 150, 3) and m.shape == (2, 3)
        out[f"{f.parent.name}/{f.name}"] = (img, m, chip, np.asarray(rec.compute_face_descriptor(chip), dtype=np.float64))
    return out


def test_descriptor_matches_dlib_on_its_own_chips(aligned):
    chips = np.stack([v[2] for v in aligned.values()])
    ref = np.stack([v[3] for v in aligned.values()])
    got = dlib_torch.descriptor(chips).double().numpy()
    assert got.shape == (len(aligned), 128)
    diff = np.abs(got - ref).max()
    cos = min(_cos(a, b) for a, b in zip(got, ref))
    print(f"max abs diff {diff:.2e}, min cosine {cos:.10f}")
    assert diff < 1e-4, diff  # measured ~3e-7 (float32 rounding)
    assert cos > 0.99999


def test_same_identity_closer_than_cross_identity(aligned):
    keys = list(aligned)
    desc = dlib_torch.descriptor(np.stack([aligned[k][2] for k in keys])).double().numpy()
    ident = [k.split("/")[0] for k in keys]
    same, cross = [], []
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            dist = float(np.linalg.norm(desc[i] - desc[j]))
            (same if ident[i] == ident[j] else cross).append(dist)
    # every same-identity pair beats every cross pair; dlib's 0.6 threshold separates them
    assert max(same) < min(cross), (same, cross)
    assert max(same) < 0.6 < min(cross)


def test_gradients_reach_image_through_differentiable_alignment(aligned):
    model = dlib_torch.load()
    img, m, chip, ref = next(iter(aligned.values()))
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None].requires_grad_(True)
    warped = dlib_torch.warp_affine(x, m, (150, 150))
    # the torch warp reproduces dlib's chip geometry (pyramid + bilinear vs antialiased resize + bilinear)
    assert float((warped[0].permute(1, 2, 0).detach().numpy() - chip).__abs__().mean()) < 4.0
    desc = model(warped)[0]
    assert _cos(desc.detach().double().numpy(), ref) > 0.999
    loss = torch.nn.functional.cosine_similarity(desc, torch.from_numpy(ref).float(), dim=0)
    loss.backward()
    g = x.grad[0].abs().sum(0)
    assert torch.isfinite(x.grad).all() and float(g.sum()) > 0
    # the gradient lives on the face region only: map chip corners back to the image
    inv = dlib_torch.invert_affine(m)
    corners = np.array([[0, 0, 1], [149, 0, 1], [0, 149, 1], [149, 149, 1]], dtype=np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    inside = float(g[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1].sum())
    assert inside == pytest.approx(float(g.sum()), rel=1e-6)
    # a chip-space perturbation maps back into the image with the inverse transform
    delta = torch.zeros(1, 3, 150, 150)
    delta[..., 60:90, 60:90] = 1.0
    back = dlib_torch.warp_affine(delta, inv, tuple(img.shape[:2]), antialias=False)
    cx, cy = (np.array([75.0, 75.0, 1.0]) @ inv.T).round().astype(int)
    assert float(back[0, 0, cy, cx]) == pytest.approx(1.0, abs=1e-4)
    assert float(back[0, 0, 0, 0]) == 0.0


def test_loads_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(dlib_torch, "_CACHE", {})
    model = dlib_torch.load()
    assert model is dlib_torch.load()  # cached
    assert sum(p.numel() for p in model.parameters()) == 5_607_488  # 29 convs + fc 256x128


def test_missing_or_corrupt_file_is_unavailable(monkeypatch, tmp_path):
    real = dlib_torch.model_path()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(real.read_bytes()[:100_000])
    monkeypatch.setattr(dlib_torch, "_CACHE", {})
    monkeypatch.setattr(dlib_torch, "model_path", lambda: tmp_path / "absent.dat")
    with pytest.raises(BenchError, match="unavailable: model file missing"):
        dlib_torch.load()
    monkeypatch.setattr(dlib_torch, "model_path", lambda: truncated)
    with pytest.raises(BenchError, match="unavailable: cannot parse .*end of file"):
        dlib_torch.load()
