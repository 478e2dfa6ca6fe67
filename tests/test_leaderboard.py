"""Leaderboard: pure data functions, exports, reported numbers, and the Streamlit page
through AppTest on a seeded results home (tests/leaderboard_seed.py; no model runs)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from leaderboard import data as D
from leaderboard import export as E
from leaderboard import reported as R
from leaderboard_seed import BRISQUE_REASON, LPIPS_REASON, PAPER, PERTURB, TINY, make_record, seed_home

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "leaderboard" / "app.py")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    home = tmp_path_factory.mktemp("lb") / "home"
    recs = seed_home(home)
    records, problems = D.load_records(home)
    assert problems == []
    return home, recs, D.cells_frame(records), D.metrics_frame(records)


def _app(home: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("BENCH_LEADERBOARD_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


# ------------------------------------------------------------------ pure functions
def test_frames_status_and_directions(seeded):
    _, _, cells, metrics = seeded
    assert len(cells) == 14 and set(cells["protocol_group"]) == {TINY, PAPER}
    m = metrics.set_index(["cell_key", "metric_id"])
    bad = metrics[(metrics["metric_id"] == "brisque[libsvm]") & (metrics["status"] != "ok")]
    assert len(bad) == 2 and set(bad["status"]) == {"unavailable"} and set(bad["reason"]) == {BRISQUE_REASON}
    assert bad["value"].isna().all()
    # a defense wants ISM low (attacker's higher_is_better=True), FDFR and BRISQUE high
    dirs = metrics.groupby("metric_id")["defense_dir"].first().to_dict()
    assert dirs == {"ism[dlib]": -1, "fdfr[dlib]": 1, "brisque[libsvm]": 1}
    assert not m.empty


def test_metric_states_from_record_fields():
    rec = {"cell_key": "k", "metrics": {
        "ism[x]": {"value": None, "status": "ok", "higher_is_better": True, "extra": {"undefined": "no face"}},
        "fid[x]": {"value": None, "status": "unavailable: no Inception weights", "higher_is_better": False},
        "psnr": {"value": 30.0, "status": "ok", "higher_is_better": True},
        "linf": {"value": 8.0, "status": "ok", "higher_is_better": None},
        "odd[x]": {"value": "12", "status": "ok", "higher_is_better": True}}}
    df = D.metrics_frame([rec]).set_index("metric_id")
    assert (df.loc["ism[x]", "status"], df.loc["ism[x]", "reason"]) == ("undefined", "no face")
    assert (df.loc["fid[x]", "status"], df.loc["fid[x]", "reason"]) == ("unavailable", "no Inception weights")
    assert df.loc["odd[x]", "status"] == "unavailable" and math.isnan(df.loc["odd[x]", "value"])
    assert df.loc["psnr", "defense_dir"] == 1  # protection-side fidelity: a defense wants it high
    assert df.loc["linf", "defense_dir"] == 0
    assert D.fmt(math.nan, "unavailable") == "unavailable" and D.fmt(math.nan, "undefined") == "undefined"
    assert D.fmt(float("inf")) == "∞" and D.fmt(0.123456) == "0.1235"


def test_control_identity_numbers_become_neutral_columns():
    """A model-level defense's non-target identity (protected vs base model) is shown, never ranked."""
    m = {"value": 0.5, "status": "ok", "higher_is_better": True, "target": "generation"}
    rec = {"cell_key": "k", "metrics": {"ism[x]": m},
           "control": {"identity": "other", "protected": {"metrics": {"ism[x]": {**m, "value": 0.48}}},
                       "base": {"metrics": {"ism[x]": m}}}}
    df = D.metrics_frame([rec]).set_index("metric_id")
    assert df.loc["ism[x]", "defense_dir"] == -1
    assert df.loc["control/protected: ism[x]", "value"] == 0.48 and df.loc["control/base: ism[x]", "value"] == 0.5
    assert (df.loc["control/protected: ism[x]", "defense_dir"], df.loc["control/protected: ism[x]", "target"]) == (0, "control")
    table = D.control_table(rec)
    assert table.to_dict("records") == [{"metric": "ism[x]", "protected model": "0.48", "base model": "0.5"}]
    rec["metrics"]["ism[x]"]["per_image"] = [0.4, None]
    rec["stages"] = {"generate": {"images": [{"prompt": "a photo of sks person"}, {"prompt": "sks person with a dog"}]}}
    assert D.per_image(rec).to_dict("list") == {"prompt": ["a photo of sks person", "sks person with a dog"],
                                                "ism[x]": ["0.4", "undefined"]}


def test_labels_name_differing_params(seeded):
    home, _, cells, _ = seeded
    r8 = make_record(home, TINY, "tiny", "id1", "advdm", "none", 0.3)
    r8["protocol"]["defense"]["params"]["eps"] = 8.0
    df = D.cells_frame([r8, make_record(home, TINY, "tiny", "id1", "advdm", "none", 0.3)])
    assert sorted(df["defense_label"]) == ["advdm (eps=16.0)", "advdm (eps=8.0)"]
    assert set(cells["defense_label"]) == {"none", "advdm", "aspl"}  # one setting each: plain names


def test_main_table_ranks_within_one_group_only(seeded):
    _, _, cells, metrics = seeded
    t = D.main_table(cells, metrics, TINY)
    assert len(t.frame) == 6 and t.metric_cols == ["ism[dlib]", "fdfr[dlib]", "brisque[libsvm]"]
    ranked = D.rank(t, "ism[dlib]")
    order = [(d, p) for d, p, _ in ranked.index]
    assert order[:4] == [("aspl", "none"), ("advdm", "none"), ("aspl", "jpeg"), ("advdm", "jpeg")]
    assert ranked["ism[dlib]"].iloc[0] == pytest.approx(0.15) and ranked["rank"].iloc[0] == 1
    # PAPER's advdm (ISM 0.05) would be first if the groups were mixed: it is not in TINY's table
    assert ranked["ism[dlib]"].min() == pytest.approx(0.15)
    p = D.rank(D.main_table(cells, metrics, PAPER), "ism[dlib]")
    assert list(p.index.get_level_values(0)) == ["advdm", "none"] and list(p["cells"]) == [1, 1]
    # rows without a number rank last, and the word stays a word
    b = D.rank(t, "brisque[libsvm]")
    assert b.index[-1][:2] == ("aspl", "jpeg") and math.isnan(b["rank"].iloc[-1])
    shown = D.display_frame(t, b)
    assert shown.iloc[-1]["brisque[libsvm] ↑"] == "unavailable"
    assert ("aspl / jpeg / dreambooth", "brisque[libsvm]") in t.reasons
    with pytest.raises(ValueError):
        D.rank(t, "nonexistent")


def test_partial_aggregation_is_marked(seeded):
    home, _, _, _ = seeded
    a = make_record(home, TINY, "tiny", "id1", "aspl", "jpeg", 0.4)
    b = make_record(home, TINY, "tiny", "id2", "advdm", "none", 0.2)
    b["protocol"]["defense"]["name"], b["cell_key"] = "aspl", "other"
    b["protocol"]["purifier"] = a["protocol"]["purifier"]
    b["metrics"]["brisque[libsvm]"] = {"value": 50.0, "status": "ok", "higher_is_better": False}
    cells, metrics = D.cells_frame([a, b]), D.metrics_frame([a, b])
    t = D.main_table(cells, metrics, TINY)
    key = ("aspl", "jpeg", "dreambooth")
    assert t.status.loc[key, "brisque[libsvm]"] == "partial" and t.frame.loc[key, "brisque[libsvm]"] == 50.0
    assert D.display_frame(t)["brisque[libsvm] ↑"].iloc[0] == "50 *"


def test_filters_heatmap_and_cost(seeded):
    _, _, cells, metrics = seeded
    only = D.filter_cells(cells, purifier_label=["jpeg"], profile=["tiny"])
    assert set(only["purifier_label"]) == {"jpeg"} and set(only["protocol_group"]) == {TINY} and len(only) == 6
    assert len(D.filter_cells(cells, profile=[], dataset=None)) == 14
    values, status = D.heatmap(cells, metrics, TINY, "dreambooth", "ism[dlib]")
    assert values.loc["advdm", "none"] == pytest.approx(0.25) and values.loc["advdm", "jpeg"] == pytest.approx(0.40)
    assert values.shape == (3, 2) and (status == "ok").all().all()
    assert list(values.index) == ["none", "advdm", "aspl"] and list(values.columns) == ["none", "jpeg"]
    _, bstatus = D.heatmap(cells, metrics, TINY, "dreambooth", "brisque[libsvm]")
    assert bstatus.loc["aspl", "jpeg"] == "unavailable"
    cost = D.cost_protection(cells, metrics, TINY, "ism[dlib]").set_index(["defense", "purifier"])
    assert cost.loc[("advdm", "none"), "protection"] == pytest.approx(0.55 - 0.25)  # similarity drop vs none
    assert cost.loc[("aspl", "jpeg"), "protection"] == pytest.approx(0.55 - 0.35)
    assert cost.loc[("aspl", "none"), "seconds_per_image"] == 5.0
    assert cost.loc[("none", "none"), "protection"] == pytest.approx(0.0)
    lone = D.cost_protection(cells[cells["defense"] != "none"], metrics, TINY, "ism[dlib]")
    assert lone["protection"].isna().all() and "no `none` baseline" in lone["note"].iloc[0]


def test_drilldown_images_perturbation_and_per_identity(seeded):
    home, recs, cells, metrics = seeded
    rec = recs[f"{TINY}/id1/advdm/jpeg"]
    imgs = D.cell_images(home, rec)
    assert [len(imgs["clean"]), len(imgs["protected"]), len(imgs["generated"])] == [2, 2, 2]
    assert imgs["purified"][0][0] == "jpeg" and len(imgs["purified"][0][1]) == 2
    assert all(p.is_relative_to(home.resolve() / "artifacts") for p in imgs["clean"] + imgs["protected"])
    assert imgs["generated"][1][1] == "a photo of sks person (seed 1)"
    (c, p), _ = D.pair_by_name(imgs["clean"], imgs["protected"])
    amp, linf = D.perturbation_map(D.read_rgb(c), D.read_rgb(p), D.default_gain(16.0))
    assert linf == PERTURB and amp.max() == round(PERTURB * 255 / 16) and amp[1, 1].max() == 0
    with pytest.raises(ValueError):
        D.perturbation_map(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8), 1.0)
    per = D.per_identity(cells, metrics, rec)
    assert list(per["identity"]) == ["id1", "id2"] and list(per["ism[dlib]"]) == ["0.45", "0.35"]
    assert list(D.per_image(rec)["ism[dlib]"]) == ["0.45", "0.45"]


@pytest.mark.parametrize("key", ["../../etc", "../../../../../../etc", "..", "a/b", "/etc", "", None, ".hidden"])
def test_artifact_keys_outside_the_store_are_refused(seeded, key):
    home, recs, _, _ = seeded
    with pytest.raises(D.UnsafePath):
        D.resolve_artifact(home, "defense", key, "images")
    evil = json.loads(json.dumps(recs[f"{TINY}/id1/advdm/none"], default=str))
    evil["stages"]["defense"]["artifact"] = key
    with pytest.raises(D.UnsafePath):
        D.cell_images(home, evil)


def test_symlink_and_file_names_cannot_escape(seeded, tmp_path):
    home, recs, _, _ = seeded
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"not yours")
    link = home / "artifacts" / "defense" / "linkkey"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(D.UnsafePath):
        D.resolve_artifact(home, "defense", "linkkey", "x.png")
    evil = json.loads(json.dumps(recs[f"{TINY}/id1/none/none"], default=str))
    evil["stages"]["generate"]["images"][0]["file"] = "../../../../etc/passwd"
    with pytest.raises(D.UnsafePath):
        D.cell_images(home, evil)
    with pytest.raises(D.UnsafePath):
        D.resolve_artifact(home, "../results", "records")


def test_db_is_read_only_and_matches_records(seeded):
    home, _, _, _ = seeded
    db = home / "results" / "results.db"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    cells, metrics = D.load_db(home)
    assert len(cells) == 14 and len(metrics) == 14 * 3
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    records, _ = D.load_records(home)
    assert D.index_problems(records, cells) == []
    assert D.index_problems(records[:-1], cells) == [f"{records[-1]['cell_key']}: indexed in results.db but no readable record"]


def test_unreadable_records_are_reported_not_loaded(tmp_path):
    folder = tmp_path / "results" / "records"
    folder.mkdir(parents=True)
    (folder / "abc.json").write_text("{not json")
    (folder / "def.json").write_text(json.dumps({"cell_key": "zzz", "protocol": {}, "protocol_group": "g", "stages": {}, "metrics": {}}))
    records, problems = D.load_records(tmp_path)
    assert records == [] and len(problems) == 2 and "does not match" in problems[1]


def test_submissions_listing(tmp_path, seeded):
    home, recs, _, _ = seeded
    assert D.list_submissions(tmp_path).empty
    sub = home / "submissions"
    sub.mkdir(exist_ok=True)
    keys = [recs[f"{TINY}/id1/advdm/none"]["cell_key"], "notinthishome"]
    (sub / "0123456789abcdef.json").write_text(json.dumps({"defense": "advdm", "plugin_version": "1", "records": keys,
                                                           "bundle_hash": "0123456789abcdef" * 4}))
    df = D.list_submissions(home)
    row = df.iloc[0]
    assert (row["submission"], row["defense"], row["records"], row["in results"]) == ("0123456789abcdef", "advdm", 2, 1)
    assert row["bundle_hash"] == "0123456789abcdef"


# ------------------------------------------------------------------------ exports
def test_exports_group_by_protocol(seeded, tmp_path):
    home = seeded[0]
    md = E.export(home, "md", tmp_path / "t.md")
    assert (tmp_path / "t.md").read_text() == md
    tiny_part, paper_part = md.split(f"## Protocol group {PAPER}")
    assert f"## Protocol group {TINY}" in tiny_part and "profile tiny" in tiny_part and "profile paper" in paper_part
    assert "| aspl | none | dreambooth | 1 |" in tiny_part and "| advdm | none | dreambooth | 1 |" in paper_part
    assert "unavailable" in tiny_part and "ism[dlib] ↓" in md
    tex = E.export(home, "latex")
    assert tex.count("\\begin{table}") == 2 and "ism[dlib] $\\downarrow$" in tex and "profile paper" in tex
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(E.export(home, "csv"))))
    assert len(rows) == 8 and {r["protocol_group"] for r in rows} == {TINY, PAPER}
    first = rows[0]
    assert (first["defense"], first["rank"]) == ("aspl", "1") and float(first["ism[dlib] ↓"]) == pytest.approx(0.15)
    assert [r["brisque[libsvm] ↑"] for r in rows if (r["defense"], r["purifier"]) == ("aspl", "jpeg")] == ["unavailable"]
    with pytest.raises(ValueError):
        E.export(home, "pdf")
    assert E.export(tmp_path / "empty", "csv") == ""


# ----------------------------------------------------------------------- reported
def test_reported_numbers_are_transcribed_with_citations():
    sources, rep = R.load()
    assert set(sources) == {"dladiff", "diffshortcut", "rid"}
    assert rep["citation"].str.contains("Table|Results|Abstract").all()

    def one(block, row, metric):
        hit = rep[(rep["block"] == block) & (rep["row"] == row) & (rep["metric"] == metric)]
        assert len(hit) == 1, (block, row, metric)
        return hit.iloc[0]

    assert one("dladiff-t1-celebahq-photo", "Ours", "ISM")["value"] == 0.096
    assert one("dladiff-t1-vggface2-dslr", "Anti-diffusion", "FID")["value"] == 160.7
    assert math.isnan(one("dladiff-t1-celebahq-photo", "w/o Protect", "MOS")["value"])
    assert one("dladiff-t3-sd15", "DisDiff", "NSFWR")["value"] == 0.481
    assert one("dladiff-t4-vggface2-instantid", "Ours", "ISM_gen")["value"] == 0.058
    q = one("diffshortcut-t1-metacloak", "Ours", "Q")
    assert (q["value"], q["std"], q["significant"], q["purifier"], q["defense"]) == (0.37, 0.08, True, "codeformer-sr", "metacloak")
    clean = one("diffshortcut-t1-advdm", "Clean", "IMS")
    assert (clean["defense"], clean["purifier"]) == ("none", "none")
    assert one("diffshortcut-t2", "GrIDPure", "Time cost (s)")["value"] == 92.75
    speed = one("rid-speed", "Anti-DB / AdvDM (optimization-based)", "s/image (A100 GPU)")
    assert (speed["value"], speed["qualifier"]) == (500.0, ">")
    assert one("rid-personalization", "clean (perturbation 0)", "BRISQUE")["value"] == 11.91
    assert len(rep) > 380
    with pytest.raises(ValueError):
        R.parse_value("about half")


def test_reported_vs_ours_labels_protocol_difference(seeded):
    _, _, cells, metrics = seeded
    _, rep = R.load()
    rows = rep[(rep["block"] == "dladiff-t1-celebahq-photo") & (rep["row"].isin(["w/o Protect", "Anti-DB", "MIST"]))]
    cmp = R.compare(rows, cells, metrics)
    fdr_none = cmp[(cmp["row"] == "w/o Protect") & (cmp["metric"] == "FDR")]
    # ours: FDFR of `none` is 0 in both groups -> detection rate 1.0; gap vs 0.996
    assert set(fdr_none["group"]) == {TINY, PAPER} and fdr_none["ours"].tolist() == [1.0, 1.0]
    assert fdr_none["gap"].iloc[0] == pytest.approx(1.0 - 0.996)
    assert fdr_none.set_index("group").loc[TINY, "comparison"].startswith("protocols differ: tiny vs paper")
    assert fdr_none.set_index("group").loc[PAPER, "comparison"].startswith("same profile")
    ism_none = cmp[(cmp["row"] == "w/o Protect") & (cmp["metric"] == "ISM")].set_index("group")
    assert ism_none.loc[TINY, "ours"] == pytest.approx(0.55) and ism_none.loc[PAPER, "ours"] == pytest.approx(0.70)
    aspl = cmp[(cmp["row"] == "Anti-DB") & (cmp["metric"] == "ISM")]
    # Table 1 has no purifier: only our aspl cells without a purifier count (ISM 0.10, 0.20)
    assert aspl["group"].tolist() == [TINY] and aspl["ours"].iloc[0] == pytest.approx(0.15)
    mist = cmp[(cmp["row"] == "MIST") & cmp["metric"].isin(["FDR", "ISM", "FID"])]
    assert len(mist) == 3 and mist["comparison"].eq("no counterpart method in this benchmark").all()
    assert cmp[cmp["metric"] == "MOS"]["comparison"].eq("no counterpart metric in this benchmark").all()


# ------------------------------------------------------------------------ AppTest
TINY_TITLE = "tiny profile · zoo:tiny-sd · 64 px · anti-db, 2 identities · metrics by dlib, libsvm"
PAPER_TITLE = "paper profile · stabilityai/stable-diffusion-2-1-base · 512 px · anti-db, 1 identity · metrics by dlib, libsvm"


def test_app_main_table_groups_and_filters(seeded, monkeypatch):
    home = seeded[0]
    at = _app(home, monkeypatch)
    assert not at.exception
    assert [s.value for s in at.subheader] == [TINY_TITLE, PAPER_TITLE]  # readable titles ...
    assert any(c.value.startswith(f"protocol group {TINY} · profile tiny") and "64 px" in c.value for c in at.caption)  # ... hash as detail
    ranking, tiny, paper = (t.value for t in at.table)
    # one row per defense, ranked by the worst case over purifier x attack (ISM protection vs none)
    assert list(ranking["defense"]) == ["aspl", "advdm", "none (reference)"] and list(ranking["rank"][:2]) == ["1", "2"]
    assert ranking.iloc[0]["worst case [95% CI]"] == "0.2 [0.18, 0.22]" and ranking.iloc[0]["worst at"] == "jpeg · dreambooth"
    assert ranking.iloc[1]["worst case [95% CI]"] == "0.15 [0.13, 0.17]" and ranking.iloc[1]["none · dreambooth"] == "0.3"
    assert ranking.iloc[0]["p vs none"] == "0.5" and ranking.iloc[0]["n"] == "2"  # exact Wilcoxon, two identities
    assert ranking.iloc[0]["LPIPS"] == "unavailable" and ranking.iloc[0]["ΔE00"] == "1.5" and ranking.iloc[0]["peak MiB"] == "105"
    expanders = " ".join(m.value for e in at.expander for m in e.markdown)
    assert LPIPS_REASON in expanders and BRISQUE_REASON in expanders
    assert "[paper](https://example.org/aspl)" in expanders and "code: none published" in expanders
    assert any("No per-defense ranking" in i.value for i in at.info)  # the paper group has no paired comparison
    assert len(tiny) == 6 and len(paper) == 2  # two groups, their own tables: never one ranking
    assert list(tiny.iloc[0][["defense", "purifier", "rank", "ism[dlib] ↓"]]) == ["aspl", "none", "1", "0.15"]
    assert list(paper.iloc[0][["defense", "rank", "ism[dlib] ↓"]]) == ["advdm", "1", "0.05"]
    assert tiny.set_index(["defense", "purifier"]).loc[("aspl", "jpeg"), "brisque[libsvm] ↑"] == "unavailable"
    # re-sort by FDFR (↑): aspl rows first
    at.selectbox(key=f"rank-{TINY}").set_value("fdfr[dlib]").run()
    assert list(at.table[1].value["defense"][:2]) == ["aspl", "aspl"]
    # the ranking metric can be changed: worst-case FDFR protection (aspl +0.5, advdm +0.25 everywhere)
    at.selectbox(key=f"worst-{TINY}").set_value("fdfr[dlib]").run()
    assert list(at.table[0].value["worst case [95% CI]"][:2]) == ["0.5 [0.5, 0.5]", "0.25 [0.25, 0.25]"]
    # filters: purifier jpeg + profile tiny -> one group, jpeg rows only
    at.sidebar.multiselect(key="f-profile").set_value(["tiny"]).run()
    at.sidebar.multiselect(key="f-purifier_label").set_value(["jpeg"]).run()
    assert not at.exception
    assert [s.value for s in at.subheader] == [TINY_TITLE]
    assert len(at.table) == 2 and set(at.table[1].value["purifier"]) == {"jpeg"} and len(at.table[1].value) == 3
    assert [c for c in at.table[0].value.columns if " · " in c] == ["jpeg · dreambooth"]
    at.sidebar.multiselect(key="f-attack_label").set_value(["dreambooth"]).run()
    at.sidebar.multiselect(key="f-base_model").set_value(["stabilityai/stable-diffusion-2-1-base"]).run()
    assert any("no cell matches" in i.value for i in at.info)


def test_app_heatmap_cost_and_drilldown(seeded, monkeypatch):
    home, recs = seeded[0], seeded[1]
    at = _app(home, monkeypatch)
    at.sidebar.radio(key="page").set_value("Robustness heatmap").run()
    assert not at.exception
    assert at.selectbox(key="hm-metric").value == "ism[dlib]"  # identity similarity first
    hm = at.table[0].value  # index: defenses, columns: purifiers
    assert hm.loc["advdm", "none"] == "0.25" and hm.loc["advdm", "jpeg"] == "0.4" and hm.loc["aspl", "none"] == "0.15"
    at.selectbox(key="hm-metric").set_value("brisque[libsvm]").run()
    assert at.table[0].value.loc["aspl", "jpeg"] == "unavailable"
    at.selectbox(key="hm-group").set_value(PAPER).run()
    assert list(at.table[0].value.columns) == ["none"] and at.table[0].value.loc["advdm", "none"] == "30"

    at.sidebar.radio(key="page").set_value("Cost vs protection").run()
    assert not at.exception
    cost = at.table[0].value.set_index(["defense", "purifier"])
    assert cost.loc[("advdm", "none"), "protection"] == "0.3" and cost.loc[("advdm", "none"), "seconds_per_image"] == "2"

    at.sidebar.radio(key="page").set_value("Cell drill-down").run()
    key = recs[f"{TINY}/id2/advdm/jpeg"]["cell_key"]
    at.selectbox(key="cell-key").set_value(key).run()
    assert not at.exception and not at.error
    md = " ".join(m.value for m in at.markdown)
    for part in ("**clean (train)** (2 images)", "**protected** (2 images)", "**purified by jpeg** (2 images)",
                 "**generated** (2 images)", "perturbation |protected − clean|", "identity **id2**"):
        assert part in md, part
    tables = [t.value for t in at.table]
    per_id = next(t for t in tables if "identity" in t.columns)
    assert list(per_id["identity"]) == ["id1", "id2"] and list(per_id["ism[dlib]"]) == ["0.45", "0.35"]
    this = next(t for t in tables if "reason" in t.columns).set_index("metric")
    assert this.loc["ism[dlib] ↓", "value"] == "0.35"
    proto = json.loads(at.json[0].value)
    assert proto["defense"]["name"] == "advdm" and proto["purifier"][0]["name"] == "jpeg"

    at.sidebar.radio(key="page").set_value("Reported vs reproduced").run()
    assert not at.exception and len(at.dataframe) == 1
    at.selectbox(key="rep-src").set_value("dladiff").run()
    at.checkbox(key="rep-only").check().run()
    rep = at.dataframe[0].value
    fdr = rep[(rep["paper row"] == "w/o Protect") & (rep["metric"] == "FDR ↓")]
    assert len(fdr) > 0 and set(fdr["ours"]) == {"1"}  # 1 - FDFR of our `none` cells
    assert fdr["comparison"].str.startswith("protocols differ: tiny vs paper").any()
    at.sidebar.radio(key="page").set_value("Submissions").run()
    assert not at.exception


def test_app_refuses_a_record_pointing_outside(tmp_path, monkeypatch):
    home = tmp_path / "home"
    from bench.results import ResultsStore

    rec = make_record(home, TINY, "tiny", "id1", "advdm", "none", 0.3)
    rec["stages"]["defense"]["artifact"] = "../../etc"
    ResultsStore(home / "results").add(rec)
    at = _app(home, monkeypatch)
    assert len(at.table) == 1  # the numbers still show
    at.sidebar.radio(key="page").set_value("Cell drill-down").run()
    assert not at.exception
    assert any("refused" in e.value and "../../etc" in e.value for e in at.error)
    assert "**protected**" not in " ".join(m.value for m in at.markdown)


def test_app_imports_no_plugin_code(seeded):
    """Run the page in a fresh interpreter, then list what it imported."""
    code = (
        "import sys, json\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=60)\n"
        "at.run()\n"
        "for page in ('Robustness heatmap', 'Cost vs protection', 'Cell drill-down', 'Reported vs reproduced'):\n"
        "    at.sidebar.radio(key='page').set_value(page).run()\n"
        "assert not at.exception, at.exception\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('defenses', 'attacks', 'purifiers', 'metrics', 'bench', 'torch', 'diffusers')\n"
        "       and m not in ('bench', 'bench.stats')]  # bench.stats: the paired statistics, numpy/scipy only\n"
        "print(json.dumps(bad))\n"
    )
    env = {**os.environ, "BENCH_LEADERBOARD_HOME": str(seeded[0])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_app_empty_home_explains(tmp_path, monkeypatch):
    at = _app(tmp_path / "nothing", monkeypatch)
    assert any("No results yet" in i.value for i in at.info)
    assert not (tmp_path / "nothing").exists()  # looking never creates anything


def test_cli_export_and_leaderboard_errors(seeded, cli, tmp_path):
    home = seeded[0]
    res = cli("export", "--format", "md", "--home", str(home))
    assert res.returncode == 0, res.stderr
    assert f"## Protocol group {TINY}" in res.stdout and f"## Protocol group {PAPER}" in res.stdout
    out = tmp_path / "board.tex"
    res = cli("export", "--format", "latex", "--out", str(out), "--home", str(home))
    assert res.returncode == 0 and out.read_text().count("\\begin{table}") == 2
    bad = cli("export", "--format", "pdf", "--home", str(home))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: unknown format 'pdf'; choose one of csv, md, latex, json"]
    port = cli("leaderboard", "--port", "0", "--home", str(home))
    assert port.returncode == 2 and "out of range" in port.stderr


def test_entries_flag_white_box_metrics_and_unavailable_cells(tmp_path):
    """A defense that optimised against the encoder a metric uses (DLADiff's layer 2 and dlib)
    is flagged on that metric; a metric unavailable in some of a defense's cells is flagged with
    the count and the reason."""
    from leaderboard.ranking import entries, worst_case_table

    records = list(seed_home(tmp_path / "home").values())
    for r in records:
        if r["protocol"]["defense"]["name"] == "advdm":
            r["stages"]["defense"]["encoders_seen"] = ["dlib"]
    es = {e["defense"]: e for e in entries(records, TINY)}
    assert "metric encoder seen by the defense: ism[dlib] (dlib)" in es["advdm"]["flags"] and es["advdm"]["encoders_seen"] == ["dlib"]
    assert not any("encoder" in f for f in es["aspl"]["flags"])
    assert f"unavailable cells: brisque[libsvm] in 2 of 4 ({BRISQUE_REASON})" in es["aspl"]["flags"]
    notes = worst_case_table(records, D.cells_frame(records), TINY, "ism[dlib]").set_index("defense")["note"]
    assert "white-box" in notes["advdm"] and "white-box" not in notes["aspl"]
    assert D.white_box("fid[dlib-face,pooling=pooled]", "dlib") == "dlib" and D.white_box("ism[arcface]", "dlib") is None


def test_entries_carry_reported_vs_measured():
    """Each entry lists the seed papers' numbers its cells match, with the gap and whether the
    protocols are comparable (tiny vs paper: never)."""
    import tempfile

    from leaderboard.ranking import entries

    records = list(seed_home(Path(tempfile.mkdtemp()) / "home").values())
    aspl = next(e for e in entries(records, TINY) if e["defense"] == "aspl")
    rows = [r for r in aspl["reported_vs_measured"] if r["paper_row"] == "Anti-DB" and r["metric"] == "ISM"]
    assert rows and all(r["comparison"].startswith("protocols differ: tiny vs paper") for r in rows)
    assert any(r["ours"] == pytest.approx(0.15) and r["gap"] is not None for r in rows)
    json.dumps(aspl)  # the entry file is plain JSON
