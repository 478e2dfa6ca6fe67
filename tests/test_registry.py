"""Plugin registry: built-ins and third parties register alike (entry points),
local files via --plugin, aliases, closest-match errors, budget enforcement."""

import json
import os
import textwrap

import pytest

from bench.errors import BenchError
from bench.registry import Registry
from conftest import run_cli

SMALL_CELL = ["--set", "attack.steps=1", "--set", "attack.num_class_images=1", "--set", "generation.images_per_prompt=1",
              "--set", "generation.steps=2", "--set", "metrics=[]", "-q", "--no-compare"]


def test_builtins_of_all_four_kinds_and_aliases():
    reg = Registry()
    assert {"none", "advdm"} <= set(reg.names("defense"))
    assert {"none", "jpeg"} <= set(reg.names("purifier"))
    assert "dreambooth" in reg.names("attack")
    assert {"ism", "fdfr", "aism", "brisque"} <= set(reg.names("metric"))
    assert reg.get("attack", "db").name == "dreambooth"
    with pytest.raises(BenchError, match="did you mean 'dreambooth'"):
        reg.get("attack", "dreambooht")
    with pytest.raises(BenchError, match="unknown plugin kind"):
        reg.get("sampler", "x")


def test_bench_list_shows_all_kinds_with_sources():
    res = run_cli("list")
    assert res.returncode == 0, res.stderr
    for title in ("defenses", "purifiers", "attacks", "metrics"):
        assert title in res.stdout
    assert "Diff-Protect" in res.stdout  # every default names its source


OVER_BUDGET = textwrap.dedent('''
    import numpy as np
    from bench.params import Param
    from bench.plugin import ImageDefense

    class Cheater(ImageDefense):
        name = "cheater"
        summary = "declares 4/255 but adds 9/255"
        params = [Param("eps", float, 4.0)]

        def budget(self):
            return self.p.eps

        def protect(self, subject, base, ctx):
            return [np.clip(img.astype(int) + 9, 0, 255).astype(np.uint8) for img in subject.train]
''')


def test_over_budget_defense_is_rejected_and_nothing_is_lost(tmp_path):
    plugin = tmp_path / "cheater.py"
    plugin.write_text(OVER_BUDGET)
    home = tmp_path / "h"
    res = run_cli("run", "--plugin", str(plugin), "--defense", "cheater", *SMALL_CELL, "--home", str(home))
    assert res.returncode == 2, res.stderr
    assert "exceeds its budget: measured L-inf 9/255" in res.stderr and "Traceback" not in res.stderr
    assert not (home / "artifacts" / "defense").exists()  # the rejected set is not an artifact...
    assert list((home / "rejected").iterdir())  # ...but is kept for inspection
    assert len(list((home / "artifacts" / "clean").iterdir())) == 1  # finished stages stay cached


THIRD_PARTY = {
    "pyproject.toml": '''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "bench-shift-defense"
        version = "0.1"
        [project.entry-points."bench.defenses"]
        shift = "shift_defense:Shift"
        [project.entry-points."bench.zoo"]
        tiny-shift-table = "shift_defense:TABLE"
        tiny-sd = "shift_defense:TABLE"
        [tool.setuptools]
        py-modules = ["shift_defense"]
    ''',
    "shift_defense.py": '''
        import numpy as np
        from bench.params import Param
        from bench.plugin import ImageDefense
        from bench.zoo import ZooModel

        def write_table(out_dir, seed):
            (out_dir / "table.txt").write_text(f"shift table, seed {seed}")

        TABLE = ZooModel({"shifts": [1, 2, 3]}, write_table)  # a plugin's own tiny model

        class Shift(ImageDefense):
            name = "shift"
            aliases = ("brightness-shift",)
            summary = "third-party example: a uniform +eps shift"
            params = [Param("eps", float, 3.0, source="example", ge=0)]

            def budget(self):
                return self.p.eps

            def protect(self, subject, base, ctx):
                return [np.clip(i.astype(int) + int(self.p.eps), 0, 255).astype(np.uint8) for i in subject.train]
    ''',
}


def test_third_party_package_installed_with_pip_appears_and_runs(tmp_path):
    import subprocess
    import sys

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name, text in THIRD_PARTY.items():
        (pkg / name).write_text(textwrap.dedent(text))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(pkg)],
                   check=True, capture_output=True)
    env = {"PYTHONPATH": str(site)}
    listed = run_cli("list", "defense", env=env)
    assert listed.returncode == 0 and "shift" in listed.stdout and "third-party example" in listed.stdout
    res = run_cli("run", "--defense", "brightness-shift", *SMALL_CELL, "--home", str(tmp_path / "h"), env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "measured L-inf 3/255" in res.stdout
    # its zoo model is built through the core's zoo; it cannot replace a core model (tiny-sd)
    probe = ("import json, sys; from pathlib import Path; from bench import zoo; "
             "out = zoo.ensure('tiny-shift-table', Path(sys.argv[1])); "
             "print(json.dumps([(out / 'table.txt').read_text(), json.loads((out / 'ZOO.json').read_text())['name'], "
             "zoo.models()['tiny-sd'].config is zoo.TINY_SD]))")
    got = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "zoo")], capture_output=True, text=True,
                         env={**os.environ, **env})
    assert got.returncode == 0, got.stderr[-2000:]
    assert json.loads(got.stdout) == ["shift table, seed 0", "tiny-shift-table", True]


def test_every_method_default_of_every_builtin_plugin_cites_its_source():
    """Setup parameters (weights folders, devices) are exempt; everything else names a paper
    section, a reference file, or says it is our choice."""
    reg = Registry()
    missing = [f"{kind} {name}.{p.name}" for kind in ("defense", "purifier", "attack", "metric") for name in reg.names(kind)
               for p in reg.get(kind, name).params if not p.source and not p.setup]
    assert not missing, missing
