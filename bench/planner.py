"""From cells to an artifact graph. Each cell becomes a chain of StageSpecs whose
keys are known before anything runs; a matrix of cells shares every stage with the
same key (a defense runs once per identity, a purification once per protected set)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from . import data
from .artifacts import ArtifactStore, stable_hash
from .errors import BenchError
from .plugin import ImageDefense, ModelDefense, Recipe, checked_budget
from .protocol import CellConfig, resolve
from .registry import Registry
from .stages import StageSpec, base_identity


@dataclass
class Branch:
    """Attack on one image set: personalize -> generate -> metrics (against `clean`'s references)."""

    personalized: StageSpec
    generated: StageSpec
    metrics: dict[str, StageSpec]
    controls: list[StageSpec] = field(default_factory=list)  # the unpersonalised samples gallery metrics calibrate with

    @property
    def stages(self) -> list[StageSpec]:
        return [self.personalized, self.generated, *self.controls, *self.metrics.values()]


@dataclass
class Control:
    """Model-level defenses only: a non-target identity personalized on the protected
    model and on the base model. A model that merely broke would otherwise score as a
    perfect defense; the record shows both numbers side by side."""

    identity: str
    clean: StageSpec
    protected: Branch
    base: Branch

    @property
    def stages(self) -> list[StageSpec]:
        return [self.clean, *self.protected.stages, *self.base.stages]


@dataclass
class CellPlan:
    proto: dict[str, Any]
    cell_key: str
    identity: str
    clean: StageSpec
    defense: StageSpec
    purified: list[StageSpec]
    main: Branch
    control: Control | None = None
    gallery: dict[str, StageSpec] = field(default_factory=dict)  # clean stage of every identity on the card
    companions: dict[str, "CellPlan"] = field(default_factory=dict)  # "baseline" (no defense), "noise" (same budget)
    warnings: list[str] = field(default_factory=list)  # about the input images (upscaled, transparent, flat...)

    @property
    def personalized(self) -> StageSpec:
        return self.main.personalized

    @property
    def generated(self) -> StageSpec:
        return self.main.generated

    @property
    def metrics(self) -> dict[str, StageSpec]:
        return self.main.metrics

    @property
    def stages(self) -> list[StageSpec]:
        control = self.control.stages if self.control else []
        gallery = [st for st in self.gallery.values() if st.id != self.clean.id]
        return [self.clean, *gallery, self.defense, *self.purified, *self.main.stages, *control]


def _clean_stage(proto: dict[str, Any], card: dict[str, Any], raw: data.RawSubject) -> StageSpec:
    ds = proto["dataset"]
    return StageSpec("clean", {
        "resolution": proto["resolution"], "card": card["name"], "card_ref": ds["card"], "root": ds.get("root"), "identity": raw.identity,
        "fingerprint": raw.fingerprint, "v": 2,  # v2: the train images also at their own resolution
    }, label=f"{raw.identity}", plugin="data")


def _control_generation(proto: dict[str, Any], clean: StageSpec, attack_base: dict, recipe: dict, deps: list,
                        spec: dict) -> tuple[StageSpec, StageSpec]:
    """The `none` attack (nothing learned) on the same model, prompts, seeds and recipe:
    what the model draws for these prompts before it has seen the subject."""
    common = {"profile": proto["profile"], "resolution": proto["resolution"]}
    seed = proto["seed"]
    personalized = StageSpec("personalized", {**common, "upstream": {"kind": "clean", "key": clean.key}, "plugin": spec, "seed": seed,
                                              "base": attack_base, "recipe": recipe}, deps=[clean.id, *deps], label="none (control)",
                             plugin="none")
    return StageSpec("generated", {**common, "personalized": personalized.key, "plugin": spec, "seed": seed, "base": attack_base,
                                   "generation": proto["generation"], "recipe": recipe},
                     deps=[personalized.id, *deps], label="control samples", plugin="none:generate"), personalized


def _branch(proto: dict[str, Any], acls, upstream: dict, deps: list, attack_base: dict, recipe: dict, clean: StageSpec,
            registry: Registry | None = None, gallery: dict[str, StageSpec] | None = None) -> Branch:
    common = {"profile": proto["profile"], "resolution": proto["resolution"]}
    aspec, seed = proto["attack"], proto["seed"]
    base_deps = deps[1:]  # a protected model, when the attack runs on one
    personalized = StageSpec("personalized", {**common, "upstream": upstream, "plugin": aspec, "seed": seed, "base": attack_base,
                                              "recipe": recipe}, deps=deps, label=aspec["name"],
                             plugin=aspec["name"], needs=dict(acls.needs.gpu_memory_gb))
    generated = StageSpec("generated", {**common, "personalized": personalized.key, "plugin": aspec, "seed": seed,
                                        "base": attack_base, "generation": proto["generation"], "recipe": recipe},
                          deps=[personalized.id, *base_deps], label=f"{aspec['name']} generation", plugin=aspec["name"] + ":generate")
    metrics, controls = {}, []
    control = None
    for m in proto["metrics"]:
        inputs = {**common, "images": generated.key, "references": clean.key, "metric": m}
        mdeps = [generated.id, clean.id]
        if registry is not None and gallery is not None and registry.get("metric", m["name"]).uses_gallery:
            if control is None:
                ncls = registry.get("attack", "none")
                nspec = {"name": ncls.name, "version": ncls.version, "params": {}}
                control, cpers = _control_generation(proto, clean, attack_base, recipe, base_deps, nspec)
                controls = [cpers, control]
            inputs.update(gallery={k: st.key for k, st in gallery.items()}, control=control.key, subject=clean.inputs["identity"])
            mdeps += [st.id for st in gallery.values()] + [control.id]
        metrics[m["id"]] = StageSpec("metric", inputs, deps=mdeps, label=m["id"], plugin=m["id"])
    return Branch(personalized, generated, metrics, controls)


def control_identity(card: dict[str, Any], root: str | None, target: str, chosen: str | None) -> str:
    """The non-target identity of a model-level cell: as given, else the card's first other one."""
    if chosen:
        if chosen == target:
            raise BenchError(f"dataset.control_identity must differ from the protected identity {target!r}")
        return chosen
    others = [i for i in data.identities(card, root) if i != target]
    if not others:
        raise BenchError(f"a model-level defense needs a second (non-target) identity, and data card {card['name']!r} "
                         f"has only {target!r}: set --set dataset.control_identity=<identity> or use another card")
    return others[0]


def plan_cell(cfg: CellConfig, registry: Registry, raw_cache: dict | None = None) -> CellPlan:
    """`raw_cache` (one dict per plan) keeps each identity's images read once for a whole matrix."""
    proto = resolve(cfg, registry)  # validates every name and parameter before computing
    common = {"profile": proto["profile"], "resolution": proto["resolution"]}
    ds = proto["dataset"]
    card = data.load_card(ds["card"])
    cache = {} if raw_cache is None else raw_cache

    warnings: list[str] = []

    def load_raw(identity: str | None) -> data.RawSubject:
        key = stable_hash([card, ds.get("root"), identity])
        if key not in cache:
            cache[key] = data.load_raw(card, ds.get("root"), identity)
        raw = cache[key]
        warnings.extend(raw.warnings + raw.check_resolution(proto["resolution"]))  # too-small images: error here
        return raw

    raw = load_raw(ds.get("identity"))
    proto["dataset"] = {**ds, "identity": raw.identity}
    clean = _clean_stage(proto, card, raw)
    gallery: dict[str, StageSpec] = {}
    if any(registry.get("metric", m["name"]).uses_gallery for m in proto["metrics"]):
        for ident in data.identities(card, ds.get("root")):
            gallery[ident] = clean if ident == raw.identity else _clean_stage(proto, card, load_raw(ident))
    base = base_identity(proto["base_model"])
    base_source = {**proto["base_model"]}
    seed = proto["seed"]

    dspec = proto["defense"]
    dcls = registry.get("defense", dspec["name"])
    defense = StageSpec("defense", {**common, "clean": clean.key, "plugin": dspec, "seed": seed, "base": base_source,
                                    "base_id": base}, deps=[clean.id], label=dspec["name"], plugin=dspec["name"],
                        needs=dict(dcls.needs.gpu_memory_gb))
    model_level = issubclass(dcls, ModelDefense)
    if issubclass(dcls, ImageDefense):
        checked_budget(dcls(dspec["params"], proto["profile"]))  # at plan time: a bad budget never starts work
    plain_base = {"source": base_source, "base_id": base}
    if model_level:  # APDM: the attacker personalizes the PROTECTED model on CLEAN images
        upstream = {"kind": "clean", "key": clean.key}
        attack_base = {"defense_model": defense.key}
        upstream_dep = clean.id
    else:
        upstream = {"kind": "defense", "key": defense.key}
        attack_base = plain_base
        upstream_dep = defense.id

    purified, merged = [], Recipe()
    for link in proto["purifier"]:
        pcls = registry.get("purifier", link["name"])
        st = StageSpec("purified", {**common, "upstream": upstream, "clean": clean.key, "plugin": link, "seed": seed},
                       deps=[upstream_dep, clean.id], label=link["name"], plugin=link["name"])
        purified.append(st)
        merged = merged.merge(pcls(link["params"], proto["profile"]).recipe())
        upstream, upstream_dep = {"kind": "purified", "key": st.key}, st.id
    recipe = merged.as_dict()

    acls = registry.get("attack", proto["attack"]["name"])
    base_deps = [defense.id] if model_level else []
    main = _branch(proto, acls, upstream, [upstream_dep, *base_deps], attack_base, recipe, clean, registry, gallery)
    control = None
    if model_level:
        ident = control_identity(card, ds.get("root"), raw.identity, ds.get("control_identity"))
        craw = load_raw(ident)
        cclean = _clean_stage(proto, card, craw)
        cup = {"kind": "clean", "key": cclean.key}
        control = Control(ident, cclean,
                          protected=_branch(proto, acls, cup, [cclean.id, defense.id], attack_base, {}, cclean, registry, gallery),
                          base=_branch(proto, acls, cup, [cclean.id], plain_base, {}, cclean, registry, gallery))
        proto["dataset"]["control_identity"] = ident
    return CellPlan(proto, stable_hash(proto), raw.identity, clean, defense, purified, main, control, gallery,
                    warnings=list(dict.fromkeys(warnings)))


def companion_configs(cfg: CellConfig, cell: CellPlan, registry: Registry) -> dict[str, CellConfig]:
    """The two cells a defense's number is read against (same attack, purifier, identity,
    seed and protocol): "baseline", no defense; "noise", the `noise` control at the defense's
    declared budget (image defenses with a budget only). A defense that does no better than
    noise of its own budget protects nothing."""
    from .protocol import PluginSpec

    d = cell.proto["defense"]
    if d["name"] == "none":
        return {}
    pinned = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"identity": cell.identity})})
    out = {"baseline": pinned.model_copy(update={"defense": PluginSpec(name="none")})}
    dcls = registry.get("defense", d["name"])
    if d["name"] != "noise" and issubclass(dcls, ImageDefense):
        budget = checked_budget(dcls(d["params"], cell.proto["profile"]))
        if budget:
            out["noise"] = pinned.model_copy(update={"defense": PluginSpec(name="noise", params={"eps": float(budget)})})
    return out


@dataclass
class Plan:
    cells: list[CellPlan]
    stages: dict[tuple[str, str], StageSpec] = field(default_factory=dict)  # unique, in dependency order

    @classmethod
    def build(cls, cells: list[CellPlan]) -> "Plan":
        plan = cls(cells)
        for cell in cells:
            for comp in cell.companions.values():
                for st in comp.stages:
                    plan.stages.setdefault(st.id, st)
            for st in cell.stages:
                plan.stages.setdefault(st.id, st)
        return plan

    def status(self, store: ArtifactStore) -> dict[tuple[str, str], bool]:
        """Stage id -> already cached?"""
        return {sid: store.exists(*sid) for sid in self.stages}

    def summary(self, store: ArtifactStore) -> list[dict[str, Any]]:
        """Rows per (stage kind, plugin): total, cached, to compute, estimated seconds."""
        cached = self.status(store)
        history = _history(store)
        rows: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for sid, st in self.stages.items():
            key = (st.kind, st.plugin or st.label)
            rows[key]["total"] += 1
            rows[key]["cached" if cached[sid] else "todo"] += 1
        out = []
        for (kind, plugin), c in rows.items():
            est = history.get((kind, plugin))
            out.append({"stage": kind, "plugin": plugin, "total": c["total"], "cached": c["cached"], "to_compute": c["todo"],
                        "est_seconds": None if est is None else round(est * c["todo"], 1)})
        order = {k: i for i, k in enumerate(("clean", "defense", "purified", "personalized", "generated", "metric"))}
        return sorted(out, key=lambda r: (order[r["stage"]], r["plugin"]))


def _history(store: ArtifactStore) -> dict[tuple[str, str], float]:
    """Mean seconds of past artifacts per (kind, plugin): the plan's cost estimate."""
    import json

    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for kind_dir in (p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for art in kind_dir.iterdir():
            try:
                meta = json.loads((art / "artifact.json").read_text())
            except (OSError, ValueError):
                continue
            inputs = meta.get("inputs") or {}
            plugin = (inputs.get("plugin") or {}).get("name") or (inputs.get("metric") or {}).get("id") or "data"
            if kind_dir.name == "generated":
                plugin += ":generate"
            acc[(kind_dir.name, plugin)].append(float(meta.get("seconds", 0.0)))
    return {k: sum(v) / len(v) for k, v in acc.items()}
