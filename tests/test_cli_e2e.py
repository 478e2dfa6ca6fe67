"""The README's main job, as a user runs it: one real cell on the tiny profile,
then a rerun from the cache, a killed run that resumes, and bad inputs."""

import json
import time

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

# The README's first command with a shorter attack (the tiny default, 300 steps, is timed in
# benchmarks/face_world.py); its baseline and noise companions run as they do for a user.
CELL = ["run", "--defense", "advdm", "--attack", "db", "--purifier", "jpeg", "-q", "--set", "attack.steps=20",
        "--set", "generation.images_per_prompt=2"]


@pytest.fixture(scope="module")
def e2e_home(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


def _faces_args(faces):
    return ["--dataset", "anti-db", "--data-root", str(faces), "--identity", "n000050"]


def test_cell_runs_end_to_end_then_comes_from_cache(faces, e2e_home):
    first = run_cli(*CELL, *_faces_args(faces), "--home", str(e2e_home))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "metrics" in first.stdout and "ism[dlib]" in first.stdout and "measured L-inf" in first.stdout
    records = list((e2e_home / "results" / "records").glob("*.json"))
    assert len(records) == 3  # the cell, its no-defense baseline and its equal-budget noise control
    rec = next(r for r in map(json.loads, (p.read_text() for p in records)) if r["protocol"]["defense"]["name"] == "advdm")
    assert set(rec["compare"]) >= {"baseline", "noise"} and "protection" in rec["compare"]
    assert "protection" in first.stdout  # baseline and defense side by side
    d = rec["stages"]["defense"]
    assert d["measured_linf"] <= d["budget"] == 16.0 and d["seconds_per_image"] > 0
    assert d["ciede2000"] > 0 and 0 < d["changed_fraction"] <= 1 and d["peak_rss_mib"] >= d["rss_start_mib"] > 0
    assert d["lpips"] is None and "LPIPS weights not present offline" in d["lpips_unavailable"]  # never another network
    assert rec["links"]["defense:advdm"]["paper"].startswith("https://arxiv.org/")
    assert set(rec["metrics"]) == {"fdfr[dlib]", "ism[dlib]", "aism[dlib]", "idr[dlib]", "brisque[libsvm]"}
    assert rec["protocol"]["attack"]["name"] == "dreambooth" and rec["protocol"]["defense"]["params"]["eps"] == 16.0
    assert rec["stages"]["purifier"][0]["vs_clean"]["psnr"] > 20

    started = time.time()
    second = run_cli(*CELL, *_faces_args(faces), "--home", str(e2e_home))
    elapsed = time.time() - started
    assert second.returncode == 0, second.stderr[-3000:]
    assert "every stage came from the cache" in second.stdout
    assert "computed" not in second.stdout.replace("every stage", "")
    assert elapsed < 30, elapsed  # a few seconds of imports, no model work

    shown = run_cli("show", "--home", str(e2e_home), "--csv", str(e2e_home / "out.csv"))
    assert shown.returncode == 0 and "advdm" in shown.stdout
    assert "ism[dlib]" in (e2e_home / "out.csv").read_text()


def test_bad_images_are_one_line_exit_2(tmp_path):
    root = tmp_path / "faces"
    (root / "empty").mkdir(parents=True)
    res = run_cli("run", "--dataset", "celebahq-flat", "--data-root", str(root), "--identity", "empty", "--home", str(tmp_path / "h"))
    assert res.returncode == 2 and "no images found" in res.stderr and "Traceback" not in res.stderr
    broken = root / "broken"
    broken.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(broken / f"{i}.png")
    (broken / "3.png").write_bytes(b"\x89PNG truncated")
    res = run_cli("run", "--dataset", "celebahq-flat", "--data-root", str(root), "--identity", "broken", "--home", str(tmp_path / "h"))
    assert res.returncode == 2 and "unreadable image" in res.stderr and "3.png" in res.stderr
    assert "Traceback" not in res.stderr


def test_odd_mode_images_run_through_the_data_stage(tmp_path):
    """CMYK, 16-bit, RGBA and EXIF-rotated inputs are converted, not rejected."""
    root = tmp_path / "faces" / "odd"
    root.mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(root / "a.jpg")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "b.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "c.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(root / "d.jpg", exif=exif.tobytes())
    Image.fromarray(rgb).save(root / "e.png")
    Image.fromarray(rgb).save(root / "f.png")
    res = run_cli("run", "--dataset", "celebahq-flat", "--data-root", str(tmp_path / "faces"), "--identity", "odd",
                  "--set", "attack.steps=1", "--set", "attack.num_class_images=1", "--set", "generation.images_per_prompt=1",
                  "--set", "generation.steps=2", "--set", "metrics=[]", "-q", "--home", str(tmp_path / "h"))
    assert res.returncode == 0, res.stderr[-2000:]
