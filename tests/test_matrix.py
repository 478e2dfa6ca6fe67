"""Matrix runs: shared-stage planning, executors (local, process pool, Ray with a
killed worker), the plugin conformance kit, and tamper-evident submissions."""

import json
import shutil
import textwrap
import zipfile
from collections import Counter

import pytest

from bench.errors import BenchError
from bench.executors import LocalExecutor, RayExecutor
from bench.kit import check_plugin, scaffold
from bench.registry import Registry
from bench.runner import Runner
from bench.submissions import ingest, submit
from bench.sweep import expand, matrix_names
from conftest import run_cli

SMALL = ["attack.steps=1", "attack.num_class_images=1", "generation.images_per_prompt=1", "generation.steps=2",
         "generation.prompts=[a photo of sks person]", "metrics=brisque[libsvm]"]

PLUGINS = textwrap.dedent('''
    import os
    import numpy as np
    from pathlib import Path
    from bench.params import Param
    from bench.plugin import ImageDefense

    class Shift(ImageDefense):
        name = "shift"
        summary = "uniform +eps shift (test plugin)"
        params = [Param("eps", float, 3.0, source="test", ge=0)]

        def budget(self):
            return self.p.eps

        def protect(self, subject, base, ctx):
            return [np.clip(i.astype(int) + int(self.p.eps), 0, 255).astype(np.uint8) for i in subject.train]

    class Crashy(Shift):
        """Kills its worker process the first time it runs (a node lost mid-stage)."""
        name = "crashy"
        summary = "dies once, then behaves (test plugin)"

        def protect(self, subject, base, ctx):
            marker = Path(os.environ["CRASH_MARKER"])
            if not marker.exists():
                marker.write_text("crashed once")
                os._exit(1)
            return super().protect(subject, base, ctx)

    class Noisy(Shift):
        name = "noisy"
        summary = "ignores the seed (test plugin)"

        def protect(self, subject, base, ctx):
            rng = np.random.default_rng()
            return [np.clip(i.astype(int) + rng.integers(-2, 3, i.shape), 0, 255).astype(np.uint8) for i in subject.train]

    class Greedy(Shift):
        name = "greedy"
        summary = "declares 3/255, adds 6/255 (test plugin)"

        def protect(self, subject, base, ctx):
            return [np.clip(i.astype(int) + 6, 0, 255).astype(np.uint8) for i in subject.train]
''')


@pytest.fixture(scope="module")
def two_identities(faces, tmp_path_factory):
    """Two identities in the Anti-DreamBooth layout: n000050, and rid_103 split into sets."""
    root = tmp_path_factory.mktemp("faces")
    shutil.copytree(faces / "n000050", root / "n000050")
    files = sorted((faces / "rid_103").glob("*.jpg"))
    for i, f in enumerate(files):
        d = root / "rid_103" / f"set_{'ABC'[i // 4]}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f.name)
    return root


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("plugins") / "test_plugins.py"
    p.write_text(PLUGINS)
    return p


def test_full_matrix_dry_run_shares_stages(two_identities, tmp_path):
    reg = Registry()
    cell = {"dataset": {"card": "anti-db", "root": str(two_identities)}}
    cfgs = expand(cell, "all", "all", "all", ["n000050", "rid_103"], [0], [], reg)
    n_def, n_pur, n_att = (len(matrix_names(reg, k)) for k in ("defense", "purifier", "attack"))
    assert "files" in reg.names("defense") and "files" not in matrix_names(reg, "defense")  # needs the user's folder
    assert len(cfgs) == n_def * n_pur * n_att * 2
    runner = Runner(home=tmp_path, registry=reg, quiet=True)
    plan = runner.plan(cfgs)
    kinds = Counter(kind for kind, _ in plan.stages)
    assert kinds["clean"] == 2
    assert kinds["defense"] == n_def * 2  # each defense once per identity
    assert kinds["purified"] == n_pur * n_def * 2  # each purification once per protected set
    # model-level defenses (APDM) add a non-target control identity per attack: on each protected
    # model, and once on the base model (shared by every model-level defense)
    n_model = sum(1 for d in matrix_names(reg, "defense") if reg.get("defense", d).level == "model")
    assert n_model >= 1
    # the identification metric adds the `none` attack's control samples, one per identity, model and
    # recipe (a purifier may set negative tokens), shared by every defense, purifier and attack on them
    # (and the same stage as the none attack's own on clean images)
    branches = [b for c in plan.cells for b in (c.main, *((c.control.protected, c.control.base) if c.control else ()))]
    regular = {b.personalized.id for b in branches}
    controls = {st.id for b in branches for st in b.controls if st.kind == "personalized"}
    assert len(regular) == n_pur * n_def * n_att * 2 + (n_model + 1) * n_att * 2
    assert controls and kinds["personalized"] == len(regular | controls)
    assert len(controls) <= 2 * (n_model + 1) * n_pur  # at most one per identity, model and purifier recipe
    assert not any(runner.store.root.joinpath(k).exists() for k in ("defense", "purified"))  # nothing computed
    res = run_cli("run", "--defense", "all", "--purifier", "all", "--attack", "all", "--identities", "n000050,rid_103",
                  "--dataset", "anti-db", "--data-root", str(two_identities), "--dry-run", "--home", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert f"plan: {len(cfgs)} cells" in res.stdout and "to compute" in res.stdout


def test_comma_lists_and_budget_sweeps_expand_into_cells(two_identities, tmp_path):
    """`-p none,jpeg` is a matrix of two purifiers; `--set defense.eps=4,8,16` one cell per budget
    (numeric parameters only: a list parameter keeps its commas)."""
    reg = Registry()
    cell = {"dataset": {"card": "anti-db", "root": str(two_identities)}}
    cfgs = expand(cell, "advdm", "none,jpeg", "dreambooth", None, [0], ["defense.eps=4,8,16", "defense.steps=2"], reg)
    assert sorted((c.defense.params["eps"], c.purifier[0].name) for c in cfgs) == [
        (e, p) for e in (4, 8, 16) for p in ("jpeg", "none")]
    assert all(c.defense.params["steps"] == 2 for c in cfgs)
    (one,) = expand(cell, "dladiff", "none", "dreambooth", None, [0], ["defense.layers=ft,zs"], reg)
    assert one.defense.params["layers"] == "ft,zs"  # a list parameter is not a sweep
    res = run_cli("run", "-d", "advdm", "-p", "none,jpeg", "-a", "none", "--set", "defense.eps=4,8", "--no-compare",
                  "--dataset", "anti-db", "--data-root", str(two_identities), "--identity", "n000050", "--dry-run",
                  "--home", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "plan: 4 cells" in res.stdout


def test_budget_curve_and_static_page_of_a_sweep():
    """The page's protection-against-budget chart and the static page's table come from the
    per-defense rows: only defenses run at several budgets are curves."""
    import pandas as pd

    from leaderboard.ranking import budget_curve, static_page

    table = pd.DataFrame({"defense": ["advdm (eps=4.0)", "advdm (eps=8.0)", "aspl", "none (reference)"],
                          "budget": [4.0, 8.0, 6.0, float("nan")], "worst case": [0.1, 0.3, 0.2, 0.0]})
    curve = budget_curve(table)
    assert list(curve["defense"]) == ["advdm", "advdm"] and list(curve["budget"]) == [4.0, 8.0]
    assert list(curve["worst case"]) == [0.1, 0.3]
    entry = lambda label, b, w: {"defense": label, "defense_name": label.split(" (")[0], "protocol_group": "g",  # noqa: E731
                                 "protocol": "p", "rank_metric": "idr", "budget": b, "measured_linf": b, "psnr": 40.0,
                                 "seconds_per_image": 1.0, "identities": ["a"], "flags": [], "metrics": {"idr": {"worst_case": w}}}
    page = static_page([entry("advdm (eps=4.0)", 4.0, 0.1), entry("advdm (eps=8.0)", 8.0, 0.3), entry("aspl", 6.0, 0.2)])
    assert "protection against budget, advdm" in page and "| 4 | 0.1 |" in page and "| 8 | 0.3 |" in page
    assert "protection against budget, aspl" not in page


def _small_cells(reg, root, defenses):
    return expand({"dataset": {"card": "anti-db", "root": str(root)}}, defenses, ["none", "jpeg"], ["dreambooth"],
                  ["n000050"], [0], SMALL, reg)


def _essence(records):
    """What must match between executors: keys, artifacts, metric values (BRISQUE's
    optimiser differs in the 12th digit with the BLAS thread layout, hence rounding)."""
    def rounded(m):
        return {k: {"value": round(v["value"], 6) if v["value"] is not None else None, "status": v["status"]} for k, v in m.items()}

    return sorted((r["cell_key"], json.dumps(rounded(r["metrics"]), sort_keys=True), r["stages"]["defense"]["artifact"],
                   r["stages"]["generate"]["artifact"]) for r in records)


def test_ray_cluster_matches_local_and_retries_a_killed_worker(two_identities, plugin_file, tmp_path, monkeypatch):
    import ray

    monkeypatch.setenv("CRASH_MARKER", str(tmp_path / "crashed"))
    reg = Registry()
    reg.add_file(plugin_file)
    cfgs = _small_cells(reg, two_identities, ["none", "crashy"])
    local = Runner(home=tmp_path / "local", registry=reg, quiet=True, plugin_files=[str(plugin_file)])
    (tmp_path / "crashed").write_text("skip the crash locally")
    local_records = local.run_many(cfgs, LocalExecutor())
    (tmp_path / "crashed").unlink()
    import os

    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"CRASH_MARKER": str(tmp_path / "crashed"), "BENCH_ZOO": os.environ["BENCH_ZOO"]}})
        remote = Runner(home=tmp_path / "ray", registry=reg, quiet=True, plugin_files=[str(plugin_file)])
        ray_records = remote.run_many(cfgs, RayExecutor(retries=2))
    finally:
        ray.shutdown()
    assert (tmp_path / "crashed").exists()  # the worker really died once...
    assert _essence(ray_records) == _essence(local_records)  # ...was retried, and the records match


def test_conformance_kit(plugin_file, tmp_path):
    reg = Registry()
    reg.add_file(plugin_file)
    good = check_plugin("defense", "shift", registry=reg)
    assert good.passed, good.text()
    greedy = check_plugin("defense", "greedy", registry=reg)
    assert not greedy.passed and "measured L-inf 6/255, declared 3/255" in greedy.text()
    noisy = check_plugin("defense", "noisy", registry=reg)
    assert not noisy.passed and "same seed gave different images" in noisy.text()
    res = run_cli("check", "plugin", "greedy", "--plugin", str(plugin_file))
    assert res.returncode == 1 and "FAILS" in res.stdout
    root = scaffold("defense", "my-noise", tmp_path)
    assert (root / "pyproject.toml").read_text().count('my-noise = "bench_my_noise.defense:MyNoiseDefense"') == 1
    scaffolded = Registry()
    scaffolded.add_file(root / "bench_my_noise" / "defense.py")
    report = check_plugin("defense", "my-noise", registry=scaffolded)
    assert report.passed, report.text()
    with pytest.raises(BenchError, match="must be lower case"):
        scaffold("defense", "Bad Name", tmp_path)


def test_submission_round_trip_and_tamper_detection(two_identities, plugin_file, tmp_path):
    reg = Registry()
    reg.add_file(plugin_file)
    home = tmp_path / "h"
    Runner(home=home, registry=reg, quiet=True, plugin_files=[str(plugin_file)]).run_many(_small_cells(reg, two_identities, ["shift"]))
    bundle = submit(home, "shift", tmp_path / "shift.zip", reg)
    summary = ingest(bundle, tmp_path / "board")
    assert len(summary["records"]) == 2
    assert len(list((tmp_path / "board" / "results" / "records").glob("*.json"))) == 2

    def tampered(name, edit):
        out = tmp_path / name
        with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.namelist():
                data = src.read(item)
                dst.writestr(item, edit(item, data))
        return out

    def better_metric(item, data):
        if item.startswith("records/"):
            rec = json.loads(data)
            rec["metrics"]["brisque[libsvm]"]["value"] = 1.0
            return json.dumps(rec).encode()
        return data

    with pytest.raises(BenchError, match="was modified"):
        ingest(tampered("t1.zip", better_metric), tmp_path / "board2")

    def smuggle(item, data):
        if item == "manifest.json":
            m = json.loads(data)
            m["files"]["evil.py"] = "0" * 64
            return json.dumps(m).encode()
        return data

    with pytest.raises(BenchError, match="manifest was altered"):
        ingest(tampered("t2.zip", smuggle), tmp_path / "board3")
    res = run_cli("ingest", str(tmp_path / "t1.zip"), "--home", str(tmp_path / "board4"))
    assert res.returncode == 2 and "SHA-256 mismatch" in res.stderr


def test_local_process_pool_matches_sequential(two_identities, plugin_file, tmp_path):
    reg = Registry()
    reg.add_file(plugin_file)
    cfgs = _small_cells(reg, two_identities, ["none", "shift"])
    seq = Runner(home=tmp_path / "seq", registry=reg, quiet=True, plugin_files=[str(plugin_file)]).run_many(cfgs, LocalExecutor())
    pooled_runner = Runner(home=tmp_path / "pool", registry=reg, quiet=True, plugin_files=[str(plugin_file)])
    pooled = pooled_runner.run_many(cfgs, LocalExecutor(workers=2))
    # same keys and artifacts; metric floats may differ in the last digits (each worker has half the threads)
    assert [(e[0], e[2], e[3]) for e in _essence(pooled)] == [(e[0], e[2], e[3]) for e in _essence(seq)]
    values = {r["cell_key"]: r["metrics"]["brisque[libsvm]"]["value"] for r in seq}
    for r in pooled:
        assert r["metrics"]["brisque[libsvm]"]["value"] == pytest.approx(values[r["cell_key"]], rel=1e-3)
    arts = pooled_runner.store.root
    assert len(list((arts / "clean").iterdir())) == 1 and len(list((arts / "defense").iterdir())) == 2
    assert all(cached for _, _, cached, _ in pooled_runner.run_many(cfgs, LocalExecutor(workers=2))[0]["_run"]["stages"])
    with pytest.raises(BenchError, match="--workers must be >= 1"):
        LocalExecutor(workers=0)


def test_artifacts_shared_through_an_fsspec_url(two_identities, plugin_file, tmp_path):
    reg = Registry()
    reg.add_file(plugin_file)
    cfgs = _small_cells(reg, two_identities, ["shift"])[:1]
    url = f"file://{tmp_path / 'shared'}"
    first = Runner(home=tmp_path / "node1", registry=reg, quiet=True, plugin_files=[str(plugin_file)], artifacts_url=url)
    a = first.run_many(cfgs)
    pushed = sorted(p.parent.parent.name for p in (tmp_path / "shared").glob("*/*/artifact.json"))
    assert {"clean", "defense", "personalized", "generated", "metric"} <= set(pushed)
    # a half-uploaded artifact (no artifact.json yet) on the URL is ignored, never read
    (tmp_path / "shared" / "defense" / "deadbeef" / "images").mkdir(parents=True)
    second = Runner(home=tmp_path / "node2", registry=reg, quiet=True, plugin_files=[str(plugin_file)], artifacts_url=url)
    assert not second.store.exists("defense", "deadbeef") and second.store.get("defense", "deadbeef") is None
    b = second.run_many(cfgs)
    assert all(cached for _, _, cached, _ in b[0]["_run"]["stages"])  # node2 computed nothing: fetched from the URL
    assert _essence(b) == _essence(a)
    assert (tmp_path / "node2" / "artifacts" / "generated" / b[0]["stages"]["generate"]["artifact"] / "images").is_dir()
    with pytest.raises(BenchError, match="artifact URL 'nosuchproto://x'"):
        Runner(home=tmp_path / "n3", registry=reg, quiet=True, artifacts_url="nosuchproto://x")
