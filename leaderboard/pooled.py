"""Pooled FID: one Frechet distance per defense and purifier x attack, over the generated and the
clean reference images of ALL identities of the group together (DLADiff's protocol, seed 004
Supp. 7.3: 200 clean vs 1000 generated images pooled). The cells of a metric run with
`pooling=pooled` store their per-image features and no value of their own; a per-identity FID
(`fid[...]` without pooling, RID / Anti-DreamBooth) is averaged over identities in the main
table instead. The two are labelled apart and never mixed.

No CI is given: the pool is one sample; "vs none" is FID(defense) - FID(no defense) for the
same purifier and attack (> 0: the generated images moved away from the real ones)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import fid_from_features

LABEL = "pooled over identities (DLADiff protocol: all generated vs all clean references of the group)"


def pooled_metric_ids(records: list[dict[str, Any]]) -> list[str]:
    return sorted({mid for r in records for mid, m in (r.get("metrics") or {}).items()
                   if "features_generated" in ((m or {}).get("extra") or {})})


def pooled_fid_table(records: list[dict[str, Any]], cells: pd.DataFrame, group: str, metric_id: str) -> pd.DataFrame:
    """defense, combo, fid, vs_none, identities, n_generated, n_reference, status."""
    labels = cells.set_index("cell_key")
    pools: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if r.get("protocol_group") != group or r["cell_key"] not in labels.index:
            continue
        m = (r.get("metrics") or {}).get(metric_id)
        if m is None:
            continue
        lab = labels.loc[r["cell_key"]]
        pool = pools.setdefault((lab["defense_label"], f"{lab['purifier_label']} · {lab['attack_label']}"),
                                {"gen": [], "ref": [], "ids": set(), "missing": 0, "is_none": lab["defense"] == "none"})
        extra = m.get("extra") or {}
        if "features_generated" not in extra:
            pool["missing"] += 1
            continue
        pool["gen"] += extra["features_generated"]
        pool["ref"] += extra["features_reference"]
        pool["ids"].add(r.get("identity"))
    rows = []
    for (defense, combo), p in sorted(pools.items()):
        ok = not p["missing"] and len(p["gen"]) >= 2 and len(p["ref"]) >= 2
        status = ("ok" if ok else f"unavailable: {p['missing']} cell(s) without stored features" if p["missing"]
                  else "unavailable: fewer than 2 feature vectors on a side (no face found?)")
        value = fid_from_features(np.asarray(p["gen"], np.float64), np.asarray(p["ref"], np.float64)) if ok else math.nan
        rows.append({"defense": defense, "combo": combo, "fid": value, "identities": len(p["ids"]),
                     "n_generated": len(p["gen"]), "n_reference": len(p["ref"]), "status": status, "is_none": p["is_none"]})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    none = table[table["is_none"]].set_index("combo")["fid"]
    table["vs_none"] = [v - none[c] if c in none.index else math.nan for v, c in zip(table["fid"], table["combo"])]
    return table.drop(columns="is_none")
