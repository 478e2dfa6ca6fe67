"""Typed plugin parameters with per-profile defaults and the source of every default.

A plugin declares `params = [Param(...), ...]`; the harness validates user values
(`--set defense.eps=8`) against them, fills profile defaults and records the
resolved values (and their sources) in every result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import BenchError

PROFILES = ("tiny", "paper")
_UNSET = object()


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any = None  # used by every profile without its own value
    tiny: Any = _UNSET
    paper: Any = _UNSET
    source: str = ""  # where the (paper) default comes from: paper section / repo file
    help: str = ""
    ge: float | None = None  # inclusive lower bound
    gt: float | None = None  # exclusive lower bound
    le: float | None = None  # inclusive upper bound
    choices: tuple | None = None
    unit: str = ""  # e.g. "px/255" for budgets in 0-255 pixel units
    setup: bool = False  # where weights live, which device: not a method default, so no source to cite

    def default_for(self, profile: str) -> Any:
        value = getattr(self, profile, _UNSET)
        return self.default if value is _UNSET else value

    def coerce(self, value: Any, owner: str) -> Any:
        where = f"{owner}.{self.name}"
        try:
            if value is None:
                out = None
            elif self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    out = low in ("true", "1", "yes")
                else:
                    out = bool(value)
            elif self.type is list:
                if isinstance(value, str):
                    out = [v.strip() for v in value.split(",") if v.strip()]
                else:
                    out = list(value)
            elif self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                out = int(value)
            elif self.type is float:
                out = float(value)
            else:
                out = self.type(value)
        except (TypeError, ValueError):
            raise BenchError(f"{where}: expected {self.type.__name__}, got {value!r}") from None
        if out is None:
            return out
        if self.choices is not None:
            vals = out if isinstance(out, list) else [out]
            bad = [v for v in vals if v not in self.choices]
            if bad:
                raise BenchError(f"{where}: {bad[0]!r} is not one of {list(self.choices)}")
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            # NaN fails every comparison, so no bound below could reject it: one rule for every plugin.
            if math.isnan(out):
                raise BenchError(f"{where}: NaN is not a valid value")
            bounded = any(b is not None for b in (self.ge, self.gt, self.le))
            if math.isinf(out) and bounded:
                raise BenchError(f"{where}: must be finite, got {out}")
            if self.ge is not None and out < self.ge:
                raise BenchError(f"{where} must be >= {self.ge}, got {out}")
            if self.gt is not None and out <= self.gt:
                raise BenchError(f"{where} must be > {self.gt}, got {out}")
            if self.le is not None and out > self.le:
                raise BenchError(f"{where} must be <= {self.le}, got {out}")
        return out


@dataclass(frozen=True)
class Needs:
    """What a plugin needs to run, shown by `bench list` and used by schedulers."""

    weights: tuple[str, ...] = ()
    gpu_memory_gb: dict[str, float] = field(default_factory=dict)  # per profile
    notes: str = ""


def resolve_params(params: list[Param], values: dict[str, Any], profile: str, owner: str) -> dict[str, Any]:
    """Validate user values and fill the profile's defaults; unknown names are errors."""
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    known = {p.name: p for p in params}
    unknown = sorted(set(values) - set(known))
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], list(known), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise BenchError(
            f"{owner} has no parameter {unknown[0]!r}{extra}; it takes: {', '.join(sorted(known)) or 'none'}"
        )
    out = {}
    for p in params:
        raw = values[p.name] if p.name in values else p.default_for(profile)
        out[p.name] = p.coerce(raw, owner)
    return out


def parse_assignments(items: list[str], kind: str, example: str) -> dict[str, str]:
    """`--set KEY=VALUE` items of commands that configure ONE plugin (`bench check plugin`,
    `bench train`): a leading `<kind>.` is optional; values stay strings for `resolve_params`."""
    values = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set {item!r}: expected KEY=VALUE (e.g. {example})")
        values[key.strip().removeprefix(f"{kind}.")] = val.strip()
    return values


class ParamView(dict):
    """Resolved parameters with attribute access (`self.p.eps`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
