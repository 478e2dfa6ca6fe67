"""Runs cells: plan (resolve protocols, build the artifact graph), execute the
missing stages with an executor, then write one immutable record per cell.

clean -> defense -> purifier links -> personalize -> generate -> metrics -> record

Every stage is an artifact keyed by its inputs (artifacts.py, stages.py), so a
rerun computes only what is missing and a killed run resumes at the stage it was
in. Images cross every boundary as 8-bit PNGs, read back from disk."""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from pathlib import Path
from typing import Any

from . import __version__
from .artifacts import Artifact, ArtifactStore, remove_stale_temp
from .errors import BenchError
from .executors import LocalExecutor
from .planner import Branch, CellPlan, Plan, companion_configs, plan_cell
from .protocol import CellConfig, protocol_group
from .registry import Registry
from .results import ResultsStore
from .stages import StageEnv, StageSpec


def default_home() -> Path:
    return Path(os.environ.get("BENCH_HOME", ".bench")).expanduser()


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        return "cpu"


def check_device(device: str) -> str:
    """The device, or a one-line error before any work: cpu, cuda[:N] (CUDA present, index
    exists) or mps (present). Found only at the first model load, a bad device wastes the
    stages before it."""
    import re

    import torch

    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", device.strip())
    if not m or (m.group(1) != "cuda" and m.group(2)):
        raise BenchError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu")
        if index is not None and int(index) >= torch.cuda.device_count():
            raise BenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0.."
                             f"cuda:{torch.cuda.device_count() - 1})")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BenchError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return device.strip()


class Runner:
    def __init__(self, home: Path | None = None, registry: Registry | None = None, device: str | None = None,
                 quiet: bool = False, log=print, plugin_files: list[str] | None = None, artifacts_url: str | None = None,
                 compare: bool = False):
        self.home = Path(home or default_home()).resolve()
        self.artifacts_url = artifacts_url or os.environ.get("BENCH_ARTIFACTS_URL") or None
        self.plugin_files = [str(Path(p).resolve()) for p in plugin_files or []]
        if registry is None:
            registry = Registry()
            for f in self.plugin_files:
                registry.add_file(f)
        self.registry = registry
        self.device = check_device(device or default_device())
        self.quiet = quiet
        self.log = log
        self.store = ArtifactStore(self.home / "artifacts", self.artifacts_url)
        self.results = ResultsStore(self.home / "results")
        self.compare = compare  # plan each defense cell's baseline and noise companions (the CLI turns it on by default)

    @property
    def env(self) -> StageEnv:
        return StageEnv(home=self.home, device=self.device, quiet=self.quiet, plugin_files=self.plugin_files,
                        artifacts_url=self.artifacts_url)

    def plan(self, cfgs: list[CellConfig], compare: bool | None = None) -> Plan:
        """One CellPlan per config; with `compare`, each defense cell also plans its baseline and
        equal-budget noise companions (shared stages are computed once for the whole plan)."""
        raw_cache: dict = {}
        cells = [plan_cell(cfg, self.registry, raw_cache) for cfg in cfgs]
        if self.compare if compare is None else compare:
            for cfg, cell in zip(cfgs, cells):
                cell.companions = {role: plan_cell(c, self.registry, raw_cache)
                                   for role, c in companion_configs(cfg, cell, self.registry).items()}
        for warning in dict.fromkeys(w for cell in cells for w in cell.warnings):
            self.log(f"warning: {warning}")
        return Plan.build(cells)

    def run_many(self, cfgs: list[CellConfig], executor=None, plan: Plan | None = None) -> list[dict[str, Any]]:
        plan = plan or self.plan(cfgs)
        started = time.time()
        rows: dict[tuple[str, str], tuple[bool, float]] = {}

        def report(st: StageSpec, cached: bool, seconds: float) -> None:
            rows[st.id] = (cached, seconds)
            if not cached:
                self.log(f"  {st.kind} {st.label}: computed in {seconds:.1f} s")

        remove_stale_temp(self.store.root / ".tmp")  # work folders of killed runs (never a live build's)
        failures = (executor or LocalExecutor()).run(plan, self.env, report, self.log) or {}
        records, failed_cells = [], []
        for cell in plan.cells:
            compare = {}
            for role, comp in cell.companions.items():
                if comp_failure := self._failed(comp, failures):
                    failed_cells.append(comp_failure | {"companion_of": cell.cell_key, "role": role})
                    continue
                crec = self.results.get(comp.cell_key) or self._record(comp)
                self.results.add(crec)
                compare[role] = crec
            failure = self._failed(cell, failures)
            if failure:
                failed_cells.append(failure)
                continue
            self.results.clear_failure(cell.cell_key)
            record = self._record(cell)
            if compare:
                record["compare"] = comparison(record, compare)
            existing = self.results.get(cell.cell_key)
            path = self.results.add(record)
            record = existing or record
            if compare and "compare" not in record:  # a record from before comparisons existed
                record["compare"] = comparison(record, compare)
            record["_run"] = {
                "stages": [(st.kind if st.kind != "purified" else "purifier", st.label, rows[st.id][0], rows[st.id][1]) for st in cell.stages],
                "seconds": round(time.time() - started, 2),
                "record_path": str(path),
            }
            records.append(record)
        if failed_cells:
            raise CellsFailed(records, failed_cells)
        return records

    def _failed(self, cell: CellPlan, failures: dict) -> dict[str, Any] | None:
        """The failure record of a cell with a failed or skipped stage (kept in results/failed/,
        replaced by the next run, removed once the cell succeeds), else None."""
        bad = [(st, failures[st.id]) for st in cell.stages if st.id in failures]
        if not bad:
            return None
        first = next(((st, why) for st, why in bad if not why.startswith("not run")), bad[0])
        failure = {"cell_key": cell.cell_key, "identity": cell.identity, "protocol": cell.proto, "status": "failed",
                   "stage": first[0].kind, "plugin": first[0].plugin or first[0].label, "reason": first[1],
                   "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        self.results.add_failure(failure)
        return failure

    def run(self, cfg: CellConfig, executor=None) -> dict[str, Any]:
        return self.run_many([cfg], executor)[0]

    # ----------------------------------------------------------------- record
    def _art(self, st: StageSpec) -> Artifact:
        return self.store.get(st.kind, st.key)

    def _record(self, cell: CellPlan) -> dict[str, Any]:
        proto = cell.proto
        record = {
            "cell_key": cell.cell_key,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "bench_version": __version__,
            "protocol": proto,
            "protocol_group": protocol_group(proto),
            "identity": cell.identity,
            "base_model": cell.defense.inputs["base_id"],
            "stages": {
                "data": _public(self._art(cell.clean)),
                "defense": _public(self._art(cell.defense)),
                "purifier": [_public(self._art(st)) for st in cell.purified],
                "personalize": _public(self._art(cell.personalized)),
                "generate": _public(self._art(cell.generated)),
            },
            "recipe": cell.personalized.inputs["recipe"],
            "links": self._links(proto),
            "metrics": self._metrics(cell.main),
            "environment": {**_environment(self.device), "threads": self.env.threads},
        }
        if cell.control:
            c = cell.control
            record["control"] = {
                "identity": c.identity,
                "note": "non-target identity personalized on the protected model vs on the base model; "
                        "a sound model-level defense leaves these close",
                "protected": {"metrics": self._metrics(c.protected), "personalize": _public(self._art(c.protected.personalized))},
                "base": {"metrics": self._metrics(c.base), "personalize": _public(self._art(c.base.personalized))},
            }
        return record

    def _links(self, proto: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Each method's paper and code (its plugin's `links`), so the page can cite them without importing plugins."""
        named = [("defense", proto["defense"]["name"]), ("attack", proto["attack"]["name"]),
                 *(("purifier", p["name"]) for p in proto.get("purifier") or [])]
        links = {f"{kind}:{name}": dict(self.registry.get(kind, name).links) for kind, name in named}
        return {k: v for k, v in links.items() if v}

    def _metrics(self, branch: Branch) -> dict[str, Any]:
        out = {}
        for mid, st in branch.metrics.items():
            meta = self._art(st).meta
            out[mid] = {k: meta.get(k) for k in ("value", "status", "higher_is_better", "target", "per_image", "extra")}
        return out


class CellsFailed(BenchError):
    """Some cells of a run failed; `records` holds the cells that finished, `failures` the others."""

    def __init__(self, records: list[dict[str, Any]], failures: list[dict[str, Any]]):
        self.records, self.failures = records, failures
        first = failures[0]
        head = first["reason"] if len(failures) == 1 and not records else (
            f"{len(failures)} cell(s) failed (first: {first['identity']}, {first['stage']} stage of {first['plugin']!r}: {first['reason']})")
        super().__init__(head)


def comparison(record: dict[str, Any], companions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The defense's metrics beside its companions' (baseline: no defense; noise: equal budget)
    and the protection: the change the defense causes, signed so that positive = worse for the
    attacker (a lower ISM or identification, a higher FDFR)."""
    out: dict[str, Any] = {"note": "same attack, purifier, identity, seed and protocol; protection > 0 means the defense "
                                   "hurt the attacker more than the companion did"}
    for role, rec in companions.items():
        out[role] = {"cell_key": rec["cell_key"], "defense": rec["protocol"]["defense"],
                     "metrics": {m: v.get("value") if v.get("status") == "ok" else None for m, v in rec["metrics"].items()}}
    protection: dict[str, dict[str, float | None]] = {}
    for mid, v in record["metrics"].items():
        hib, mine = v.get("higher_is_better"), v.get("value") if v.get("status") == "ok" else None
        row = {}
        for role in companions:
            theirs = out[role]["metrics"].get(mid)
            if mine is None or theirs is None or hib is None:
                row[f"vs_{role}"] = None
            else:
                row[f"vs_{role}"] = round((theirs - mine) if hib else (mine - theirs), 6)
        protection[mid] = row
    out["protection"] = protection
    return out


def _public(art: Artifact) -> dict[str, Any]:
    meta = {k: v for k, v in art.meta.items() if k != "inputs"}
    meta["artifact"] = art.key
    return meta


def _environment(device: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device}
    for pkg in ("torch", "diffusers", "transformers", "peft", "numpy", "antipers-bench"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = None
    return env
