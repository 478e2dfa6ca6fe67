"""The reliability suite (issue: nothing faked, nothing lost, no traceback). Every case of the
generated corpus (tests/reliability_corpus.py) runs through the real CLI in-process: it must
end with its expected exit code and message, never a traceback, and the failing cases must
leave the artifact store and the results byte-identical."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

import reliability_corpus as corpus
from bench.cli import run_cli


def _snapshot(home: Path) -> dict[str, str]:
    """Every file of the store and the results (lock files and logs aside), by content hash."""
    out = {}
    for sub in ("artifacts", "results/records"):
        for f in sorted((home / sub).rglob("*")):
            if f.is_file() and ".locks" not in f.parts:
                out[str(f.relative_to(home))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _run(argv: list[str], home: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = run_cli([*argv, "--home", str(home)] if argv[0] in ("run",) else argv)
    except SystemExit as exc:  # a command's own sys.exit
        code = exc.code
    except BaseException as exc:  # noqa: BLE001 - anything escaping is a traceback the user would see
        out = capsys.readouterr()
        return -1, f"{out.out}{out.err}ESCAPED {type(exc).__name__}: {exc}"
    out = capsys.readouterr()
    return code, out.out + out.err


def test_reliability_corpus(tmp_path, glint, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one-line errors stay on one line in the captured output
    good, cases = corpus.build(tmp_path / "corpus", glint)
    home = tmp_path / "home"
    code, text = _run(corpus.warmup_argv(good), home, capsys)
    assert code == 0, text
    before = _snapshot(home)
    assert any("personalized" in k for k in before)  # the warm-up computed the shared stages

    results = []
    for case in cases:
        code, text = _run(case.argv, home, capsys)
        traceback = "Traceback" in text or code == -1
        matched = re.search(case.expect, " ".join(text.split())) is not None  # a narrow console may wrap a line
        ok = code == case.code and matched and not traceback
        results.append((case, ok, code, text))
    failed = [f"{c.name}: exit {code} (expected {c.code}), pattern {c.expect!r}\n{text[-600:]}" for c, ok, code, text in results if not ok]
    by_group = {}
    for case, ok, _, _ in results:
        n, good_n = by_group.get(case.group, (0, 0))
        by_group[case.group] = (n + 1, good_n + ok)
    summary = ", ".join(f"{g} {k}/{n}" for g, (n, k) in by_group.items())
    errors = sum(1 for c, *_ in results if c.code == 2)
    with capsys.disabled():  # the summary line, past the capture the cases use
        print(f"\nreliability corpus: {len(results)} cases, {len(results) - len(failed)} as expected ({summary}); "
              f"{errors} rejected with exit 2, {len(results) - errors} accepted; "
              f"{sum('Traceback' in t for *_, t in results)} tracebacks")
    assert not failed, "\n\n".join(failed)
    assert _snapshot(home) == before, "a failing case changed the store or the results"
    assert not list((home / "artifacts" / ".tmp").iterdir()), "a failing case left a temporary folder"
    code, text = _run(["show", "--weights", "--home", str(home)], home, capsys)  # what the result was computed with
    assert code == 0 and re.search(r"personalize: unet/diffusion_pytorch_model\.safetensors sha256 [0-9a-f]{64}", " ".join(text.split())), text


def test_matrix_goes_on_past_a_failing_cell(tmp_path, glint, capsys, monkeypatch):
    """One cell's defense raises: the other cell finishes and is recorded, the failure is listed
    with its reason (and kept in results/failed/), the exit code is 2; once the fault is gone, a
    rerun computes only the failed cell's stages and clears its failure."""
    monkeypatch.setenv("COLUMNS", "400")
    root = tmp_path / "two"
    for ident in ("g111420", "g115983"):
        corpus._identity(glint / ident, root / ident)
    argv = ["run", "--dataset", "anti-db", "--data-root", str(root), "--identities", "g111420,g115983", "-d", "fault-for",
            "-a", "none", "--plugin", str(corpus.PLUGINS), *corpus.SMALL]
    home = tmp_path / "home"
    monkeypatch.setenv("FAULT_FOR", "g115983")
    code, text = _run(argv, home, capsys)
    assert code == 2 and "Traceback" not in text, text
    assert "1 cell(s) failed" in text and "cannot protect g115983" in text
    records = list((home / "results" / "records").glob("*.json"))
    failures = list((home / "results" / "failed").glob("*.json"))
    assert len(records) == 1 and len(failures) == 1
    assert '"g111420"' in records[0].read_text() and "cannot protect g115983" in failures[0].read_text()
    log = re.search(r"traceback in (\S+\.log)", text).group(1)
    assert "RuntimeError: cannot protect g115983" in Path(log).read_text()  # the full traceback, for the plugin's author

    monkeypatch.delenv("FAULT_FOR")
    code, text = _run(argv, home, capsys)
    assert code == 0, text
    computed = re.findall(r"  (\w+) (.+?): computed in", text)
    assert computed and all(kind != "clean" for kind, _ in computed)  # only what the failure had blocked
    assert not list((home / "results" / "failed").glob("*.json"))
    assert len(list((home / "results" / "records").glob("*.json"))) == 2


def test_matrix_with_an_unavailable_purifier_finishes_the_rest(tmp_path, glint, capsys, monkeypatch):
    """`-p none,codeformer-sr` offline: CodeFormer's weights are missing, so that cell is recorded
    as failed with the reason, the `none` cell finishes, the exit code is 2; a rerun recomputes
    nothing that finished (only the unavailable purifier is tried again)."""
    monkeypatch.setenv("COLUMNS", "400")
    root = tmp_path / "one"
    corpus._identity(glint / "g111420", root / "g111420")
    argv = ["run", "--dataset", "anti-db", "--data-root", str(root), "-d", "none", "-a", "none", "-p", "none,codeformer-sr",
            *corpus.SMALL]
    home = tmp_path / "home"
    code, text = _run(argv, home, capsys)
    assert code == 2 and "Traceback" not in text, text
    assert "codeformer-sr" in text and "CodeFormer weights are not available" in text
    assert re.findall(r"^\s+generated .+?: computed in", text, re.M)  # the first run did compute (and says so)
    assert len(list((home / "results" / "records").glob("*.json"))) == 1  # the none-purifier cell
    (failure,) = (home / "results" / "failed").glob("*.json")
    assert "CodeFormer weights are not available" in failure.read_text()
    code, again = _run(argv, home, capsys)
    assert code == 2 and not re.findall(r"^\s+(?!purified)\w+ .+?: computed in", again, re.M), again


def _pngs(home: Path) -> dict[str, bytes]:
    return {str(f.relative_to(home / "artifacts")): f.read_bytes() for f in sorted((home / "artifacts").rglob("*.png"))
            if ".tmp" not in f.parts}


def test_killed_cell_resumes_bit_identical(tmp_path, glint):
    """A none/db cell SIGKILLed at 10 random points, resumed each time, ends with PNGs bit-identical
    to an uninterrupted run's; no finished stage is computed twice; no temp folder is left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "data"
    corpus._identity(glint / "g111420", root / "g111420")
    argv = [sys.executable, "-m", "bench.cli", "run", "--dataset", "anti-db", "--data-root", str(root), "-d", "none", "-a", "db",
            "--set", "attack.steps=24", *corpus.SMALL, "-q"]
    env = {**os.environ, "BENCH_THREADS": "1", "OMP_NUM_THREADS": "1", "BENCH_CHECKPOINT_EVERY": "3", "COLUMNS": "300"}

    def start(home: Path) -> subprocess.Popen:
        return subprocess.Popen([*argv, "--home", str(home)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    t0 = time.time()
    ref = start(tmp_path / "ref")
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out
    full = time.time() - t0

    home, computed, resumed, rng = tmp_path / "killed", [], 0, np.random.default_rng(7)
    for at in sorted(rng.uniform(0.25 * full, 0.6 * full, 10)):  # after the imports, spread over the stages
        proc = start(home)
        time.sleep(at)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        computed += re.findall(r"^\s+(\w+ .+?): computed in", out, re.M)
        resumed += "resuming from step" in out
    last = start(home)
    out, _ = last.communicate(timeout=600)
    assert last.returncode == 0, out
    computed += re.findall(r"^\s+(\w+ .+?): computed in", out, re.M)
    resumed += "resuming from step" in out
    assert resumed, "no run resumed a stage from its saved progress"  # the kills did land mid-stage
    assert len(computed) == len(set(computed)), f"a finished stage was computed again: {computed}"
    assert _pngs(home) == _pngs(tmp_path / "ref")  # every stage's images, bit for bit
    assert not list((home / "artifacts" / ".tmp").iterdir())
    assert not list((home / "artifacts" / ".progress").glob("*.pt"))  # spent progress is removed


@pytest.mark.parametrize("name, params, kill_at, resumed_from", [
    # the first tick is advance(0) before the loop: AdvDM dies after PGD step 5 (saved every 2 steps),
    # ASPL after its 3rd outer step, before saving it (saved after each)
    ("advdm", {"steps": 7, "random_start": True}, 6, 4),
    ("aspl", {"outer_steps": 4, "pgd_steps": 2, "surrogate_steps": 1}, 4, 2),
])
def test_interrupted_defense_resumes_bit_identical(name, params, kill_at, resumed_from, tmp_path, glint, shared_zoo):
    """Defense optimisation saves its state (AdvDM: x_adv, RNG, loss trace; ASPL: surrogate
    weights, perturbation, RNG, traces after each outer step); a run cut off mid-way continues
    from it and ends with exactly the uninterrupted images."""
    import contextlib
    from dataclasses import replace

    from bench import data
    from bench.artifacts import ArtifactStore
    from bench.context import Context
    from bench.models import resolve
    from bench.registry import Registry

    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(glint), "g111420"), 64)
    base = resolve({"id": "zoo:tiny-sd-face"}, shared_zoo)
    defense = Registry().create("defense", name, params, "tiny")
    plain = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(tmp_path / "a"), home=tmp_path, quiet=True,
                    log=lambda m: None, checkpoint_every=0)
    reference = defense.protect(subject, base, plain)

    class Killed(Exception):
        pass

    logs, calls = [], []
    resumable = replace(plain, progress_path=tmp_path / "progress.pt", checkpoint_every=2, log=logs.append)

    @contextlib.contextmanager
    def dying_bar(description, total):  # raises at the kill_at-th progress tick, as a SIGKILL would stop it
        def advance(n=1):
            calls.append(n)
            if len(calls) == kill_at:
                raise Killed
        yield advance

    resumable.progress = dying_bar
    with pytest.raises(Killed):
        defense.protect(subject, base, resumable)
    assert (tmp_path / "progress.pt").is_file()
    resumed = defense.protect(subject, base, replace(resumable, log=logs.append))
    assert any(f"resuming from step {resumed_from}" in m for m in logs), logs
    assert all(np.array_equal(a, b) for a, b in zip(resumed, reference))


def test_zoo_folder_with_a_swapped_weight_file_is_rejected(tmp_path, shared_zoo, capsys):
    """A model is identified by the hashes of its weight files, not by its folder name: swap one
    file for another valid one and the zoo refuses it with one line (CLI: exit 2)."""
    import json
    import shutil

    from bench import zoo
    from bench.errors import BenchError

    built = zoo.ensure("tiny-sd-face", shared_zoo)
    root = tmp_path / "zoo"
    folder = root / built.name
    shutil.copytree(built, folder)
    assert zoo.ensure("tiny-sd-face", root) == folder  # intact: accepted
    recorded = json.loads((folder / "ZOO.json").read_text())["weights"]
    assert recorded == zoo.weight_hashes(folder) and any(k.startswith("unet/") for k in recorded)
    unet = next(folder.glob("unet/*.safetensors"))
    shutil.copy(next(folder.glob("vae/*.safetensors")), unet)  # a valid file, the wrong model
    with pytest.raises(BenchError, match=r"unet/.*does not match the weights it was built with"):
        zoo.ensure("tiny-sd-face", root)
