"""Matrices of cells: a sweep file, or `--defense all --purifier all --attack all`.

Sweep file (YAML):
    cell: {profile: tiny, dataset: {card: anti-db, root: ../shared/data/faces}}   # any cell field
    defenses: [none, advdm, {name: aspl, params: {eps: 8}}]   # or "all"
    purifiers: [none, jpeg, jpeg+gridpure]                   # or "all" (single links)
    attacks: [db]                                           # or "all"
    identities: [n000050, rid_103]                          # or "all"; default: the card's first
    seeds: [0]
    set: ["attack.steps=10"]                                # applied to every cell
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from . import data
from .errors import BenchError
from .profiles import profile as get_profile
from .protocol import CellConfig
from .registry import Registry


def _names(value: Any, kind: str, registry: Registry) -> list[Any]:
    if value in (None, "all", ["all"]):
        return registry.names(kind)
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def expand(cell: dict[str, Any], defenses: Any, purifiers: Any, attacks: Any, identities: Any, seeds: list[int],
           overrides: list[str], registry: Registry) -> list[CellConfig]:
    base = CellConfig.build(cell).model_dump()
    ds = base.get("dataset") or {}
    prof = get_profile(base.get("profile", "tiny"))
    card_name = ds.get("card") or prof["dataset"]["card"]
    if identities in ("all", ["all"]):
        ids = data.identities(data.load_card(card_name), ds.get("root"))
        if not ids:
            raise BenchError(f"no identities found for data card {card_name!r}")
    elif identities:
        ids = _names(identities, "", registry) if isinstance(identities, str) else list(identities)
    else:
        ids = [ds.get("identity")]
    cells = []
    for d, p, a, ident, seed in itertools.product(
        _names(defenses, "defense", registry), _names(purifiers, "purifier", registry), _names(attacks, "attack", registry), ids, seeds
    ):
        c = dict(base)
        c.update(defense=d, purifier=p, attack=a, seed=seed, dataset={**ds, "identity": ident})
        cells.append(CellConfig.build(c, overrides))
    return cells


def load_sweep(path: str | Path, registry: Registry, extra_overrides: list[str] | None = None) -> list[CellConfig]:
    try:
        spec = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"{path}: cannot read sweep ({exc.__class__.__name__})") from None
    unknown = set(spec) - {"cell", "defenses", "purifiers", "attacks", "identities", "seeds", "set"}
    if unknown:
        raise BenchError(f"{path}: unknown sweep keys {sorted(unknown)}")
    return expand(spec.get("cell") or {}, spec.get("defenses", ["none"]), spec.get("purifiers", ["none"]),
                  spec.get("attacks", ["dreambooth"]), spec.get("identities"), list(spec.get("seeds") or [0]),
                  list(spec.get("set") or []) + list(extra_overrides or []), registry)
