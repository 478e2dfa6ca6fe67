"""The per-defense leaderboard over a REAL small matrix (runner records, not hand-made rows):
none, noise and two defenses, two purifiers, two identities. One row per defense ranked by its
worst case over purifier x attack, with CIs and p; one JSON entry per defense; a static page
built from those files alone."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from bench.protocol import CellConfig
from bench.registry import Registry
from bench.runner import Runner
from leaderboard import data as D
from leaderboard.ranking import entries, worst_case_table

IDS = ("g111420", "g115983")
DEFENSES = {"advdm": ["defense.steps=3"], "aspl": ["defense.outer_steps=1", "defense.pgd_steps=2", "defense.surrogate_steps=1"],
            "noise": ["defense.eps=8"]}
SMALL = ["attack.steps=4", "attack.batch_size=2", "generation.images_per_prompt=2", "generation.steps=3",
         "generation.prompts=[a photo of sks person]", "metrics=fdfr[dlib],idr[dlib]"]


@pytest.fixture(scope="module")
def matrix(glint, tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    for i in IDS:
        shutil.copytree(glint / i, root / i)
    home = tmp_path_factory.mktemp("home")
    reg = Registry()
    cfgs = [CellConfig.build({"defense": {"name": d}, "purifier": p, "attack": {"name": "dreambooth"},
                              "dataset": {"card": "anti-db", "root": str(root), "identity": i}}, [*sets, *SMALL])
            for d, sets in DEFENSES.items() for p in ("none", "jpeg") for i in IDS]
    records = Runner(home=home, registry=reg, quiet=True, compare=True, log=lambda m: None).run_many(cfgs)
    return home, records


def test_one_row_per_defense_ranked_by_worst_case(matrix):
    home, _ = matrix
    records, _ = D.load_records(home)
    cells = D.cells_frame(records)
    (group,) = cells["protocol_group"].unique()
    table = worst_case_table(records, cells, group, "idr[dlib]")
    rows = table.set_index("defense")
    assert set(rows.index) == {"advdm", "aspl", "noise (eps=8.0)", "none (reference)"}  # labels name differing params
    combos = ["jpeg · dreambooth", "none · dreambooth"]
    for d in ("advdm", "aspl", "noise (eps=8.0)"):
        by_combo = [rows.loc[d, c] for c in combos]
        assert rows.loc[d, "worst case"] == pytest.approx(min(by_combo))  # the weakest combination decides
        assert rows.loc[d, "n"] == 2
        lo, hi = rows.loc[d, "worst CI"]
        assert lo <= rows.loc[d, "worst case"] <= hi
        assert rows.loc[d, "budget"] > 0 and rows.loc[d, "measured_linf"] <= rows.loc[d, "budget"]
    ranked = table[table["rank"].notna()]
    assert list(ranked["worst case"]) == sorted(ranked["worst case"], reverse=True)
    assert rows.loc["none (reference)", "worst case"] == 0.0


def test_entries_json_and_static_page_from_files_alone(matrix, cli, tmp_path):
    home, records = matrix
    group = records[0]["protocol_group"]
    es = {e["defense"]: e for e in entries(D.load_records(home)[0], group)}
    assert set(es) == {"advdm", "aspl", "noise (eps=8.0)"}
    advdm = es["advdm"]
    combo = advdm["metrics"]["idr[dlib]"]["by_combination"]["none · dreambooth"]
    assert combo["n"] == 2 and {"protection", "ci_low", "ci_high", "p", "vs_noise"} <= set(combo)
    worst = advdm["metrics"]["idr[dlib]"]["worst_case"]
    assert worst == min(c["protection"] for c in advdm["metrics"]["idr[dlib]"]["by_combination"].values())
    assert advdm["identities"] == sorted(IDS) and "baseline failed" not in advdm["flags"]

    out = tmp_path / "entries"
    res = cli("export", "--format", "json", "--out", str(out), "--home", str(home))
    assert res.returncode == 0, res.stderr
    files = sorted(out.glob("*.json"))
    assert len(files) == 3 and all(json.loads(f.read_text())["protocol_group"] == group for f in files)
    page = cli("export", "--from-entries", str(out))  # no home: the files alone
    assert page.returncode == 0, page.stderr
    lines = [ln for ln in page.stdout.splitlines() if ln.startswith("| ") and "defense" not in ln]
    assert len(lines) == 3 and lines[0].startswith("| 1 |")
    shown = [float(ln.split("|")[3]) if ln.split("|")[3].strip() != "-" else -math.inf for ln in lines]
    assert shown == sorted(shown, reverse=True)
    empty = cli("export", "--from-entries", str(tmp_path))
    assert empty.returncode == 2 and "no entry files" in empty.stderr
