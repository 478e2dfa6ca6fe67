"""Bring your own protected images (`-d files`): matched to the clean images by name, the
budget measured at the files' own resolution before any resizing, the declared budget
checked, hashes and source recorded; every bad set is a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import reliability_corpus as corpus
from bench.cli import run_cli
from bench.errors import BenchError
from bench.registry import Registry
from defenses.files import match_files

IDENT = "g111420"


def _protect(clean_dir: Path, out: Path, eps: int, prefix: str = "noisy_") -> None:
    """What an external tool would do: +-eps sign noise at the images' own 112 px resolution."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for f in sorted(clean_dir.glob("*.png")):
        x = np.asarray(Image.open(f).convert("RGB")).astype(int)
        delta = rng.choice([-eps, eps], size=x.shape)
        Image.fromarray(np.clip(x + delta, 0, 255).astype(np.uint8)).save(out / f"{prefix}{f.name}")


def _run(argv, home, capsys):
    capsys.readouterr()
    code = run_cli([*argv, "--home", str(home)])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def setup(tmp_path, glint):
    root = tmp_path / "data"
    corpus._identity(glint / IDENT, root / IDENT)
    prot = tmp_path / "protected"
    _protect(root / IDENT / "set_B", prot / IDENT, 6)
    argv = ["run", "--dataset", "anti-db", "--data-root", str(root), "-d", "files", "-a", "none",
            "--set", f"defense.dir={prot}", "--set", "defense.source=a test tool, sign noise", *corpus.SMALL]
    return root, prot, argv


def test_an_external_set_is_measured_at_its_own_resolution_and_recorded(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    _, prot, argv = setup
    home = tmp_path / "home"
    code, text = _run([*argv, "--set", "defense.eps=6"], home, capsys)
    assert code == 0, text
    assert "measured L-inf 6/255 at the files' own resolution" in text
    (rec,) = [json.loads(p.read_text()) for p in (home / "results" / "records").glob("*.json")]
    d = rec["stages"]["defense"]
    notes = d["notes"]
    assert notes["measured_linf_native"] == 6 and notes["source"] == "a test tool, sign noise"
    files = sorted((prot / IDENT).glob("*.png"))
    import hashlib
    assert {v["file"]: v["sha256"] for v in notes["files"].values()} == {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert d["budget"] == 6.0 and d["measured_linf"] <= 6  # the 64 px images stay inside the declared budget
    assert len(rec["protocol"]["defense"]["params"]["content_sha256"]) == 64  # the files' content is part of the cell


def test_bad_sets_are_one_line_errors(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    _, prot, argv = setup
    home = tmp_path / "home"
    folder = prot / IDENT
    cases = []
    cases.append(([], r"measure L-inf 6/255 .* declare the budget .*--set defense\.eps=6"))  # no declared budget
    cases.append((["--set", "defense.eps=4"], r"exceed the declared budget: measured L-inf 6/255 at their own resolution > declared 4/255"))
    for extra, expect in cases:
        code, text = _run([*argv, *extra], home, capsys)
        assert code == 2 and "Traceback" not in text and __import__("re").search(expect, text), text
    ok = [*argv, "--set", "defense.eps=6"]
    first = sorted(folder.glob("*.png"))[0]
    shutil.copy(first, folder / "unrelated_photo.png")  # an extra file
    code, text = _run(ok, home, capsys)
    assert code == 2 and "match no clean training image: unrelated_photo.png" in text, text
    (folder / "unrelated_photo.png").unlink()
    Image.open(first).resize((100, 100)).save(first)  # a differently sized file
    code, text = _run(ok, home, capsys)
    assert code == 2 and "is 100x100 px, its clean image" in text, text
    first.write_bytes(b"not an image")  # an unreadable one
    code, text = _run(ok, home, capsys)
    assert code == 2 and "unreadable image" in text, text
    first.unlink()  # a missing one
    code, text = _run(ok, home, capsys)
    assert code == 2 and "no protected file for clean image" in text, text
    code, text = _run([*argv[:argv.index("--set")], "--set", f"defense.dir={tmp_path / 'nowhere'}", "--set", "defense.eps=6"], home, capsys)
    assert code == 2 and "no such folder" in text


def test_names_match_by_stem_with_a_prefix_or_suffix_and_content_changes_the_cell(tmp_path):
    names = ["10004.png", "10005.png"]
    paths = [tmp_path / n for n in ("noisy_10004.png", "10005_adv.jpg")]
    assert match_files(names, paths) == {"10004.png": paths[0], "10005.png": paths[1]}
    with pytest.raises(BenchError, match="2 files match clean image '10004.png'"):
        match_files(names, [paths[0], tmp_path / "x_10004.png", paths[1]])
    with pytest.raises(BenchError, match="no protected file for clean image '10005.png'"):
        match_files(names, [paths[0], tmp_path / "110005.png"])
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    before = Registry().create("defense", "files", {"dir": str(folder), "eps": 4}, "tiny").p["content_sha256"]
    Image.fromarray(np.ones((8, 8, 3), np.uint8)).save(folder / "a.png")
    after = Registry().create("defense", "files", {"dir": str(folder), "eps": 4}, "tiny").p["content_sha256"]
    assert before != after  # a changed file is a different defense, never a stale cache hit
    with pytest.raises(BenchError, match="changed since this cell was planned"):
        Registry().create("defense", "files", {"dir": str(folder), "eps": 4, "content_sha256": before}, "tiny")
