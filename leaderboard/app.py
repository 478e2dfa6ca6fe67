"""The leaderboard page (Streamlit). Start it with `bench leaderboard [--home H] [--port N]`.

It reads the results home and nothing else: records, the SQLite index (read-only) and
the images of <home>/artifacts. It never imports plugin code, so looking at results
cannot run anyone's defense or metric. Results of different protocol groups are shown in
separate tables and never ranked together; each table names its protocol."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run leaderboard/app.py` from anywhere
    sys.path.insert(0, str(ROOT))

from leaderboard import data as D  # noqa: E402
from leaderboard import pooled as P  # noqa: E402
from leaderboard import ranking as K  # noqa: E402  (statistics from bench.stats: numerics only, no plugin)
from leaderboard import reported as R  # noqa: E402

PAGES = {
    "main": "Main table",
    "heatmap": "Robustness heatmap",
    "cost": "Cost vs protection",
    "grid": "Image grid",
    "cell": "Cell drill-down",
    "reported": "Reported vs reproduced",
    "submissions": "Submissions",
}
NOT_NUMBERS = ("unavailable", "undefined", "missing")
LEGEND = ("Arrows give the direction of **stronger protection** (↑ higher, ↓ lower): a defense wants "
          "identity similarity (ISM) low, face-detection failure (FDFR) and BRISQUE of the generated "
          "images high, and PSNR/SSIM of its protected images high. Values are means over identities "
          "and seeds. *unavailable* = the metric could not run; *undefined* = it ran but has no value "
          "(e.g. no face detected in any generated image); `*` = mean over part of the cells.")


# ------------------------------------------------------------------------ loading
def results_home() -> Path:
    """--home after `--` on the streamlit command line, else $BENCH_LEADERBOARD_HOME, $BENCH_HOME, ./.bench."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--home")
    args, _ = parser.parse_known_args(sys.argv[1:])
    home = args.home or os.environ.get("BENCH_LEADERBOARD_HOME") or os.environ.get("BENCH_HOME") or ".bench"
    return Path(home).expanduser().resolve()


def _stamp(home: Path) -> tuple:
    """Changes whenever a record is added, so the cache reloads."""
    folder = D.records_dir(home)
    files = list(folder.glob("*.json")) if folder.is_dir() else []
    db = home / "results" / "results.db"
    return (len(files), max((f.stat().st_mtime for f in files), default=0), db.stat().st_mtime if db.is_file() else 0)


@st.cache_data(show_spinner=False, max_entries=4)
def load(home: str, stamp: tuple):
    records, problems = D.load_records(Path(home))
    db_cells, _ = D.load_db(Path(home))
    problems += D.index_problems(records, db_cells)
    return {r["cell_key"]: r for r in records}, problems, D.cells_frame(records), D.metrics_frame(records)


@st.cache_data(show_spinner=False)
def load_reported():
    return R.load()


# ---------------------------------------------------------------------- rendering
def _grey_words(v: object) -> str:
    return "color: #888; font-style: italic" if str(v).rstrip(" *") in NOT_NUMBERS else ""


def show_table(df: pd.DataFrame) -> None:
    """A static table whose words stay words (st.dataframe would print None)."""
    st.table(df.style.map(_grey_words), hide_index=True)


def show_reasons(reasons: dict, title: str = "Why some values are not numbers") -> None:
    if reasons:
        with st.expander(f"{title} ({len(reasons)})"):
            for (row, metric), why in sorted(reasons.items()):
                st.markdown(f"- **{row}**, `{metric}`: {why}")


def protocol_header(cells: pd.DataFrame, group: str) -> None:
    """A readable title; the group hash and the full protocol line as the detail under it."""
    profile = cells.loc[cells["protocol_group"] == group, "profile"].iloc[0]
    st.subheader(D.group_title(cells, group))
    st.caption(D.describe_group(cells, group))
    if profile == "tiny":
        st.caption("Tiny profile: a 64 px toy model that runs offline on a CPU. Its numbers show the pipeline "
                   "works; they are never comparable with paper-profile numbers.")


def _big(img: np.ndarray, min_side: int = 160) -> np.ndarray:
    """Small (64 px) images upscaled with nearest neighbour so pixels stay visible."""
    k = max(1, math.ceil(min_side / max(1, min(img.shape[:2]))))
    return np.kron(img, np.ones((k, k, 1), dtype=np.uint8)) if k > 1 else img


def image_row(title: str, items: list[tuple[object, str]]) -> None:
    st.markdown(f"**{title}** ({len(items)} images)")
    for start in range(0, len(items), 6):  # grids of six per row
        cols = st.columns(6)
        for col, (img, cap) in zip(cols, items[start:start + 6]):
            col.image(_big(img if isinstance(img, np.ndarray) else D.read_rgb(img)), caption=cap)


# -------------------------------------------------------------------------- pages
RANKING = ("One row per defense, **ranked by its worst case** over the group's purifier × attack combinations "
           "(a defense is as strong as the strongest attack on it). Protection = the attacker's loss against the "
           "no-defense cell with the same identity, seed, purifier and attack (> 0: the defense hurt the attacker); "
           "mean over identities with its 95% bootstrap CI and the paired Wilcoxon p; *worst vs noise* is the same "
           "against equal-budget random noise. Budget, perceptibility (on the saved protected PNGs) and cost are "
           "means over the defense's cells.")


def ranking_section(records: list[dict], cells: pd.DataFrame, metrics: pd.DataFrame, group: str) -> None:
    shown = set(cells["cell_key"])
    group_records = [r for r in records if r.get("protocol_group") == group and r["cell_key"] in shown]
    if not any("compare" in r for r in group_records):
        st.info("No per-defense ranking for this group: its cells were run without their no-defense baseline "
                "and noise control (`bench run --compare`, the default), so no protection can be paired.")
        return
    t = D.main_table(cells, metrics, group)
    directed = [m for m in t.metric_cols if t.directions.get(m)]
    default = K.default_metric(group_records, cells, metrics, group)
    metric = st.selectbox("rank by the worst-case protection on", directed, index=directed.index(default) if default in directed else 0,
                          key=f"worst-{group}")
    table = K.worst_case_table(group_records, cells, group, metric)
    if table.empty:
        st.info(f"no defended cell of this group has `{metric}`")
        return
    st.markdown(f"**Leaderboard** — protection on `{metric}`. " + RANKING)
    shown, reasons = K.display_ranking(table)
    show_table(shown)
    st.caption(K.UNDEFINED_RULE[0].upper() + K.UNDEFINED_RULE[1:] + ".")
    show_reasons(reasons)
    curve = K.budget_curve(table)
    if not curve.empty:  # a budget sweep: rankings can flip with the budget
        import altair as alt

        st.markdown(f"**Protection against budget** (worst case of `{metric}`, defenses run at several budgets)")
        chart = alt.Chart(curve.dropna()).mark_line(point=True).encode(
            x=alt.X("budget:Q", title="budget (L-inf, /255)"), y=alt.Y("worst case:Q", title=f"worst-case protection on {metric}"),
            color="defense:N", tooltip=["label", "budget", "worst case"])
        st.altair_chart(chart, width="stretch")
    links = D.method_links(group_records)
    cited = [D.link_markdown(k.replace(":", " "), v) for k, v in sorted(links.items()) if k.startswith(("defense:", "attack:", "purifier:"))]
    if cited:
        with st.expander("methods: papers and code"):
            for line in cited:
                st.markdown(f"- {line}")


def pooled_section(records: list[dict], cells: pd.DataFrame, group: str) -> None:
    mine = [r for r in records if r.get("protocol_group") == group]
    for mid in P.pooled_metric_ids(mine):
        table = P.pooled_fid_table(mine, cells, group, mid)
        if table.empty:
            continue
        st.markdown(f"**Pooled FID** `{mid}` ↑ — {P.LABEL}; vs none = FID(defense) − FID(none), > 0 = protection")
        show_table(pd.DataFrame({
            "defense": table["defense"], "purifier · attack": table["combo"],
            "FID": [D.fmt(v, "ok" if s == "ok" else "unavailable") for v, s in zip(table["fid"], table["status"])],
            "vs none": [D.dash(v) for v in table["vs_none"]], "identities": table["identities"].astype(str),
            "generated": table["n_generated"].astype(str), "references": table["n_reference"].astype(str),
            "status": table["status"]}))


def page_main(records, cells, metrics):
    st.header("Main table")
    st.markdown(LEGEND)
    for group in D.groups_frame(cells)["protocol_group"]:
        protocol_header(cells, group)
        ranking_section(list(records.values()), cells, metrics, group)
        pooled_section(list(records.values()), cells, group)
        st.markdown("**All cells** of this group (one row per defense × purifier × attack, means over identities)")
        table = D.main_table(cells, metrics, group)
        rankable = [m for m in table.metric_cols if table.directions.get(m)]
        choice = st.selectbox("rank and sort by", ["(no ranking)", *rankable], key=f"rank-{group}",
                              index=1 if rankable else 0)
        frame = D.rank(table, choice) if choice in rankable else table.frame
        show_table(D.display_frame(table, frame))
        show_reasons(table.reasons)


def page_heatmap(cells, metrics):
    st.header("Robustness heatmap: defense × purifier")
    groups = list(D.groups_frame(cells)["protocol_group"])
    group = st.selectbox("protocol group", groups, format_func=lambda g: D.describe_group(cells, g), key="hm-group")
    sub = cells[cells["protocol_group"] == group]
    attack = st.selectbox("attack", sorted(sub["attack_label"].unique()), key="hm-attack")
    ids = sorted(metrics.loc[metrics["cell_key"].isin(sub["cell_key"]), "metric_id"].unique(),
                 key=lambda m: (m.split("[")[0] not in D.SIMILARITY_METRICS, m))  # identity similarity first
    if not ids:
        st.info("no metrics in this group")
        return
    metric = st.selectbox("metric", ids, key="hm-metric")
    protocol_header(cells, group)
    values, status = D.heatmap(cells, metrics, group, attack, metric)
    if values.empty:
        st.info("no cells for this attack")
        return
    d = D.main_table(sub[sub["attack_label"] == attack], metrics, group, [metric]).directions.get(metric, 0)
    st.markdown(f"`{metric}` {D.arrow(d)} under attack **{attack}** — darker = stronger protection. "
                "Empty = not run; words = no number.")
    long = []
    for dfn in values.index:
        for pur in values.columns:
            s = status.loc[dfn, pur]
            if s == "":
                continue
            v = values.loc[dfn, pur]
            long.append({"defense": dfn, "purifier": pur, "value": None if math.isnan(v) else float(v),
                         "protection": None if math.isnan(v) else float(v) * (d or 1), "shown": D.fmt(v, s)})
    chart_df = pd.DataFrame(long)
    try:
        import altair as alt

        base = alt.Chart(chart_df).encode(x=alt.X("purifier:N", title="purifier"), y=alt.Y("defense:N", title="defense"))
        rect = base.mark_rect().encode(color=alt.Color("protection:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                       tooltip=["defense", "purifier", "shown"])
        text = base.mark_text(fontSize=14).encode(text="shown:N")
        st.altair_chart((rect + text).properties(height=48 * len(values.index) + 40), width="stretch")
    except ImportError:  # altair ships with streamlit; the table below carries the same numbers
        pass
    shown = pd.DataFrame({c: [D.fmt(values.loc[i, c], status.loc[i, c]) if status.loc[i, c] else ""
                              for i in values.index] for c in values.columns}, index=values.index)
    shown.index.name = "defense \\ purifier"
    st.table(shown.style.map(_grey_words))


def page_cost(cells, metrics):
    st.header("Cost vs protection")
    st.markdown("Seconds per protected image (the defense stage, as measured) against the protection on an "
                "identity metric, relative to the `none` defense with the same purifier and attack in the "
                "same protocol group. For ISM the protection is the **similarity drop** ISM(none) − ISM(defense): "
                "positive = the defense makes the generated person less like the real one.")
    groups = list(D.groups_frame(cells)["protocol_group"])
    group = st.selectbox("protocol group", groups, format_func=lambda g: D.describe_group(cells, g), key="cost-group")
    sub_m = metrics[metrics["cell_key"].isin(cells.loc[cells["protocol_group"] == group, "cell_key"])]
    ids = sorted(sub_m.loc[sub_m["defense_dir"] != 0, "metric_id"].unique(),
                 key=lambda m: (m.split("[")[0] not in D.SIMILARITY_METRICS, m))
    if not ids:
        st.info("no metric with a direction in this group")
        return
    metric = st.selectbox("protection metric", ids, key="cost-metric")
    protocol_header(cells, group)
    df = D.cost_protection(cells, metrics, group, metric)
    plot = df.dropna(subset=["seconds_per_image", "protection"])
    if plot.empty:
        st.info("nothing to plot: every row lacks a `none` baseline, a time, or a numeric value (see the table)")
    else:
        import altair as alt

        chart = alt.Chart(plot).mark_point(size=120, filled=True).encode(
            x=alt.X("seconds_per_image:Q", title="defense seconds per image"),
            y=alt.Y("protection:Q", title=f"protection on {metric} vs none"),
            color="defense:N", shape="purifier:N", tooltip=list(plot.columns))
        st.altair_chart(chart, width="stretch")
    shown = df.copy()
    shown[metric] = [D.fmt(v, s) for v, s in zip(df[metric], df["status"])]
    for c in ("seconds_per_image", "value_none", "protection"):  # no number here = no baseline/time, not a metric state
        shown[c] = ["—" if pd.isna(v) else D.fmt(v) for v in df[c]]
    show_table(shown.drop(columns=["status"]))


def page_cell(cells, metrics, records, home: Path):
    st.header("Cell drill-down")
    labels = {row["cell_key"]: D.cell_label(row) for _, row in cells.sort_values(["protocol_group", "defense_label"]).iterrows()}
    keys = list(labels)
    wanted = st.query_params.get("cell")
    key = st.selectbox("cell", keys, index=keys.index(wanted) if wanted in keys else 0,
                       format_func=labels.get, key="cell-key")
    st.query_params["cell"] = key
    record = records[key]
    group = record["protocol_group"]
    protocol_header(cells, group)
    row = cells[cells["cell_key"] == key].iloc[0]
    st.markdown(f"**{row['defense_label']}** / purifier **{row['purifier_label']}** / attack **{row['attack_label']}** · "
                f"identity **{row['identity']}** · seed {row['seed']} · cell `{key}`")
    d = record["stages"].get("defense") or {}
    st.markdown(f"defense level {d.get('level', '?')} · budget {D.fmt(D._num(d.get('budget')))}/255 · measured L-inf "
                f"{D.fmt(D._num(d.get('measured_linf')))}/255 · PSNR {D.fmt(D._num(d.get('psnr')))} dB · "
                f"SSIM {D.fmt(D._num(d.get('ssim')))} · {D.fmt(D._num(d.get('seconds_per_image')))} s/image")

    st.subheader("Metrics of this cell")
    mine = metrics[metrics["cell_key"] == key]
    order = [m.get("id") for m in record["protocol"].get("metrics") or []]
    mine = mine.assign(_o=[order.index(m) if m in order else len(order) for m in mine["metric_id"]]).sort_values("_o")
    show_table(pd.DataFrame({
        "metric": [f"{m} {D.arrow(int(x))}".strip() for m, x in zip(mine["metric_id"], mine["defense_dir"])],
        "value": [D.fmt(v, s) for v, s in zip(mine["value"], mine["status"])],
        "status": list(mine["status"]), "reason": list(mine["reason"])}))

    st.subheader("Images")
    try:
        imgs = D.cell_images(home, record)
    except D.UnsafePath as exc:
        st.error(f"refused to read images of this cell: {exc}")
        imgs = None
    if imgs is not None:
        for note in imgs["notes"]:
            st.info(note)
        image_row("clean (train)", [(p, p.name) for p in imgs["clean"]])
        image_row("protected", [(p, p.name) for p in imgs["protected"]])
        pairs = D.pair_by_name(imgs["clean"], imgs["protected"])
        if pairs:
            budget = D._num(d.get("budget"))
            gain = st.slider("perturbation amplification", 1.0, 100.0, float(min(100.0, D.default_gain(budget))), key="gain")
            maps = []
            for c, p in pairs:
                try:
                    amp, linf = D.perturbation_map(D.read_rgb(c), D.read_rgb(p), gain)
                    maps.append((amp, f"{p.name}: max {linf}/255"))
                except ValueError as exc:
                    st.warning(f"{p.name}: {exc}")
            image_row(f"perturbation |protected − clean| × {gain:.3g}", maps)
        for name, paths in imgs["purified"]:
            image_row(f"purified by {name}", [(p, p.name) for p in paths])
        image_row("generated", [(p, cap) for p, cap in imgs["generated"]])

    if record.get("control"):
        st.subheader(f"Control: non-target identity {record['control'].get('identity')!r}")
        st.caption("personalized on the protected model vs on the base model; a sound model-level defense keeps these close")
        show_table(D.control_table(record))

    st.subheader("Per identity (same group, defense, purifier and attack)")
    show_table(D.per_identity(cells, metrics, record))
    per_img = D.per_image(record)
    if not per_img.empty:
        st.subheader("Per generated image")
        show_table(per_img)
    st.subheader("Protocol")
    st.json(record["protocol"], expanded=True)
    with st.expander("full record (stages, recipe, environment)"):
        st.json({k: v for k, v in record.items() if k != "protocol"}, expanded=False)


def page_grid(cells, records, home: Path):
    st.header("Image grid: one identity, one seed, every defense")
    st.markdown("Each column is one defense on the same identity and seed, under the same purifier and attack: "
                "the clean training image, the protected one, their difference amplified, the purified image and "
                "the first images generated after personalization (same prompts and sampling seeds in every column).")
    groups = list(D.groups_frame(cells)["protocol_group"])
    group = st.selectbox("protocol group", groups, format_func=lambda g: D.group_title(cells, g), key="grid-group")
    sub = cells[cells["protocol_group"] == group]
    identity = st.selectbox("identity", sorted(sub["identity"].astype(str).unique()), key="grid-identity")
    sub = sub[sub["identity"] == identity]
    seed = st.selectbox("seed", sorted(sub["seed"].unique()), key="grid-seed")
    sub = sub[sub["seed"] == seed]
    purifier = st.selectbox("purifier", sorted(sub["purifier_label"].unique(), key=lambda p: (p != "none", p)), key="grid-purifier")
    attack = st.selectbox("attack", sorted(sub.loc[sub["purifier_label"] == purifier, "attack_label"].unique()), key="grid-attack")
    cols = D.grid_columns(cells, group, identity, seed, purifier, attack)
    protocol_header(cells, group)
    try:
        imgs = {k: D.cell_images(home, records[k]) for k in cols["cell_key"]}
    except D.UnsafePath as exc:
        st.error(f"refused to read images: {exc}")
        return
    names = sorted({p.name for i in imgs.values() for p in i["clean"]})
    if not names:
        st.info("no clean images of these cells in the artifact store (pruned with `bench cache --prune`?)")
        return
    name = st.selectbox("training image", names, key="grid-image")
    budgets = [b for b in cols["budget"] if b and not math.isnan(b)]
    gain = st.slider("perturbation amplification", 1.0, 100.0, float(min(100.0, D.default_gain(max(budgets, default=0)))), key="grid-gain")
    n_gen = st.slider("generated images per column", 1, 6, 2, key="grid-ngen")
    for col, (_, row) in zip(st.columns(len(cols)), cols.iterrows()):
        i = imgs[row["cell_key"]]
        col.markdown(f"**{row['defense_label']}**")
        clean, prot = D.pick(i["clean"], name), D.pick(i["protected"], name)
        shown = [(clean, "clean")] if clean else []
        if prot is not None:
            shown.append((prot, f"protected (budget {D.fmt(row['budget'])}/255)"))
            if clean is not None:
                try:
                    amp, linf = D.perturbation_map(D.read_rgb(clean), D.read_rgb(prot), gain)
                    shown.append((amp, f"|Δ| × {gain:.3g}, max {linf}/255"))
                except ValueError as exc:
                    col.warning(str(exc))
        else:
            col.caption(i["notes"][0] if i["notes"] else "no protected image")
        for pname, paths in i["purified"]:
            p = D.pick(paths, name) if pname != "none" else None  # `none` passes the protected image on
            if p is not None:
                shown.append((p, f"purified by {pname}"))
        shown += [(p, f"generated: {cap}") for p, cap in i["generated"][:n_gen]]
        for img, cap in shown:
            col.image(_big(img if isinstance(img, np.ndarray) else D.read_rgb(img)), caption=cap)


def page_reported(cells, metrics):
    st.header("Reported vs reproduced")
    sources, rep = load_reported()
    st.markdown("The seed papers' numbers as printed (stored in `leaderboard/reported.yaml` with table "
                "references), beside the mean of our matching cells in each protocol group. "
                "gap = ours − reported. **A tiny-profile number is not comparable with a paper number** "
                "(64 px toy model vs SD at 512 px): such rows are labelled *protocols differ* and only show that "
                "the pipeline runs.")
    src = st.selectbox("paper", ["all", *sources], format_func=lambda s: s if s == "all" else f"{s}: {sources[s]['title']}",
                       key="rep-src")
    if src != "all":
        rep = rep[rep["source"] == src]
    cmp = R.compare(rep, cells, metrics)
    only = st.checkbox("only rows with a number of ours", value=False, key="rep-only")
    if only:
        cmp = cmp[cmp["ours"].notna()]
    if cmp.empty:
        st.info("no reported numbers for this choice")
        return
    dash = lambda col: ["—" if R._missing(v) else (D.fmt(v) if isinstance(v, float) else str(v)) for v in cmp[col]]  # noqa: E731
    shown = pd.DataFrame({
        "where": [f"{s}: {r}" for s, r in zip(cmp["source"], cmp["ref"])], "paper row": cmp["row"], "metric": [f"{m} {a}".strip() for m, a in zip(cmp["metric"], cmp["arrow"])],
        "reported": cmp["raw"], "ours": dash("ours"), "gap": dash("gap"), "comparison": cmp["comparison"],
        "defense": dash("defense"), "purifier": dash("purifier"), "attack": dash("attack"),
        "our metric": dash("ours_metric"), "our protocol": dash("our_protocol"), "paper protocol": cmp["paper_protocol"]})
    st.caption("defense / purifier / attack: the benchmark's plugin matching the paper's row (— = no counterpart)")
    st.dataframe(shown, hide_index=True, width="stretch", height=560)
    with st.expander("sources"):
        for key, s in sources.items():
            st.markdown(f"- **{key}**: {s['authors']}. *{s['title']}*. Text: `{s['seed']}`")
        notes = rep.drop_duplicates("block")[["ref", "block_note"]]
        for _, n in notes[notes["block_note"] != ""].iterrows():
            st.markdown(f"- {n['ref']}: {n['block_note']}")


def page_submissions(home: Path):
    st.header("Submissions")
    subs = D.list_submissions(home)
    if subs.empty:
        st.info(f"No submissions yet (nothing in `{home / 'submissions'}`). A submitter packages a defense's "
                "results with `bench submit`; a maintainer checks the bundle (schema, hashes) and adds it with "
                "`bench ingest`, which runs no code. Ingested submissions are listed here, and their cells "
                "appear in the tables like any other result of the same protocol group.")
        return
    st.caption(f"summaries in {home / 'submissions'} (read as data, never executed)")
    show_table(subs)


# --------------------------------------------------------------------------- main
def main() -> None:
    st.set_page_config(page_title="Anti-personalization leaderboard", layout="wide")
    home = results_home()
    records, problems, cells, metrics = load(str(home), _stamp(home))
    names = list(PAGES.values())
    wanted = PAGES.get(st.query_params.get("page", ""), None)
    with st.sidebar:
        st.title("Leaderboard")
        st.caption(f"results home `{home}`")
        page = st.radio("page", names, index=names.index(wanted) if wanted else 0, key="page")
        st.query_params["page"] = next(k for k, v in PAGES.items() if v == page)
        if not cells.empty:
            st.markdown("**filters** (empty = all)")
            filters = {}
            for col, label in (("profile", "profile"), ("dataset", "dataset"), ("base_model", "base model"),
                               ("attack_label", "attack"), ("purifier_label", "purifier")):
                filters[col] = st.multiselect(label, sorted(cells[col].dropna().astype(str).unique()), key=f"f-{col}")
    for p in problems:
        st.warning(p)
    if page == PAGES["submissions"]:
        page_submissions(home)
        return
    if page == PAGES["reported"]:
        page_reported(cells if cells.empty else D.filter_cells(cells, **filters), metrics)
        return
    if cells.empty:
        st.info(f"No results yet in `{home}`. Run a cell first, e.g. `bench run --defense advdm --attack db`, "
                "then reload this page.")
        return
    shown = D.filter_cells(cells, **filters)
    n_groups = shown["protocol_group"].nunique()
    st.caption(f"{len(shown)} of {len(cells)} cells in {n_groups} protocol group(s)")
    if shown.empty:
        st.info("no cell matches the filters")
        return
    if page == PAGES["main"]:
        page_main(records, shown, metrics)
    elif page == PAGES["heatmap"]:
        page_heatmap(shown, metrics)
    elif page == PAGES["cost"]:
        page_cost(shown, metrics)
    elif page == PAGES["grid"]:
        page_grid(shown, records, home)
    elif page == PAGES["cell"]:
        page_cell(shown, metrics, records, home)


main()
