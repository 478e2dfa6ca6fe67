"""Pure data functions behind the leaderboard page and `bench export`.

Read-only by design: records and the SQLite index are only read (the database is
opened with mode=ro), no plugin module is imported (nothing here imports bench,
defenses, attacks, purifiers or metrics), and every image path is resolved inside
<home>/artifacts/<stage>/ — a key or file name that would lead elsewhere raises
UnsafePath. Results of different protocol groups are never put in one table.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

STAGES = ("clean", "defense", "purified", "personalized", "generated", "metric")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp")
# An artifact key or a file name is one plain path component: no separator, no "..".
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
# Fallback when a record does not say what a metric measures: these compare protected
# (or purified) images with the clean ones, so a defense wants them high (less visible).
PROTECTION_METRICS = {"psnr", "ssim", "linf", "lpips"}
SIMILARITY_METRICS = {"ism", "aism", "ims"}
ROW_KEYS = ["defense_label", "purifier_label", "attack_label"]


class UnsafePath(ValueError):
    """A record points outside the results home (or is not a plain name)."""


class GroupMixError(ValueError):
    """Cells of different protocol groups were about to be ranked together."""


# --------------------------------------------------------------------------- loading
def default_home() -> Path:
    """Same rule as bench.runner.default_home (not imported: the page stays off the core)."""
    return Path(os.environ.get("BENCH_HOME", ".bench")).expanduser()


def records_dir(home: Path) -> Path:
    return Path(home) / "results" / "records"


def load_records(home: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """All records under <home>/results/records, plus one line per file that was skipped."""
    folder = records_dir(home)
    records, problems = [], []
    if not folder.is_dir():
        return records, problems
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: unreadable ({exc})")
            continue
        missing = [k for k in ("cell_key", "protocol", "protocol_group", "stages", "metrics") if k not in rec]
        if missing:
            problems.append(f"{path.name}: not a result record (missing {', '.join(missing)})")
        elif rec["cell_key"] != path.stem:
            problems.append(f"{path.name}: cell_key {rec['cell_key']!r} does not match the file name")
        else:
            records.append(rec)
    return records, problems


def load_db(home: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The SQLite index (tables cells, metrics), opened read-only; empty frames if absent."""
    path = Path(home) / "results" / "results.db"
    if not path.is_file():
        return pd.DataFrame(), pd.DataFrame()
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return pd.read_sql_query("SELECT * FROM cells", db), pd.read_sql_query("SELECT * FROM metrics", db)
    finally:
        db.close()


def index_problems(records: list[dict], db_cells: pd.DataFrame) -> list[str]:
    """Cells the index lists without a readable record (the record is the truth)."""
    if db_cells.empty or "cell_key" not in db_cells:
        return []
    have = {r["cell_key"] for r in records}
    return [f"{k}: indexed in results.db but no readable record" for k in db_cells["cell_key"] if k not in have]


# ------------------------------------------------------------------------ frames
def _jdump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def cells_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell with what the tables filter and group on."""
    rows = []
    for r in records:
        p, st = r["protocol"], r["stages"]
        d = st.get("defense") or {}
        purs = st.get("purifier") or []
        bm = p.get("base_model") or {}
        gen = p.get("generation") or {}
        rows.append({
            "cell_key": r["cell_key"],
            "created": r.get("created"),
            "protocol_group": r["protocol_group"],
            "profile": p.get("profile"),
            "dataset": (p.get("dataset") or {}).get("card"),
            "base_model": bm.get("id") or bm.get("path"),
            "resolution": p.get("resolution"),
            "generation": _jdump(gen),
            "metric_set": ", ".join(m.get("id", "?") for m in p.get("metrics") or []),
            "identity": r.get("identity"),
            "seed": p.get("seed"),
            "defense": p["defense"]["name"],
            "defense_params": _jdump(p["defense"].get("params") or {}),
            "purifier": "+".join(x["name"] for x in p.get("purifier") or []) or "none",
            "purifier_params": _jdump([x.get("params") or {} for x in p.get("purifier") or []]),
            "attack": p["attack"]["name"],
            "attack_params": _jdump(p["attack"].get("params") or {}),
            "defense_level": d.get("level"),
            "budget": _num(d.get("budget")),
            "measured_linf": _num(d.get("measured_linf")),
            "psnr": _num(d.get("psnr")),
            "ssim": _num(d.get("ssim")),
            "ciede2000": _num(d.get("ciede2000")),
            "changed_fraction": _num(d.get("changed_fraction")),
            "lpips": _num(d.get("lpips")),
            "lpips_unavailable": d.get("lpips_unavailable") or ("" if "lpips" in d else "model-level defense: no protected images"
                                                                  if d.get("level") == "model" else "not measured (the record predates LPIPS)"),
            "defense_seconds_per_image": _num(d.get("seconds_per_image")),
            "defense_peak_rss_mib": _num(d.get("peak_rss_mib")),
            "encoders_seen": ",".join(d.get("encoders_seen") or []),
            "purifier_seconds_per_image": sum(_num(x.get("seconds_per_image")) for x in purs) if purs else math.nan,
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["defense_label"] = _labels(df, "defense", "defense_params")
    df["purifier_label"] = _labels(df, "purifier", "purifier_params")
    df["attack_label"] = _labels(df, "attack", "attack_params")
    return df


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: obj}


def _labels(df: pd.DataFrame, name_col: str, params_col: str) -> list[str]:
    """The plugin name, plus the parameters that differ when one name ran with several settings."""
    variants: dict[str, list[dict]] = {}
    for name, params in set(zip(df[name_col], df[params_col])):
        variants.setdefault(name, []).append(_flat(json.loads(params)))
    labels = []
    for name, params in zip(df[name_col], df[params_col]):
        vs = variants[name]
        if len(vs) < 2:
            labels.append(name)
            continue
        mine = _flat(json.loads(params))
        keys = sorted({k for v in vs for k in v if len({_jdump(x.get(k)) for x in vs}) > 1})
        labels.append(f"{name} (" + ", ".join(f"{k}={mine.get(k)}" for k in keys) + ")")
    return labels


def metrics_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long frame: one row per (cell, metric) with a status that is never a number.

    status: "ok" (value is a number), "unavailable" (the metric could not run; reason
    given) or "undefined" (it ran but has no value for these images, e.g. ISM when no
    face was detected). defense_dir: +1 if a stronger defense raises the value, -1 if
    it lowers it, 0 if the metric has no preferred direction."""
    rows = []
    for r in records:
        entries = [(mid, m, False) for mid, m in (r.get("metrics") or {}).items()]
        control = r.get("control") or {}
        for side in ("protected", "base"):  # model-level defenses: the non-target identity (docs/protocol.md)
            entries += [(f"control/{side}: {mid}", m, True) for mid, m in ((control.get(side) or {}).get("metrics") or {}).items()]
        for mid, m, is_control in entries:
            m = m or {}
            status = str(m.get("status") or "ok")
            value = m.get("value")
            reason = ""
            if status.startswith("unavailable"):
                state, reason = "unavailable", status.partition(":")[2].strip() or "no reason given"
                value = None
            elif status != "ok":
                state, reason = "unavailable", status
                value = None
            elif value is None:
                state = "undefined"
                reason = str((m.get("extra") or {}).get("undefined") or "the metric returned no value")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                state, reason, value = "unavailable", f"not a number: {value!r}", None
            else:
                state = "ok"
            base = mid.split("[", 1)[0]
            hib = m.get("higher_is_better")
            target = m.get("target") or ("protection" if base in PROTECTION_METRICS else "generation")
            if is_control:  # not a protection score: protected and base should be close
                target, ddir = "control", 0
            elif hib is None:
                ddir = 0
            elif target == "protection":
                ddir = 1 if hib else -1
            else:  # generated images: the attacker wants them good, the defense the opposite
                ddir = -1 if hib else 1
            rows.append({
                "cell_key": r["cell_key"], "metric_id": mid, "metric": base,
                "value": math.nan if value is None else float(value), "status": state, "reason": reason,
                "higher_is_better": hib, "target": target, "defense_dir": ddir,
                "per_image": m.get("per_image"),
            })
    cols = ["cell_key", "metric_id", "metric", "value", "status", "reason", "higher_is_better", "target", "defense_dir", "per_image"]
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------- grouping
def groups_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per protocol group: what makes its cells comparable."""
    if cells.empty:
        return pd.DataFrame(columns=["protocol_group", "profile", "base_model", "resolution", "dataset", "metric_set", "generation", "cells", "identities"])
    g = cells.groupby("protocol_group", sort=True)
    out = g.agg(profile=("profile", "first"), base_model=("base_model", "first"), resolution=("resolution", "first"),
                dataset=("dataset", "first"), metric_set=("metric_set", "first"), generation=("generation", "first"),
                cells=("cell_key", "count"), identities=("identity", "nunique")).reset_index()
    return out


def describe_group(cells: pd.DataFrame, group: str) -> str:
    """The one-line protocol statement printed above every table."""
    g = groups_frame(cells[cells["protocol_group"] == group])
    if g.empty:
        return f"protocol group {group} (no cells)"
    row = g.iloc[0]
    gen = json.loads(row["generation"] or "{}")
    gen_s = ", ".join(f"{k} {gen[k]}" for k in ("prompt_set", "sampler", "steps", "guidance_scale", "images_per_prompt") if k in gen)
    return (f"protocol group {group} · profile {row['profile']} · base model {row['base_model']} · "
            f"{row['resolution']} px · dataset {row['dataset']} · metrics {row['metric_set']}"
            + (f" · generation {gen_s}" if gen_s else ""))


def white_box(metric_id: str, encoders_seen: str) -> str | None:
    """The encoder a metric shares with the defense (ism[dlib] vs a defense that optimised
    against dlib), else None: such a value is measured white-box."""
    backend = metric_id.partition("[")[2].rstrip("]").split(",")[0]
    return next((e for e in filter(None, encoders_seen.split(",")) if backend == e or backend.startswith(e + "-")), None)


def group_title(cells: pd.DataFrame, group: str) -> str:
    """A protocol group as a reader names it (profile, base model, resolution, metric backends,
    identities); the hash stays in describe_group's detail line."""
    sub = cells[cells["protocol_group"] == group]
    if sub.empty:
        return f"protocol group {group}"
    row = sub.iloc[0]
    backends = sorted({m.split("[", 1)[1].rstrip("]").split(",")[0] for m in str(row["metric_set"]).split(", ") if "[" in m})
    n = sub["identity"].nunique()
    return (f"{row['profile']} profile · {row['base_model']} · {row['resolution']} px · {row['dataset']}, "
            f"{n} identit{'y' if n == 1 else 'ies'}" + (f" · metrics by {', '.join(backends)}" if backends else ""))


def method_links(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """'kind:name' -> {"paper", "code"} as the records carry them (the plugins' `links`)."""
    out: dict[str, dict[str, str]] = {}
    for r in records:
        for k, v in (r.get("links") or {}).items():
            if isinstance(v, dict):
                out.setdefault(k, {key: str(x) for key, x in v.items() if isinstance(x, str)})
    return out


def link_markdown(label: str, links: dict[str, str]) -> str:
    """'**advdm**: [paper](url) · [code](url)'; citations without a URL stay text."""
    parts = [f"[{k}]({v})" if v.startswith("http") and " " not in v else f"{k}: {v}" for k, v in links.items()]
    return f"**{label}**: " + " · ".join(parts)


def filter_cells(cells: pd.DataFrame, **allowed: Iterable[Any] | None) -> pd.DataFrame:
    """Keep cells whose column values are in the allowed sets (None or empty = no filter)."""
    mask = pd.Series(True, index=cells.index)
    for col, values in allowed.items():
        if values:
            mask &= cells[col].isin(list(values))
    return cells[mask]


def _one_group(cells: pd.DataFrame, group: str) -> pd.DataFrame:
    sub = cells[cells["protocol_group"] == group]
    if sub["protocol_group"].nunique() > 1:  # defensive: never rank across groups
        raise GroupMixError("cells of several protocol groups in one table")
    return sub


# ------------------------------------------------------------------------ tables
@dataclass
class Table:
    """A table of one protocol group: numbers, their status and reasons, directions."""

    group: str
    frame: pd.DataFrame  # index: row keys; numeric columns (NaN where not a number)
    status: pd.DataFrame  # same shape for metric columns: ok | unavailable | undefined | partial
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)  # (row label, metric) -> why
    directions: dict[str, int] = field(default_factory=dict)  # metric -> +1/-1/0 for a stronger defense
    metric_cols: list[str] = field(default_factory=list)


def _aggregate(vals: pd.DataFrame) -> tuple[float, str, str]:
    """Mean over cells of one metric; status and reason when some or all are not numbers."""
    ok = vals[vals["status"] == "ok"]
    bad = vals[vals["status"] != "ok"]
    reasons = "; ".join(sorted({f"{s}: {r}" for s, r in zip(bad["status"], bad["reason"])}))
    if ok.empty:
        state = "unavailable" if (bad["status"] == "unavailable").any() else "undefined"
        return math.nan, state, reasons
    value = float(ok["value"].mean())
    if bad.empty:
        return value, "ok", ""
    return value, "partial", f"mean of {len(ok)} of {len(vals)} cells; others {reasons}"


def main_table(cells: pd.DataFrame, metrics: pd.DataFrame, group: str, metric_ids: list[str] | None = None) -> Table:
    """Rows = defense / purifier / attack (mean over identities and seeds), columns = metrics.
    Only cells of `group` enter the table."""
    sub = _one_group(cells, group)
    mets = metrics[metrics["cell_key"].isin(sub["cell_key"])]
    declared = [m.strip() for m in (sub["metric_set"].iloc[0] if not sub.empty else "").split(",") if m.strip()]
    present = set(mets["metric_id"].unique())
    ids = metric_ids or [m for m in declared if m in present] + sorted(present - set(declared))
    merged = mets.merge(sub[["cell_key", *ROW_KEYS]], on="cell_key")
    base = sub.groupby(ROW_KEYS, sort=True).agg(
        cells=("cell_key", "count"), identities=("identity", "nunique"), budget=("budget", "mean"),
        measured_linf=("measured_linf", "max"), psnr=("psnr", "mean"), ssim=("ssim", "mean"),
        seconds_per_image=("defense_seconds_per_image", "mean"))
    status = pd.DataFrame(index=base.index, columns=ids, dtype=object)
    reasons: dict[tuple[str, str], str] = {}
    directions = {}
    for mid in ids:
        col = []
        m = merged[merged["metric_id"] == mid]
        directions[mid] = int(m["defense_dir"].iloc[0]) if not m.empty else 0
        by_row = {k: g for k, g in m.groupby(ROW_KEYS)}
        for key in base.index:
            vals = by_row.get(key)
            if vals is None:
                col.append(math.nan)
                status.loc[key, mid] = "missing"
                reasons[(" / ".join(key), mid)] = "missing: not in these cells' metric set"
                continue
            value, state, why = _aggregate(vals)
            col.append(value)
            status.loc[key, mid] = state
            if why:
                reasons[(" / ".join(key), mid)] = why
        base[mid] = col
    return Table(group=group, frame=base, status=status, reasons=reasons, directions=directions, metric_cols=list(ids))


def rank(table: Table, metric_id: str) -> pd.DataFrame:
    """The table's frame sorted so the strongest protection on `metric_id` comes first,
    with a rank column; rows without a number rank last (rank NaN). One group only."""
    df = table.frame.copy()
    d = table.directions.get(metric_id, 0)
    if d == 0:
        raise ValueError(f"{metric_id} has no preferred direction; it cannot rank defenses")
    key = df[metric_id] * d
    df["rank"] = key.rank(ascending=False, method="min")
    return df.loc[key.sort_values(ascending=False, na_position="last").index]


def arrow(direction: int) -> str:
    return {1: "↑", -1: "↓"}.get(direction, "")


def fmt(value: float, status: str = "ok", digits: int | None = 4) -> str:
    """Cell text: numbers with `digits` significant digits (None: full precision), anything
    else as words."""
    if status in ("unavailable", "undefined", "missing"):
        return status
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unavailable"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, float):
        text = repr(value) if digits is None else f"{value:.{digits}g}"
    else:
        text = str(value)
    return text + (" *" if status == "partial" else "")


def dash(value: float, digits: int | None = 4) -> str:
    """Text of a measurement that is not a metric: "—" when absent."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt(value, "ok", digits)


def display_frame(table: Table, frame: pd.DataFrame | None = None, digits: int | None = 4) -> pd.DataFrame:
    """String version of a table for the page and exports: metric headers carry the
    arrow of a stronger defense; unavailable values are words, never numbers."""
    df = (table.frame if frame is None else frame).copy()
    fmt = lambda v, s="ok": globals()["fmt"](v, s, digits)  # noqa: E731
    out = pd.DataFrame(index=df.index)
    if "rank" in df:
        out["rank"] = [str(int(v)) if not math.isnan(v) else "-" for v in df["rank"]]
    out["cells"] = df["cells"].astype(int).astype(str)
    out["identities"] = df["identities"].astype(int).astype(str)
    # not metrics: no number here means "not measured" (e.g. a model-level defense has no L-inf)
    out["budget /255"] = [dash(v, digits) for v in df["budget"]]
    out["L-inf /255"] = [dash(v, digits) for v in df["measured_linf"]]
    out["s/image"] = [dash(v, digits) for v in df["seconds_per_image"]]
    for mid in table.metric_cols:
        out[f"{mid} {arrow(table.directions.get(mid, 0))}".strip()] = [
            fmt(v, table.status.loc[k, mid]) for k, v in zip(df.index, df[mid])]
    out.index = out.index.set_names(["defense", "purifier", "attack"])
    return out.reset_index()


def heatmap(cells: pd.DataFrame, metrics: pd.DataFrame, group: str, attack: str, metric_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Defense x purifier matrix of `metric_id` under one attack, within one group.
    Returns (values, status); status cells are ok | partial | unavailable | undefined | "" (not run)."""
    sub = _one_group(cells, group)
    sub = sub[sub["attack_label"] == attack]
    t = main_table(sub, metrics, group, [metric_id]) if not sub.empty else None
    if t is None or t.frame.empty:
        return pd.DataFrame(), pd.DataFrame()
    values = t.frame[metric_id].droplevel(2).unstack("purifier_label")
    status = t.status[metric_id].droplevel(2).unstack("purifier_label").fillna("")
    none_first = lambda labels: sorted(labels, key=lambda x: (x != "none", x))  # noqa: E731  baseline first
    rows, cols = none_first(values.index), none_first(values.columns)
    values, status = values.loc[rows, cols], status.loc[rows, cols]
    for frame in (values, status):
        frame.index.name, frame.columns.name = "defense", "purifier"
    return values, status


def cost_protection(cells: pd.DataFrame, metrics: pd.DataFrame, group: str, metric_id: str) -> pd.DataFrame:
    """Seconds per image of each defense vs its protection on `metric_id`, relative to the
    `none` defense with the same purifier and attack in the same group.

    protection = (value - value_none) * defense_dir, so for an identity similarity (ISM)
    it is the similarity drop value_none - value: positive = the defense protects."""
    t = main_table(cells, metrics, group, [metric_id])
    df = t.frame.reset_index()
    df["status"] = list(t.status[metric_id])
    d = t.directions.get(metric_id, 0)
    base = df[[lbl == "none" for lbl in df["defense_label"]]].set_index(["purifier_label", "attack_label"])[metric_id]
    none_vals = [base.get((p, a), math.nan) for p, a in zip(df["purifier_label"], df["attack_label"])]
    df["value_none"] = none_vals
    df["protection"] = (df[metric_id] - df["value_none"]) * d if d else math.nan
    df["note"] = [
        "no `none` baseline with this purifier and attack" if math.isnan(b)
        else (f"value {s}" if s in ("unavailable", "undefined") else "")
        for b, s in zip(df["value_none"], df["status"])]
    cols = ["defense_label", "purifier_label", "attack_label", "seconds_per_image", metric_id, "value_none", "protection", "status", "note"]
    return df[cols].rename(columns={"defense_label": "defense", "purifier_label": "purifier", "attack_label": "attack"})


# -------------------------------------------------------------------- drill-down
def resolve_artifact(home: Path, stage: str, key: Any, *parts: Any) -> Path:
    """<home>/artifacts/<stage>/<key>/<parts...>, refused unless every component is a plain
    name and the resolved path (symlinks followed) stays inside <home>/artifacts/<stage>."""
    if stage not in STAGES:
        raise UnsafePath(f"unknown artifact stage {stage!r}")
    for comp in (key, *parts):
        if not isinstance(comp, str) or not _NAME.match(comp) or ".." in comp:
            raise UnsafePath(f"refused path component {comp!r} (not a plain file name)")
    root = (Path(home) / "artifacts" / stage).resolve()
    path = root.joinpath(key, *parts).resolve()
    if not path.is_relative_to(root):
        raise UnsafePath(f"refused {path}: outside {root}")
    return path


def _images_in(home: Path, stage: str, key: Any, sub: str) -> list[Path]:
    folder = resolve_artifact(home, stage, key, sub)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXT:
            out.append(resolve_artifact(home, stage, key, sub, p.name))
    return out


def cell_images(home: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Image paths of one cell, stage by stage; raises UnsafePath for a key leading outside."""
    st = record["stages"]
    out: dict[str, Any] = {"notes": []}
    out["clean"] = _images_in(home, "clean", (st.get("data") or {}).get("artifact"), "train")
    d = st.get("defense") or {}
    if d.get("level") == "model":
        out["protected"] = []
        out["notes"].append("model-level defense: the images are not changed, the base model is (see the protocol)")
    else:
        out["protected"] = _images_in(home, "defense", d.get("artifact"), "images")
    out["purified"] = [(link.get("name", "purifier"), _images_in(home, "purified", link.get("artifact"), "images"))
                       for link in st.get("purifier") or []]
    g = st.get("generate") or {}
    gen = []
    listed = g.get("images") or []
    if listed:
        for item in listed:
            p = resolve_artifact(home, "generated", g.get("artifact"), "images", item.get("file"))
            gen.append((p, f"{item.get('prompt', '')} (seed {item.get('seed', '?')})"))
    else:
        gen = [(p, p.name) for p in _images_in(home, "generated", g.get("artifact"), "images")]
    out["generated"] = gen
    for label, paths in (("clean", out["clean"]), ("protected", out["protected"])):
        if not paths and not (label == "protected" and d.get("level") == "model"):
            out["notes"].append(f"no {label} images found in the artifact store (pruned with `bench cache --prune`?)")
    return out


def grid_columns(cells: pd.DataFrame, group: str, identity: str, seed: Any, purifier: str, attack: str) -> pd.DataFrame:
    """The cells of one image-grid row set: same group, identity, seed, purifier and attack,
    one per defense; `none` first, then `noise`, then the others by name."""
    sub = cells[(cells["protocol_group"] == group) & (cells["identity"] == identity) & (cells["seed"] == seed)
                & (cells["purifier_label"] == purifier) & (cells["attack_label"] == attack)]
    order = sub["defense"].map(lambda d: 0 if d == "none" else 1 if d == "noise" else 2)
    return sub.assign(_o=order).sort_values(["_o", "defense_label", "created"]).drop_duplicates("defense_label", keep="last").drop(columns="_o")


def pick(paths: list[Path], name: str) -> Path | None:
    return next((p for p in paths if p.name == name), None)


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pair_by_name(clean: list[Path], protected: list[Path]) -> list[tuple[Path, Path]]:
    """Clean/protected pairs with the same file name (the harness keeps names)."""
    by_name = {p.name: p for p in clean}
    return [(by_name[p.name], p) for p in protected if p.name in by_name]


def perturbation_map(clean: np.ndarray, protected: np.ndarray, gain: float) -> tuple[np.ndarray, int]:
    """|protected - clean| x gain per pixel and channel as an 8-bit image, and the measured
    L-inf in 0-255 units. Raises ValueError on a shape mismatch."""
    if clean.shape != protected.shape:
        raise ValueError(f"shapes differ: clean {clean.shape}, protected {protected.shape}")
    diff = np.abs(protected.astype(np.int16) - clean.astype(np.int16))
    amplified = np.clip(np.rint(diff.astype(np.float32) * float(gain)), 0, 255).astype(np.uint8)
    return amplified, int(diff.max())


def default_gain(budget: float) -> float:
    """Amplify so that a change of the full budget shows as full white."""
    return 255.0 / budget if budget and not math.isnan(budget) and budget > 0 else 10.0


def per_identity(cells: pd.DataFrame, metrics: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """Every identity/seed of the same group, defense, purifier and attack as this cell."""
    me = cells[cells["cell_key"] == record["cell_key"]]
    if me.empty:
        return pd.DataFrame()
    row = me.iloc[0]
    same = cells[(cells["protocol_group"] == row["protocol_group"]) & (cells["defense_label"] == row["defense_label"])
                 & (cells["purifier_label"] == row["purifier_label"]) & (cells["attack_label"] == row["attack_label"])]
    mets = metrics[metrics["cell_key"].isin(same["cell_key"])]
    shown = [fmt(v, s) for v, s in zip(mets["value"], mets["status"])]
    wide = mets.assign(shown=shown).pivot(index="cell_key", columns="metric_id", values="shown")
    declared = [m.strip() for m in row["metric_set"].split(",") if m.strip() in wide.columns]
    wide = wide[declared + sorted(set(wide.columns) - set(declared))]
    out = same.set_index("cell_key")[["identity", "seed", "measured_linf", "psnr", "ssim"]].join(wide)
    for c in ("measured_linf", "psnr", "ssim"):
        out[c] = [dash(v) for v in out[c]]
    return out.reset_index().sort_values(["identity", "seed"])


def per_image(record: dict[str, Any]) -> pd.DataFrame:
    """Per-image metric values of one cell (rows = generated images, as listed)."""
    cols = {}
    for mid, m in (record.get("metrics") or {}).items():
        vals = (m or {}).get("per_image")
        if isinstance(vals, list):
            cols[mid] = [fmt(_num(v)) if v is not None else "undefined" for v in vals]
    if not cols:
        return pd.DataFrame()
    n = max(len(v) for v in cols.values())
    images = ((record.get("stages") or {}).get("generate") or {}).get("images") or []
    prompts = [str(im.get("prompt", "")) for im in images] if len(images) == n else []
    front = {"prompt": prompts} if prompts else {}
    return pd.DataFrame({**front, **{k: v + [""] * (n - len(v)) for k, v in cols.items()}})


def control_table(record: dict[str, Any]) -> pd.DataFrame:
    """Model-level cells: the non-target identity's metrics on the protected vs the base model."""
    c = record.get("control") or {}
    prot, base = ((c.get(side) or {}).get("metrics") or {} for side in ("protected", "base"))
    rows = [{"metric": mid, "protected model": fmt(_num((prot.get(mid) or {}).get("value"))),
             "base model": fmt(_num((base.get(mid) or {}).get("value")))} for mid in prot]
    return pd.DataFrame(rows, columns=["metric", "protected model", "base model"])


def cell_label(row: pd.Series) -> str:
    return (f"{row['defense_label']} / {row['purifier_label']} / {row['attack_label']} · {row['identity']} · "
            f"seed {row['seed']} · {row['cell_key']}")


# ------------------------------------------------------------------- submissions
SUBMISSION_FIELDS = ("defense", "plugin_version", "bench_version", "created", "ingested", "bundle_hash")


def list_submissions(home: Path) -> pd.DataFrame:
    """Ingested submissions: the JSON summaries `bench ingest` leaves in <home>/submissions,
    read as data only (other entries are listed by name). `records` = cells the summary
    names; `in results` = how many of them have a record in this home."""
    root = Path(home) / "submissions"
    cols = ["submission", *SUBMISSION_FIELDS, "records", "in results"]
    if not root.is_dir():
        return pd.DataFrame(columns=cols)
    real_root = root.resolve()
    have = {p.stem for p in records_dir(home).glob("*.json")} if records_dir(home).is_dir() else set()
    rows = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not p.resolve().is_relative_to(real_root):
            continue
        row: dict[str, Any] = {"submission": p.name}
        if p.is_file() and p.suffix == ".json":
            row["submission"] = p.stem
            try:
                meta = json.loads(p.read_text())
            except (OSError, ValueError):
                meta = {"defense": "(unreadable summary)"}
            if isinstance(meta, dict):
                for k in SUBMISSION_FIELDS:
                    if k in meta:
                        row[k] = str(meta[k])[:16] if k == "bundle_hash" else str(meta[k])
                recs = meta.get("records") if isinstance(meta.get("records"), list) else []
                row["records"] = len(recs)
                row["in results"] = sum(1 for k in recs if isinstance(k, str) and k in have)
        rows.append(row)
    return pd.DataFrame(rows, columns=cols).astype(object).fillna("")
