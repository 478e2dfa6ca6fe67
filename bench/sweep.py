"""Matrices of cells: a sweep file, or `--defense all --purifier all --attack all`.

Sweep file (YAML):
    cell: {profile: tiny, dataset: {card: anti-db, root: ../shared/data/faces}}   # any cell field
    defenses: [none, advdm, {name: aspl, params: {eps: 8}}]   # or "all"
    purifiers: [none, jpeg, jpeg+gridpure]                   # or "all" (single links)
    attacks: [db]                                           # or "all"
    identities: [n000050, rid_103]                          # or "all"; default: the card's first
    seeds: [0]
    set: ["attack.steps=10", "defense.eps=4,8,12,16"]      # applied to every cell
A numeric defense/attack parameter given several comma-separated values (`--set
defense.eps=4,8,12,16`) is a sweep: one cell per value (budget sweeps; rankings flip with
the budget in the peers' results, docs/leaderboard.md). List-valued parameters keep commas.
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


def matrix_names(registry: Registry, kind: str) -> list[str]:
    """What `all` means: every plugin of the kind that runs without the user's input."""
    return [n for n in registry.names(kind) if registry.get(kind, n).in_all]


def _names(value: Any, kind: str, registry: Registry) -> list[Any]:
    if value in (None, "all", ["all"]):
        return matrix_names(registry, kind)
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _sweep_values(item: str, plugin: type | None) -> list[str] | None:
    """["4", "8"] for "defense.eps=4,8" when `eps` is an int/float parameter of the plugin."""
    key, _, value = item.partition("=")
    kind, _, name = key.strip().partition(".")
    if plugin is None or kind not in ("defense", "attack") or "," not in value or "." in name:
        return None
    param = next((p for p in plugin.params if p.name == name), None)
    return [v.strip() for v in value.split(",") if v.strip()] if param is not None and param.type in (int, float) else None


def sweep_overrides(overrides: list[str], plugins: dict[str, type | None]) -> list[list[str]]:
    """The override lists of every combination of the swept values (one list when none is swept)."""
    choices = []
    for item in overrides:
        values = _sweep_values(item, plugins.get(item.partition(".")[0].strip()))
        choices.append([f"{item.partition('=')[0]}={v}" for v in values] if values else [item])
    return [list(c) for c in itertools.product(*choices)]


def has_sweep(overrides: list[str], plugins: dict[str, type | None]) -> bool:
    return len(sweep_overrides(overrides, plugins)) > 1


def plugin_classes(registry: Registry, defense: Any, attack: Any) -> dict[str, type | None]:
    name = lambda v: v.get("name") if isinstance(v, dict) else v  # noqa: E731
    out: dict[str, type | None] = {}
    for kind, value in (("defense", defense), ("attack", attack)):
        try:
            out[kind] = registry.get(kind, name(value))
        except BenchError:
            out[kind] = None  # unknown or several: the cell build reports it
    return out


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
        for sets in sweep_overrides(overrides, plugin_classes(registry, d, a)):
            cells.append(CellConfig.build(c, sets))
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
