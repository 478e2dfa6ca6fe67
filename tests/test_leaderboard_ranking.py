"""The per-defense leaderboard over a REAL small matrix (runner records, not hand-made rows):
none, noise and two defenses, two purifiers, two identities. One row per defense ranked by its
worst case over purifier x attack, with CIs and p; one JSON entry per defense; a static page
built from those files alone; the Streamlit page on it, in AppTest and in real Chromium (here,
not in test_leaderboard_browser.py, so that one pytest-xdist worker builds the matrix once)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import MATRIX_IDS
from playwright.sync_api import expect
from test_leaderboard_browser import _browser, _serve, _shot

from leaderboard import data as D
from leaderboard import pooled as P
from leaderboard.ranking import entries, worst_case_table
from metrics.fid import pooled_fid

APP = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")

POOLED = "fid[dlib-face,pooling=pooled]"  # in conftest.MATRIX_SMALL


@pytest.fixture(scope="module")
def matrix(small_matrix):
    return small_matrix


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
    assert advdm["rank_metric"] == "idr[dlib]"  # identity metrics first (FDFR ties at 0 in the face world)
    assert advdm["identities"] == sorted(MATRIX_IDS) and "baseline failed" not in advdm["flags"]

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


def test_pooled_fid_pools_every_identity_of_a_combination(matrix):
    """One FID per defense and purifier x attack over both identities' features together (the cells
    store features, no value of their own), equal to metrics.fid.pooled_fid over the same cells."""
    home, _ = matrix
    records, _ = D.load_records(home)
    cells = D.cells_frame(records)
    (group,) = cells["protocol_group"].unique()
    assert P.pooled_metric_ids(records) == [POOLED]
    assert all(r["metrics"][POOLED]["value"] is None for r in records)  # a pooled cell has no value alone
    table = P.pooled_fid_table(records, cells, group, POOLED).set_index(["defense", "combo"])
    assert {d for d, _ in table.index} >= {"none", "advdm", "aspl", "noise (eps=8.0)"}  # and the companions' noise
    labels = cells.set_index("cell_key")
    for (defense, combo), row in table.iterrows():
        members = [r for r in records if labels.loc[r["cell_key"], "defense_label"] == defense
                   and f"{labels.loc[r['cell_key'], 'purifier_label']} · {labels.loc[r['cell_key'], 'attack_label']}" == combo]
        assert row["identities"] == 2 and len(members) == 2
        expected = pooled_fid([r["metrics"][POOLED] for r in members])
        assert (row["status"] == "ok") == (expected.status == "ok"), (row["status"], expected.status)
        if expected.status == "ok":
            assert row["fid"] == pytest.approx(expected.value) and row["n_generated"] == expected.extra["n_generated"]
            per_id = [pooled_fid([r["metrics"][POOLED]]).value for r in members]
            assert row["fid"] != pytest.approx(sum(per_id) / 2)  # pooling is not the mean of per-identity FIDs
    assert (table["status"] == "ok").sum() >= len(table) / 2, table["status"]  # faces found: the check above ran
    assert (table.xs("none", level="defense")["vs_none"].dropna() == 0).all()
    entry = next(e for e in entries(records, group) if e["defense"] == "advdm")
    assert set(entry["pooled"][POOLED]["by_combination"]) == {"none · dreambooth", "jpeg · dreambooth"}


def test_page_ranks_defenses_and_shows_one_identity_across_defenses(matrix, monkeypatch):
    """The Streamlit page over the real matrix: the per-defense ranking table, the pooled FID
    table, and the image grid with one column per defense for one identity and seed."""
    from streamlit.testing.v1 import AppTest

    home, _ = matrix
    monkeypatch.setenv("BENCH_LEADERBOARD_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    ranking = at.table[0].value
    assert set(ranking["defense"]) == {"advdm", "aspl", "noise (eps=8.0)", "none (reference)"}
    assert {"jpeg · dreambooth", "none · dreambooth", "worst case [95% CI]", "p vs none", "LPIPS", "ΔE00"} <= set(ranking.columns)
    assert any(f"**Pooled FID** `{POOLED}`" in m.value for m in at.markdown)

    at.sidebar.radio(key="page").set_value("Image grid").run()
    assert not at.exception, at.exception
    heads = [m.value for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]
    assert heads[0] == "**none**" and heads[-2:] == ["**advdm**", "**aspl**"]  # the references first
    assert "**noise (eps=8.0)**" in heads and all(h.startswith("**noise") for h in heads[1:-2])
    captions = [c for img in at.get("image") for c in img.captions]
    generated = [c for c in captions if c.startswith("generated:")]
    assert len(generated) == 2 * len(heads) and len(set(generated)) == 2  # same prompts and seeds in every column
    diffs = [int(c.split("max ")[1].split("/")[0]) for c in captions if c.startswith("|Δ|")]
    assert len(diffs) == len(heads) and diffs[0] == 0 and 0 < max(diffs) <= 16  # none changes nothing; within the budget


def test_real_matrix_ranked_by_worst_case_with_cis_and_the_grid(small_matrix, tmp_path):
    """Over the runner records of a real small matrix (none, noise, advdm, aspl x none, jpeg x two
    identities; conftest.small_matrix) the page shows one row per defense in the order of the
    worst case, each with its CI, and the image grid of one identity across every defense."""
    from leaderboard.ranking import default_metric

    home, _ = small_matrix
    records, _ = D.load_records(home)
    cells, metrics = D.cells_frame(records), D.metrics_frame(records)
    (group,) = cells["protocol_group"].unique()
    expected = worst_case_table(records, cells, group, default_metric(records, cells, metrics, group))
    first_id = sorted(MATRIX_IDS)[0]
    columns = D.grid_columns(cells, group, first_id, 0, "none", "dreambooth")
    with _serve(home, tmp_path) as url, _browser() as page:
        page.goto(f"{url}/?page=main")
        ranking = page.locator("[data-testid=stTable]").first
        expect(ranking).to_contain_text("worst case [95% CI]", timeout=90000)  # the first load computes the bootstrap CIs
        header = [t.strip() for t in ranking.locator("thead th").all_inner_texts()]
        rows = [[c.strip() for c in tr.locator("td,th").all_inner_texts()] for tr in ranking.locator("tbody tr").all()]
        header = header[len(header) - len(rows[0]):]  # an index header cell, if any
        assert [r[header.index("defense")] for r in rows] == list(expected["defense"])  # ranked by the worst case
        worst = [r[header.index("worst case [95% CI]")] for r in rows]
        assert all(re.fullmatch(r"\S+ \[\S+, \S+\]", w) for w in worst[:-1]), worst  # every defense with its CI
        assert rows[-1][header.index("defense")] == "none (reference)"
        _shot(page, tmp_path, "matrix-main")

        page.goto(f"{url}/?page=grid")
        expect(page.get_by_text("Image grid: one identity, one seed, every defense")).to_be_visible(timeout=60000)
        expect(page.locator("[data-testid=stImage] img")).to_have_count(5 * len(columns), timeout=60000)  # clean, protected, |Δ|, 2 generated
        assert page.evaluate("Array.from(document.querySelectorAll('[data-testid=stImage] img')).every(i => i.complete && i.naturalWidth > 0)")
        for label in columns["defense_label"]:
            expect(page.get_by_text(label, exact=True).first).to_be_visible()
        _shot(page, tmp_path, "matrix-grid")
