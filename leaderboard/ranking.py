"""One row per defense, ranked by its worst case over the group's purifier x attack suite
(RobustBench's rule: a defense is as strong as the strongest attack against it), with
uncertainty over identities, and one JSON entry per defense and protocol group.

Protection is read from each record's own comparison (runner.comparison: the same cell with
no defense and with equal-budget noise), so every number here is paired by identity, seed,
purifier and attack. Statistics come from bench.stats (pure numerics, no plugin)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import paired_comparison

from . import data as D
from . import pooled as P
from . import reported as R

BASELINE_FAILED_FDFR = 0.5  # a no-defense baseline missing this many faces measures nothing (issue #17 item 2)
UNDEFINED_RULE = ("protection is computed over identities where the defended and the companion value both exist; "
                  "a combination where some identity has no value (e.g. ISM with no face found) is not ranked on this "
                  "metric (a strong defense is never averaged over its weak identities only): rank by a metric that "
                  "is defined everywhere (FDFR, identification)")


PERCEPTIBILITY = ("budget", "measured_linf", "psnr", "ssim", "ciede2000", "changed_fraction", "lpips")
COST = ("seconds_per_image", "peak_rss_mib")


def _distinct(values, sep: str | None = ",") -> list[str]:
    """The distinct non-empty items of a column of `sep`-joined strings (sep None: whole values)."""
    return sorted({x for v in values for x in (str(v).split(sep) if sep else [str(v)])} - {""})


def _combo(purifier: str, attack: str) -> str:
    return f"{purifier} · {attack}"


def protection_frame(records: list[dict[str, Any]], cells: pd.DataFrame, group: str, metric_id: str) -> pd.DataFrame:
    """Long frame: one row per defended cell of `group` with its value, its no-defense baseline's
    and its equal-budget noise's, by identity."""
    labels = cells.set_index("cell_key")
    rows = []
    for r in records:
        if r.get("protocol_group") != group or "compare" not in r or r["cell_key"] not in labels.index:
            continue
        m = (r.get("metrics") or {}).get(metric_id) or {}
        comp = r["compare"]
        lab = labels.loc[r["cell_key"]]
        value = m.get("value") if m.get("status") == "ok" else None
        base_fdfr = next((v for k, v in (comp.get("baseline") or {}).get("metrics", {}).items() if k.startswith("fdfr")), None)
        rows.append({
            "defense_label": lab["defense_label"], "purifier_label": lab["purifier_label"], "attack_label": lab["attack_label"],
            "identity": r.get("identity"), "seed": (r.get("protocol") or {}).get("seed"), "value": value,
            "baseline": (comp.get("baseline") or {}).get("metrics", {}).get(metric_id),
            "noise": (comp.get("noise") or {}).get("metrics", {}).get(metric_id) if "noise" in comp else None,
            "has_noise": "noise" in comp, "higher_is_better": m.get("higher_is_better"), "baseline_fdfr": base_fdfr,
            "budget": lab["budget"], "measured_linf": lab["measured_linf"], "psnr": lab["psnr"], "ssim": lab["ssim"],
            **{c: lab[c] for c in PERCEPTIBILITY}, "lpips_unavailable": lab["lpips_unavailable"], "encoders_seen": lab["encoders_seen"],
            "seconds_per_image": lab["defense_seconds_per_image"], "peak_rss_mib": lab["defense_peak_rss_mib"],
        })
    return pd.DataFrame(rows)


def combo_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per defense and purifier x attack: mean [95% CI] of the protection vs no defense and vs
    noise, paired Wilcoxon p, n identities and how many had no value."""
    out = []
    for (d, pur, att), g in frame.groupby(["defense_label", "purifier_label", "attack_label"], sort=True):
        comps = {"baseline": list(g["baseline"])}
        if g["has_noise"].all():
            comps["noise"] = list(g["noise"])
        s = paired_comparison(list(g["value"]), comps, g["higher_is_better"].iloc[0])
        b, n = s.get("baseline", {}), s.get("noise") or {}
        out.append({
            "defense_label": d, "combo": _combo(pur, att), "n": len(g), "undefined": b.get("n_dropped", len(g)),
            "protection": b.get("protection", math.nan), "ci_low": (b.get("protection_ci") or (math.nan,) * 2)[0],
            "ci_high": (b.get("protection_ci") or (math.nan,) * 2)[1], "p": b.get("p_value", math.nan),
            "vs_noise": n.get("protection", math.nan), "p_noise": n.get("p_value", math.nan),
            "baseline_failed": bool((pd.to_numeric(g["baseline_fdfr"], errors="coerce") > BASELINE_FAILED_FDFR).any()),
        })
    return pd.DataFrame(out)


def worst_case_table(records: list[dict[str, Any]], cells: pd.DataFrame, group: str, metric_id: str) -> pd.DataFrame:
    """One row per defense: protection under each purifier x attack of the group, the worst case
    over them (the rank), the worst case against equal-budget noise, n, budget, cost and
    perceptibility. `none` is the reference (protection 0 by definition)."""
    frame = protection_frame(records, cells, group, metric_id)
    if frame.empty:
        return pd.DataFrame()
    stats = combo_stats(frame)
    rows = []
    for d, g in stats.groupby("defense_label", sort=True):
        f = frame[frame["defense_label"] == d]
        row: dict[str, Any] = {"defense": d}
        for _, c in g.iterrows():
            row[c["combo"]] = c["protection"]
        complete = (g["undefined"] == 0).all()
        row["worst case"] = float(g["protection"].min()) if complete else math.nan
        worst = g.loc[g["protection"].idxmin()] if complete and g["protection"].notna().any() else None
        row["worst combo"] = worst["combo"] if worst is not None else ""
        row["worst CI"] = (worst["ci_low"], worst["ci_high"]) if worst is not None else (math.nan, math.nan)
        row["worst p"] = worst["p"] if worst is not None else math.nan
        row["worst vs noise"] = float(g["vs_noise"].min()) if complete and g["vs_noise"].notna().all() else math.nan
        row["n"] = int(g["n"].min())
        enc = D.white_box(metric_id, ",".join(_distinct(f["encoders_seen"])))
        row["note"] = "; ".join(filter(None, [
            "" if complete else f"not ranked: {int(g['undefined'].max())} identity(ies) without a value ({UNDEFINED_RULE.split(':')[0]})",
            "baseline failed (no-defense FDFR > 0.5): not a protection" if g["baseline_failed"].any() else "",
            f"white-box: the defense optimised against the {enc} encoder this metric uses" if enc else ""]))
        for col in (*PERCEPTIBILITY, *COST):
            row[col] = float(pd.to_numeric(f[col], errors="coerce").mean())
        row["measured_linf"] = float(pd.to_numeric(f["measured_linf"], errors="coerce").max())  # the budget check's view
        row["lpips_unavailable"] = "; ".join(_distinct(f["lpips_unavailable"], None))
        rows.append(row)
    table = pd.DataFrame(rows)
    ranked = table["worst case"].where(~table["note"].str.contains("baseline failed"))
    table["rank"] = ranked.rank(ascending=False, method="min")
    table = table.sort_values(["rank", "defense"], na_position="last").reset_index(drop=True)
    reference = {"defense": "none (reference)", "worst case": 0.0, "note": "protection vs itself is 0 by definition",
                 **{c: 0.0 for c in stats["combo"].unique()}}
    return pd.concat([table, pd.DataFrame([reference])], ignore_index=True)


def budget_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Worst-case protection against the measured budget, for defenses run at several budgets
    (a budget sweep: `--set defense.eps=4,8,12,16`); empty when none was swept."""
    if table.empty:
        return pd.DataFrame(columns=["defense", "budget", "worst case", "label"])
    t = table[table["defense"] != "none (reference)"].assign(name=lambda f: f["defense"].str.split(" (", regex=False).str[0])
    swept = t.groupby("name")["budget"].nunique()
    t = t[t["name"].isin(swept[swept > 1].index)]
    return pd.DataFrame({"defense": t["name"], "budget": t["budget"], "worst case": t["worst case"],
                         "label": t["defense"]}).sort_values(["defense", "budget"]).reset_index(drop=True)


def display_ranking(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str], str]]:
    """The worst-case table as the page shows it (words stay words) and the reasons for the
    values that are not numbers, keyed (defense, column)."""
    if table.empty:
        return table, {}
    f = lambda v, d=3: D.fmt(float(v), digits=d) if v is not None and not (isinstance(v, float) and math.isnan(v)) else "—"  # noqa: E731
    combos = [c for c in table.columns if " · " in c]
    rows, reasons = [], {}
    for _, r in table.iterrows():
        ref = r["defense"] == "none (reference)"
        lo, hi = r["worst CI"] if isinstance(r.get("worst CI"), tuple) else (math.nan, math.nan)
        row = {"rank": "" if pd.isna(r.get("rank")) else str(int(r["rank"])), "defense": r["defense"],
               **{c: f(r[c]) for c in combos},
               "worst case [95% CI]": f(r["worst case"]) + ("" if ref or math.isnan(lo) else f" [{f(lo)}, {f(hi)}]"),
               "worst at": r.get("worst combo") or "", "p vs none": "" if ref else f(r.get("worst p")),
               "worst vs noise": "" if ref else f(r.get("worst vs noise"))}
        if not ref:
            row.update({"n": str(int(r["n"])), "budget /255": f(r["budget"]), "L-inf /255": f(r["measured_linf"]),
                        "PSNR dB": f(r["psnr"]), "SSIM": f(r["ssim"]), "ΔE00": f(r["ciede2000"]),
                        "changed px": f(r["changed_fraction"]), "LPIPS": f(r["lpips"]) if not math.isnan(r["lpips"]) else "unavailable",
                        "s/image": f(r["seconds_per_image"]), "peak MiB": f(r["peak_rss_mib"], 4)})
            if math.isnan(r["lpips"]) and r.get("lpips_unavailable"):
                reasons[(r["defense"], "LPIPS")] = r["lpips_unavailable"]
        row["note"] = r.get("note") or ""
        rows.append(row)
    return pd.DataFrame(rows).fillna(""), reasons


IDENTITY_FIRST = ("idr", "ism", "aism", "ims")


def default_metric(records: list[dict[str, Any]], cells: pd.DataFrame, metrics: pd.DataFrame, group: str) -> str | None:
    """The ranking metric: the first of the group's directed metrics, identity metrics first,
    whose protection is defined for every identity of every defended cell (identification and
    FDFR usually are; ISM is not when a strong defense leaves no face)."""
    t = D.main_table(cells, metrics, group)
    candidates = [m for m in t.metric_cols if t.directions.get(m)]
    # identity metrics first: the benchmark's question is whether the person is learned (FDFR
    # ties at 0 whenever the base draws faces at all, as the tiny face world does)
    candidates.sort(key=lambda m: m.split("[")[0] not in IDENTITY_FIRST)
    for mid in candidates:
        frame = protection_frame(records, cells, group, mid)
        if not frame.empty and frame["value"].notna().all() and frame["baseline"].notna().all():
            return mid
    return candidates[0] if candidates else None


def entries(records: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """One JSON-ready entry per defense of `group`: settings, per-combination protection with CI
    and p for every directed metric, worst cases, flags. `bench export --format json` writes one
    file per entry; `static_page(entries)` renders a leaderboard from those files alone."""
    cells, metrics = D.cells_frame(records), D.metrics_frame(records)
    sub = cells[cells["protocol_group"] == group]
    if sub.empty:
        return []
    t = D.main_table(cells, metrics, group)
    directed = [m for m in t.metric_cols if t.directions.get(m)]
    rank_metric = default_metric(records, cells, metrics, group)
    out = []
    compared = {r["cell_key"] for r in records if "compare" in r}  # defended cells; companions alone are not entries
    rep = R.compare(R.load()[1], sub, metrics)
    rep = rep[rep["group"] == group] if not rep.empty else rep
    pooled = {mid: P.pooled_fid_table(records, cells, group, mid) for mid in P.pooled_metric_ids(records)}
    for d, dcells in sub[sub["cell_key"].isin(compared)].groupby("defense_label", sort=True):
        first = next(r for r in records if r["cell_key"] == dcells["cell_key"].iloc[0])
        entry: dict[str, Any] = {
            "defense": d, "defense_name": dcells["defense"].iloc[0], "protocol_group": group,
            "protocol": D.describe_group(cells, group), "rank_metric": rank_metric,
            "settings": (first.get("protocol") or {}).get("defense"),
            "identities": sorted(dcells["identity"].unique().tolist()), "cells": len(dcells),
            "budget": float(dcells["budget"].mean()), "measured_linf": float(dcells["measured_linf"].max()),
            "psnr": float(dcells["psnr"].mean()), "ssim": float(dcells["ssim"].mean()),
            "ciede2000": _plain(dcells["ciede2000"].mean()), "changed_fraction": _plain(dcells["changed_fraction"].mean()),
            "lpips": _plain(dcells["lpips"].mean()),
            **({"lpips_unavailable": "; ".join(_distinct(dcells["lpips_unavailable"], None))} if dcells["lpips"].isna().any() else {}),
            "seconds_per_image": float(dcells["defense_seconds_per_image"].mean()),
            "encoders_seen": _distinct(dcells["encoders_seen"]),
            "peak_rss_mib": _plain(dcells["defense_peak_rss_mib"].max()), "metrics": {}, "flags": [],
            "undefined_rule": UNDEFINED_RULE,
        }
        for mid in directed:
            stats = combo_stats(protection_frame(records, cells, group, mid))
            stats = stats[stats["defense_label"] == d]
            combos = {r["combo"]: {k: _plain(r[k]) for k in ("n", "undefined", "protection", "ci_low", "ci_high", "p", "vs_noise", "p_noise")}
                      for _, r in stats.iterrows()}
            complete = bool(len(stats)) and bool((stats["undefined"] == 0).all())
            entry["metrics"][mid] = {"by_combination": combos,
                                     "worst_case": _plain(stats["protection"].min()) if complete else None,
                                     "worst_case_vs_noise": _plain(stats["vs_noise"].min()) if complete else None}
            if stats["baseline_failed"].any() and "baseline failed" not in entry["flags"]:
                entry["flags"].append("baseline failed")
            encoder = D.white_box(mid, ",".join(dcells["encoders_seen"]))
            if encoder:
                entry["flags"].append(f"metric encoder seen by the defense: {mid} ({encoder})")
            bad = metrics[metrics["cell_key"].isin(dcells["cell_key"]) & (metrics["metric_id"] == mid) & (metrics["status"] == "unavailable")]
            if len(bad):
                entry["flags"].append(f"unavailable cells: {mid} in {len(bad)} of {len(dcells)} ({bad['reason'].iloc[0]})")
        mine = rep[rep["defense"] == entry["defense_name"]] if not rep.empty else rep
        entry["reported_vs_measured"] = [
            {"source": r["source"], "where": r["ref"], "paper_row": r["row"], "metric": r["metric"], "reported": str(r["raw"]),
             "ours_metric": r["ours_metric"], "ours": _plain(r["ours"]), "gap": _plain(r["gap"]), "comparison": r["comparison"]}
            for _, r in mine.iterrows()]
        for mid, pt in pooled.items():
            pt = pt[pt["defense"] == d] if not pt.empty else pt
            entry.setdefault("pooled", {})[mid] = {"protocol": P.LABEL, "by_combination": {
                r["combo"]: {k: _plain(r[k]) for k in ("fid", "vs_none", "identities", "n_generated", "n_reference", "status")}
                for _, r in pt.iterrows()}}
        out.append(entry)
    return out


def _plain(v: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to None."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else round(float(v), 6)
    return v


def static_page(items: list[dict[str, Any]]) -> str:
    """A Markdown leaderboard built from entry files alone: one table per protocol group,
    ranked by the worst case of its rank metric."""
    parts = ["# Leaderboard (from per-entry JSON)", "",
             "Protection > 0 hurts the attacker; worst case = the weakest protection over the group's purifier x "
             "attack combinations; [95% bootstrap CI over identities], paired Wilcoxon p vs no defense.", ""]
    for group in sorted({e["protocol_group"] for e in items}):
        es = [e for e in items if e["protocol_group"] == group]
        metric = es[0]["rank_metric"]
        parts += [f"## {es[0]['protocol']}", "", f"ranked by the worst case of {metric}", ""]

        def worst(e):
            w = (e["metrics"].get(metric) or {}).get("worst_case")
            return -math.inf if w is None or "baseline failed" in e["flags"] else w

        parts += ["| rank | defense | worst case | worst vs noise | budget | measured L-inf | PSNR | s/image | n | flags |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for e in sorted(es, key=worst, reverse=True):
            m = e["metrics"].get(metric) or {}
            f = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
            place = 1 + sum(worst(o) > worst(e) for o in es)  # ties share a rank
            parts.append(f"| {place if worst(e) > -math.inf else '-'} | {e['defense']} | {f(m.get('worst_case'))} | "
                         f"{f(m.get('worst_case_vs_noise'))} | {f(e['budget'])} | {f(e['measured_linf'])} | {f(e['psnr'])} | "
                         f"{f(e['seconds_per_image'])} | {len(e['identities'])} | {', '.join(e['flags']) or '-'} |")
        parts.append("")
        sweeps: dict[str, list[tuple[float, Any]]] = {}
        for e in es:
            sweeps.setdefault(e["defense_name"], []).append((e["budget"], (e["metrics"].get(metric) or {}).get("worst_case")))
        for name, points in sorted(sweeps.items()):
            if len({b for b, _ in points}) > 1:
                parts += [f"protection against budget, {name} (worst case of {metric}):", "",
                          "| budget /255 | worst case |", "|---|---|",
                          *(f"| {b:g} | {'-' if w is None else f'{w:.4g}'} |" for b, w in sorted(points)), ""]
    return "\n".join(parts)
