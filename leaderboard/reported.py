"""The seed papers' reported numbers (reported.yaml) and their comparison with ours.

The numbers are data with citations, never code: each value keeps the text it was
transcribed from. A comparison always states both protocols; a tiny-profile number
next to a paper number is labelled as such, because the two are not comparable."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import data as D

REPORTED_YAML = Path(__file__).with_name("reported.yaml")
_VALUE = re.compile(r"^\s*(?P<q>[<>~≈]?)\s*(?P<v>-?\d+(?:\.\d+)?)\s*(?P<sig>\*?)\s*(?:±\s*(?P<std>\d+(?:\.\d+)?))?\s*$")
STAGE_METRICS = {
    "stage:defense_seconds_per_image": "defense_seconds_per_image",
    "stage:purifier_seconds_per_image": "purifier_seconds_per_image",
}


def parse_value(raw: Any) -> dict[str, Any]:
    """'0.27* ± 0.08' -> value 0.27, std 0.08, significant; '>500' -> value 500, qualifier '>'."""
    if raw is None:
        return {"value": math.nan, "std": math.nan, "qualifier": "", "significant": False, "raw": "N/A"}
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return {"value": float(raw), "std": math.nan, "qualifier": "", "significant": False, "raw": str(raw)}
    m = _VALUE.match(str(raw))
    if not m:
        raise ValueError(f"cannot read reported value {raw!r}")
    return {"value": float(m["v"]), "std": float(m["std"]) if m["std"] else math.nan,
            "qualifier": m["q"].replace("≈", "~"), "significant": bool(m["sig"]), "raw": str(raw)}


def load(path: Path = REPORTED_YAML) -> tuple[dict[str, Any], pd.DataFrame]:
    """(sources, long frame): one row per reported number with its setting and citation."""
    doc = yaml.safe_load(Path(path).read_text())
    sources = doc["sources"]
    rows = []
    for block in doc["blocks"]:
        src = sources[block["source"]]
        setting = dict(block.get("setting") or {})
        metric_names = list(block["metrics"])
        for row in block["rows"]:
            label, values = row[0], row[1:]
            if block["row_kind"] == "defense":
                ours, values = values[0], values[1:]
                defense, purifier = ours, setting.get("purifier", "none")
            else:
                mapped = (block.get("row_map") or {}).get(label)
                if isinstance(mapped, dict):
                    defense, purifier = mapped.get("defense"), mapped.get("purifier")
                else:
                    defense, purifier = setting.get("defense"), mapped
            if len(values) != len(metric_names):
                raise ValueError(f"{block['id']}: row {label!r} has {len(values)} values for {len(metric_names)} metrics")
            for name, raw in zip(metric_names, values):
                spec = block["metrics"][name] or {}
                rows.append({
                    "block": block["id"], "source": block["source"], "paper": src["title"],
                    "citation": f"{src['authors']}, {block['ref']} ({src['seed']})",
                    "ref": block["ref"], "row": label, "row_kind": block["row_kind"],
                    "defense": defense, "purifier": purifier, "attack": setting.get("attack"),
                    "dataset": setting.get("dataset"), "base_model": setting.get("base_model"),
                    "resolution": setting.get("resolution"), "budget": setting.get("budget"),
                    "setting": json.dumps(setting, default=str),
                    "metric": name, "arrow": spec.get("arrow", ""), "ours_metric": spec.get("ours"),
                    "transform": spec.get("transform"), "metric_note": spec.get("note", ""),
                    "block_note": block.get("note", ""),
                    **parse_value(raw),
                })
    return sources, pd.DataFrame(rows)


def _paper_protocol(r: pd.Series) -> str:
    return f"paper: {r['base_model']}, {r['resolution']} px, {r['dataset']}"


def _our_protocol(g: pd.Series) -> str:
    return f"ours: {g['profile']} profile, {g['base_model']}, {g['resolution']} px, dataset {g['dataset']}"


def compare(reported: pd.DataFrame, cells: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Reported numbers beside ours: one row per reported number and protocol group of ours
    (or one row with no value when nothing of ours matches). gap = ours - reported."""
    groups = D.groups_frame(cells).set_index("protocol_group") if not cells.empty else pd.DataFrame()
    out = []
    for _, r in reported.iterrows():
        base = {k: r[k] for k in ("source", "ref", "row", "defense", "purifier", "attack", "metric", "arrow", "raw", "value", "qualifier", "citation")}
        base["paper_protocol"] = _paper_protocol(r)
        matches = _match(r, cells, metrics)
        if isinstance(matches, str):
            out.append({**base, "ours_metric": "", "ours": math.nan, "gap": math.nan, "group": "", "our_protocol": "", "comparison": matches})
            continue
        for group, mid, ours, n in matches:
            g = groups.loc[group]
            same = g["profile"] == "paper"
            label = ("same profile (paper); check dataset and base model" if same
                     else f"protocols differ: {g['profile']} vs paper — not comparable")
            gap = ours - r["value"] if not math.isnan(r["value"]) and not math.isnan(ours) else math.nan
            out.append({**base, "ours_metric": mid + (" (1 - x)" if r["transform"] == "one_minus" else ""), "ours": ours, "gap": gap, "group": group, "our_protocol": _our_protocol(g) + f", {n} cells",
                        "comparison": label + (f" (reported value is '{r['raw']}')" if r["qualifier"] else "")})
    return pd.DataFrame(out)


def _missing(v: Any) -> bool:
    """None, NaN (pandas turns None into NaN) or empty: no counterpart."""
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _match(r: pd.Series, cells: pd.DataFrame, metrics: pd.DataFrame) -> str | list[tuple[str, str, float, int]]:
    """Our cells for one reported number, averaged per protocol group; or why there are none."""
    ours_metric = r["ours_metric"]
    if _missing(ours_metric):
        return "no counterpart metric in this benchmark"
    if _missing(r["defense"]) or (r["row_kind"] == "purifier" and _missing(r["purifier"])):
        return "no counterpart method in this benchmark"
    if cells.empty:
        return "not reproduced yet"
    purifier = "none" if _missing(r["purifier"]) else r["purifier"]
    sel = cells[(cells["defense"] == r["defense"]) & (cells["purifier"] == purifier)]
    stage_col = STAGE_METRICS.get(ours_metric)
    if stage_col is None:
        if _missing(r["attack"]):
            return "attack has no counterpart (or is not stated)"
        sel = sel[sel["attack"] == r["attack"]]
    if sel.empty:
        return "not reproduced yet"
    found = []
    for group, sub in sel.groupby("protocol_group"):
        if stage_col:
            series = [(ours_metric.partition(":")[2], sub[stage_col].dropna())]
        else:  # one entry per backend: ism[dlib] and ism[insightface] are different numbers
            m = metrics[metrics["cell_key"].isin(sub["cell_key"]) & (metrics["metric"] == ours_metric) & (metrics["status"] == "ok")]
            series = [(mid, g["value"]) for mid, g in m.groupby("metric_id")]
        for mid, vals in series:
            if vals.empty:
                continue
            v = float(vals.mean())
            if r["transform"] == "one_minus":
                v = 1.0 - v
            found.append((group, mid, v, int(len(vals))))
    return found or "our cells have no numeric value for this metric"
