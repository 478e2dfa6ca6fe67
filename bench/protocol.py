"""The protocol of one cell: dataset x identity x defense x purifier x attack x seed.

`CellConfig` is what a user writes (CLI flags, `--set k=v`, or YAML); `resolve()`
turns it into a fully explicit, hashable protocol: canonical plugin names,
every parameter with its profile default, the base model, the generation
protocol and the metric set. The resolved protocol goes into every record."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .artifacts import stable_hash
from .errors import BenchError
from .profiles import PROMPT_SETS
from .profiles import profile as get_profile


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginSpec(_Model):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class DatasetSpec(_Model):
    card: str | None = None  # data card name (data_cards/*.yaml) or a path to a card
    root: str | None = None  # where the images are (overrides the card's root)
    identity: str | None = None
    control_identity: str | None = None  # model-level defenses: the non-target identity (default: the card's next one)


class ModelSource(_Model):
    id: str | None = None  # hub id, or "zoo:<name>" for the tiny zoo
    revision: str | None = None  # pinned commit on the hub
    path: str | None = None  # local diffusers folder; wins over id
    mirrors: list[str] = Field(default_factory=list)


class GenerationSpec(_Model):
    prompt_set: str | None = None  # a name in profiles.PROMPT_SETS; explicit `prompts` win
    prompts: list[str] | None = None
    images_per_prompt: int | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, gt=0)
    guidance_scale: float | None = Field(default=None, ge=0)
    sampler: str | None = None
    negative_prompt: str | None = None


class CellConfig(_Model):
    profile: str = "tiny"
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    defense: PluginSpec = Field(default_factory=lambda: PluginSpec(name="none"))
    purifier: list[PluginSpec] = Field(default_factory=lambda: [PluginSpec(name="none")])
    attack: PluginSpec = Field(default_factory=lambda: PluginSpec(name="dreambooth"))
    base_model: ModelSource = Field(default_factory=ModelSource)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    metrics: list[str] | None = None
    seed: int = 0
    resolution: int | None = Field(default=None, gt=7)

    @field_validator("defense", "attack", mode="before")
    @classmethod
    def _plugin_from_str(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("purifier", mode="before")
    @classmethod
    def _chain(cls, v: Any) -> Any:
        """`"codeformer-sr+jpeg"` -> two links, applied left to right."""
        if isinstance(v, str):
            links = [n.strip() for n in v.split("+")]
            if len(links) > 1 and not all(links):
                raise ValueError(f"purifier chain {v!r} has an empty link; write e.g. jpeg+gridpure")
            return [{"name": n} for n in links if n] or [{"name": "none"}]
        if isinstance(v, dict):
            return [v]
        return [{"name": x} if isinstance(x, str) else x for x in v]

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [m.strip() for m in re.split(r",(?![^\[]*\])", v) if m.strip()]  # commas inside [...] stay
        return v

    # ------------------------------------------------------------- building
    @classmethod
    def build(cls, data: dict[str, Any], overrides: list[str] | None = None) -> "CellConfig":
        data = copy.deepcopy(data)
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            raise BenchError(_one_line(exc)) from None
        for item in overrides or []:
            cfg = cfg.with_override(item)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "CellConfig":
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BenchError(f"{path}: cannot read config ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise BenchError(f"{path}: a cell config must be a mapping")
        return cls.build(data, overrides)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(exclude_defaults=False), sort_keys=False)

    def with_override(self, item: str) -> "CellConfig":
        """Apply one `key=value` (value parsed as YAML): defense.eps=8, generation.steps=5,
        purifier.quality=50 (single link), purifier.jpeg.quality=50 or purifier.1.quality=50."""
        if "=" not in item:
            raise BenchError(f"--set {item!r}: expected key=value, e.g. defense.eps=8")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = [p for p in key.strip().split(".") if p]
        data = self.model_dump()
        head = parts[0] if parts else ""
        if head in ("defense", "attack") and len(parts) == 2:
            if parts[1] == "name":
                data[head]["name"] = value
            else:
                data[head]["params"][parts[1]] = value
        elif head == "purifier" and len(parts) in (2, 3):
            chain = data["purifier"]
            if len(parts) == 2:
                if len(chain) != 1:
                    raise BenchError(f"--set {key}: the purifier chain has {len(chain)} links; use purifier.<name>.{parts[1]}")
                link = chain[0]
            else:
                link = _chain_link(chain, parts[1], key)
            link["params"][parts[-1]] = value
        elif head in ("dataset", "base_model", "generation") and len(parts) == 2:
            data[head][parts[1]] = value
        elif head in ("seed", "profile", "resolution", "metrics") and len(parts) == 1:
            data[head] = value
        else:
            raise BenchError(
                f"--set {key}: unknown key; use defense.<param>, attack.<param>, purifier.<param>, "
                "dataset.<field>, base_model.<field>, generation.<field>, seed, profile, resolution or metrics"
            )
        try:
            return CellConfig.model_validate(data)
        except ValidationError as exc:
            raise BenchError(f"--set {item}: {_one_line(exc)}") from None


def _chain_link(chain: list[dict], sel: str, key: str) -> dict:
    if sel.isdigit() and int(sel) < len(chain):
        return chain[int(sel)]
    for link in chain:
        if link["name"] == sel:
            return link
    raise BenchError(f"--set {key}: no purifier link {sel!r} in the chain {[c['name'] for c in chain]}")


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"invalid config at {loc or 'top level'}: {err.get('msg')}"


# ------------------------------------------------------------------ resolving
def resolve(cfg: CellConfig, registry) -> dict[str, Any]:
    """Fully explicit protocol (plain JSON-able dict) with canonical names and defaults."""
    prof = get_profile(cfg.profile)

    def plugin(kind: str, spec: PluginSpec) -> dict[str, Any]:
        cls = registry.get(kind, spec.name)
        inst = cls(spec.params, cfg.profile)  # validates parameters now, before any compute
        return {"name": cls.name, "version": cls.version, "params": dict(inst.p)}

    base = {**prof["base_model"], **cfg.base_model.model_dump(exclude_none=True, exclude_defaults=True)}
    if cfg.base_model.path:
        base["id"] = None
    gen = resolve_generation({**prof["generation"], **cfg.generation.model_dump(exclude_none=True)}, cfg.generation.prompts)
    dataset = {**prof["dataset"], **cfg.dataset.model_dump(exclude_none=True)}
    metric_ids = cfg.metrics if cfg.metrics is not None else list(prof["metrics"])
    metrics = [resolve_metric(m, registry, cfg.profile) for m in metric_ids]
    return {
        "profile": cfg.profile,
        "resolution": cfg.resolution or prof["resolution"],
        "seed": cfg.seed,
        "dataset": dataset,
        "base_model": base,
        "defense": plugin("defense", cfg.defense),
        "purifier": [plugin("purifier", p) for p in cfg.purifier if p.name != "none"] or [plugin("purifier", PluginSpec(name="none"))],
        "attack": plugin("attack", cfg.attack),
        "generation": gen,
        "metrics": metrics,
    }


def resolve_generation(gen: dict[str, Any], explicit_prompts: list[str] | None) -> dict[str, Any]:
    """Prompts from the named set unless given explicitly (then the set is "custom")."""
    if explicit_prompts:
        return {**gen, "prompt_set": "custom", "prompts": list(explicit_prompts)}
    name = gen.get("prompt_set") or "anti-db"
    if name not in PROMPT_SETS:
        raise BenchError(f"unknown prompt set {name!r}; choose one of {sorted(PROMPT_SETS)} or give generation.prompts")
    return {**gen, "prompt_set": name, "prompts": list(PROMPT_SETS[name])}


def parse_metric_id(metric_id: str) -> tuple[str, dict[str, Any]]:
    """"ism[dlib]" -> ("ism", {"backend": "dlib"}); "fid[dlib-face,pooling=pooled]" -> ("fid",
    {"backend": "dlib-face", "pooling": "pooled"}): the backend first, then KEY=VALUE parameters."""
    name, bracket, rest = metric_id.partition("[")
    if bracket and not rest.endswith("]"):
        raise BenchError(f"metric {metric_id!r}: expected NAME[BACKEND] or NAME[BACKEND,KEY=VALUE,...]")
    params: dict[str, Any] = {}
    for i, part in enumerate(p.strip() for p in rest[:-1].split(",")) if bracket else ():
        key, eq, val = part.partition("=")
        if eq and key.strip():
            params[key.strip()] = val.strip()
        elif i == 0 and part and not eq:
            params["backend"] = part
        else:
            raise BenchError(f"metric {metric_id!r}: {part!r} is not KEY=VALUE (the backend comes first)")
    return name.strip(), params


def resolve_metric(metric_id: str, registry, profile: str) -> dict[str, Any]:
    name, params = parse_metric_id(metric_id)
    cls = registry.get("metric", name)
    inst = cls(params, profile)
    return {"id": inst.metric_id, "name": cls.name, "version": cls.version, "params": dict(inst.p)}


def protocol_group(resolved: dict[str, Any]) -> str:
    """Cells are comparable only within one group: same profile, base model, resolution,
    generation protocol, dataset and metric backends; attack and purifier are
    dimensions within a group (design.md, "Results")."""
    return stable_hash(
        {
            "profile": resolved["profile"],
            "resolution": resolved["resolution"],
            "base_model": resolved["base_model"],
            "generation": resolved["generation"],
            "dataset": resolved["dataset"].get("card"),
            # full metric specs: a definition or pooling change alters values without changing the id
            "metrics": [[m["id"], m["params"]] for m in resolved["metrics"]],
        },
        length=12,
    )
