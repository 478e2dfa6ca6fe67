"""Plugin discovery: Python entry points (built-ins and third parties alike) plus
local files given with `--plugin path.py`. Classes are imported only when used."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from .errors import BenchError
from .plugin import KINDS, Plugin

GROUPS = {kind: f"bench.{kind}s" for kind in KINDS}  # bench.defenses, bench.purifiers, ...


@dataclass
class _Entry:
    name: str
    kind: str
    target: str  # "module:Class" or a loaded class
    cls: type[Plugin] | None = None

    def load(self) -> type[Plugin]:
        if self.cls is None:
            module_name, _, attr = self.target.partition(":")
            try:
                module = importlib.import_module(module_name)
                cls = getattr(module, attr)
            except Exception as exc:  # a broken third-party plugin must not crash `bench list`
                raise BenchError(f"{self.kind} plugin {self.name!r} ({self.target}) failed to load: {exc}") from exc
            _check_class(cls, self.kind, self.target)
            self.cls = cls
        return self.cls


def _check_class(cls: object, kind: str, where: str) -> None:
    base = KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise BenchError(f"{where} is not a {base.__name__} subclass")
    if not cls.name:
        raise BenchError(f"{where} declares no name")


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, _Entry]] = {kind: {} for kind in KINDS}
        self._aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        for kind, group in GROUPS.items():
            for ep in entry_points(group=group):
                self._entries[kind].setdefault(ep.name, _Entry(ep.name, kind, ep.value))

    # -- local files ------------------------------------------------------
    def add_file(self, path: str | Path) -> list[str]:
        """Import a plugin file and register every plugin class defined in it."""
        path = Path(path)
        if not path.is_file():
            raise BenchError(f"--plugin {path}: no such file")
        mod_name = f"bench_local_plugin_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise BenchError(f"--plugin {path}: import failed: {exc}") from exc
        added = []
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Plugin) and obj.__module__ == mod_name and obj.name:
                self._entries[obj.kind][obj.name] = _Entry(obj.name, obj.kind, f"{path}:{obj.__name__}", obj)
                added.append(f"{obj.kind}:{obj.name}")
        if not added:
            raise BenchError(f"--plugin {path}: defines no plugin class with a name")
        return added

    # -- lookup -------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        if kind not in KINDS:
            raise BenchError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        return sorted(self._entries[kind])

    def _alias_table(self, kind: str) -> dict[str, str]:
        """Aliases need the classes; built lazily, only when a name is not found."""
        table = self._aliases[kind]
        if not table:
            for entry in self._entries[kind].values():
                try:
                    for alias in entry.load().aliases:
                        table[alias] = entry.name
                except BenchError:
                    continue
        return table

    def canonical(self, kind: str, name: str) -> str:
        if kind not in KINDS:
            raise BenchError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        if name in self._entries[kind]:
            return name
        table = self._alias_table(kind)
        if name in table:
            return table[name]
        candidates = list(self._entries[kind]) + list(table)
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BenchError(f"unknown {kind} {name!r}{hint} (available: {', '.join(self.names(kind))})")

    def get(self, kind: str, name: str) -> type[Plugin]:
        name = self.canonical(kind, name)
        return self._entries[kind][name].load()

    def create(self, kind: str, name: str, params: dict | None, profile: str) -> Plugin:
        return self.get(kind, name)(params or {}, profile)
