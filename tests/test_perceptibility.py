"""Perceptibility and cost of the defense stage: what the leaderboard's columns rest on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import perceptibility as P
from bench.peak_memory import PeakMemory


def _pair(change: int, pixels: int):
    rng = np.random.default_rng(0)
    clean = rng.integers(30, 220, size=(32, 32, 3)).astype(np.uint8)
    prot = clean.copy()
    idx = rng.choice(32 * 32, size=pixels, replace=False)
    prot.reshape(-1, 3)[idx, 0] += change
    return clean, prot


def test_measures_grow_with_the_perturbation_and_count_changed_pixels():
    clean, small = _pair(2, 64)
    _, large = _pair(12, 512)
    same = P.pair_measures([clean], [clean])
    a, b = P.pair_measures([small], [clean]), P.pair_measures([large], [clean])
    assert same["psnr"] is None and same["ciede2000"] == 0 and same["changed_fraction"] == 0 and same["measured_linf"] == 0
    assert a["changed_fraction"] == pytest.approx(64 / 1024) and b["changed_fraction"] == pytest.approx(512 / 1024)
    assert (a["measured_linf"], b["measured_linf"]) == (2, 12)
    assert 0 < a["ciede2000"] < b["ciede2000"] and a["psnr"] > b["psnr"] and a["ssim"] > b["ssim"]
    assert "lpips" not in a  # only where asked (the defense stage)


def test_lpips_without_its_weights_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache, as offline
    clean, prot = _pair(4, 100)
    m = P.pair_measures([prot], [clean], with_lpips=True)
    assert m["lpips"] is None and all(f in m["lpips_unavailable"] for f in P.LPIPS_FILES)
    assert "lpips" not in m["per_image"][0]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / P.LPIPS_FILES[0]).write_bytes(b"")
    _, reason = P.lpips_weights()
    assert P.LPIPS_FILES[1] in reason and P.LPIPS_FILES[0] not in reason  # names exactly what is missing


def test_peak_memory_sees_an_allocation_inside_the_stage_only():
    with PeakMemory() as outside:
        pass
    with PeakMemory() as inside:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        block += 1
        del block
    grew = inside.record()["peak_rss_mib"] - inside.record()["rss_start_mib"]
    assert grew > 150, inside.record()
    assert outside.record()["peak_rss_mib"] - outside.record()["rss_start_mib"] < 50
