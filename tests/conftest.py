"""Shared fixtures. The real identities in ../shared/data/faces are required:
a missing folder fails the run (it must never silently skip)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The README's test command runs the suite in two pytest-xdist workers (`-n 2`), one per core:
# each gets ONE torch/OpenMP thread, set before torch is imported (two threads per worker on
# two cores oversubscribe: measured 5x slower). Subprocesses inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["BENCH_THREADS"] = "1"

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("BENCH_TEST_FACES", REPO.parent / "shared" / "data" / "faces"))
GLINT = FACES.parent / "faces_glint"  # 16 more real identities, 112 px, Anti-DreamBooth layout


def pytest_sessionstart(session):
    if not (FACES / "n000050" / "set_B").is_dir() or not (FACES / "rid_103").is_dir():
        raise pytest.UsageError(f"shared test data missing: {FACES} (CI needs ../shared/data/faces beside the clone)")
    if len([d for d in GLINT.glob("g*") if (d / "set_B").is_dir()]) < 16:
        raise pytest.UsageError(f"shared test data missing: {GLINT} (16 identities expected)")
    if not list((FACES.parents[1] / "models" / "yunet").glob("face_detection_yunet*.onnx")):
        raise pytest.UsageError(f"shared test model missing: {FACES.parents[1] / 'models' / 'yunet'} (YuNet ONNX)")


@pytest.fixture(scope="session")
def faces() -> Path:
    return FACES


@pytest.fixture(scope="session", autouse=True)
def shared_zoo(tmp_path_factory):
    """Build the tiny zoo once per test session; every home reuses it."""
    zoo = Path(os.environ.get("BENCH_ZOO") or tmp_path_factory.mktemp("zoo"))
    os.environ["BENCH_ZOO"] = str(zoo)
    os.environ["BENCH_OFFLINE"] = "1"
    return zoo


@pytest.fixture(scope="session")
def glint() -> Path:
    return GLINT


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def run_cli(*args: str, home: Path | None = None, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `bench` console entry in a subprocess (exit codes, stderr and all)."""
    cmd = [sys.executable, "-m", "bench.cli", *args]
    if home is not None:
        cmd += ["--home", str(home)] if args and args[0] in ("run", "show", "cache") else []
    full_env = {**os.environ, "COLUMNS": "250", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)


@pytest.fixture
def cli():
    return run_cli


# A small REAL matrix (runner records, not hand-made rows) shared by the ranking tests and the
# browser test: none, noise and two defenses, two purifiers, two identities, tiny settings.
MATRIX_IDS = ("g111420", "g115983")
MATRIX_DEFENSES = {"advdm": ["defense.steps=3"], "aspl": ["defense.outer_steps=1", "defense.pgd_steps=2", "defense.surrogate_steps=1"],
                   "noise": ["defense.eps=8"]}
MATRIX_SMALL = ["attack.steps=4", "attack.batch_size=2", "generation.images_per_prompt=2", "generation.steps=3",
                "generation.prompts=[a photo of sks person]", "metrics=fdfr[dlib],idr[dlib],fid[dlib-face,pooling=pooled]"]


@pytest.fixture(scope="session")
def small_matrix(glint, shared_zoo, tmp_path_factory):
    """(home, records) of the matrix above, with each cell's no-defense and noise companions."""
    import shutil

    from bench.protocol import CellConfig
    from bench.registry import Registry
    from bench.runner import Runner

    root = tmp_path_factory.mktemp("matrix-ids")
    for i in MATRIX_IDS:
        shutil.copytree(glint / i, root / i)
    home = tmp_path_factory.mktemp("matrix-home")
    cfgs = [CellConfig.build({"defense": {"name": d}, "purifier": p, "attack": {"name": "dreambooth"},
                              "dataset": {"card": "anti-db", "root": str(root), "identity": i}}, [*sets, *MATRIX_SMALL])
            for d, sets in MATRIX_DEFENSES.items() for p in ("none", "jpeg") for i in MATRIX_IDS]
    records = Runner(home=home, registry=Registry(), quiet=True, compare=True, log=lambda m: None).run_many(cfgs)
    return home, records
