"""The reliability suite (issue: nothing faked, nothing lost, no traceback). Every case of the
generated corpus (tests/reliability_corpus.py) runs through the real CLI in-process: it must
end with its expected exit code and message, never a traceback, and the failing cases must
leave the artifact store and the results byte-identical."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

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
        matched = re.search(case.expect, text) is not None
        ok = code == case.code and matched and not traceback
        results.append((case, ok, code, text))
    failed = [f"{c.name}: exit {code} (expected {c.code}), pattern {c.expect!r}\n{text[-600:]}" for c, ok, code, text in results if not ok]
    by_group = {}
    for case, ok, _, _ in results:
        n, good_n = by_group.get(case.group, (0, 0))
        by_group[case.group] = (n + 1, good_n + ok)
    summary = ", ".join(f"{g} {k}/{n}" for g, (n, k) in by_group.items())
    errors = sum(1 for c, *_ in results if c.code == 2)
    print(f"reliability corpus: {len(results)} cases, {len(results) - len(failed)} as expected ({summary}); "
          f"{errors} rejected with exit 2, {len(results) - errors} accepted; "
          f"{sum('Traceback' in t for *_, t in results)} tracebacks")
    assert not failed, "\n\n".join(failed)
    assert _snapshot(home) == before, "a failing case changed the store or the results"
    assert not list((home / "artifacts" / ".tmp").iterdir()), "a failing case left a temporary folder"


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
