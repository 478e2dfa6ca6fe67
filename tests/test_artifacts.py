import json

import pytest

from bench.artifacts import ArtifactStore, stable_hash


def test_ensure_builds_once_and_reuses(tmp_path):
    store = ArtifactStore(tmp_path)
    calls = []

    def build(d):
        calls.append(1)
        (d / "x.txt").write_text("hello")
        return {"n": 1}

    a = store.ensure("stage", "k1", build)
    b = store.ensure("stage", "k1", build)
    assert len(calls) == 1 and not a.cached and b.cached
    assert (b.path / "x.txt").read_text() == "hello" and b.meta["n"] == 1


def test_failed_build_leaves_no_partial_artifact(tmp_path):
    store = ArtifactStore(tmp_path)

    def broken(d):
        (d / "half.txt").write_text("partial")
        raise RuntimeError("killed mid-stage")

    with pytest.raises(RuntimeError):
        store.ensure("stage", "k2", broken)
    assert store.get("stage", "k2") is None
    assert not list((tmp_path / ".tmp").iterdir())  # temp folder cleaned
    art = store.ensure("stage", "k2", lambda d: {"ok": True})  # a rerun completes it
    assert art.meta["ok"] is True


def test_leftover_temp_from_a_killed_process_is_never_read(tmp_path):
    store = ArtifactStore(tmp_path)
    # what a SIGKILL mid-write leaves behind: a temp folder, never the final one
    (tmp_path / ".tmp" / "stage-k3-dead").mkdir()
    (tmp_path / "stage" / "k3").mkdir(parents=True)  # a folder without its meta file is not an artifact
    assert store.get("stage", "k3") is None
    store.prune()
    assert not list((tmp_path / ".tmp").iterdir())


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_meta_records_inputs(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.ensure("s", "k", lambda d: None, inputs={"seed": 3})
    assert json.loads((art.path / "artifact.json").read_text())["inputs"] == {"seed": 3}
