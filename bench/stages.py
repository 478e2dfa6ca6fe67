"""The six stage kinds of a cell and how each is computed from its inputs.

A stage is fully described by (kind, inputs): `inputs` is plain JSON holding the
plugin spec, parameters, seed and the keys of upstream artifacts, and its hash is
the artifact key. `execute()` rebuilds everything it needs from that description
and the artifact store, so any executor (in-process, a process pool, Ray workers)
can run any stage whose upstream artifacts exist."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import data, models, zoo
from .artifacts import Artifact, ArtifactStore, stable_hash
from .context import Context
from .errors import BenchError, BudgetExceeded, StageFailed
from .images import load_pngs, save_pngs
from .peak_memory import PeakMemory
from .perceptibility import pair_measures
from .plugin import (Generation, GeneratedImage, ImageDefense, MetricResult, ModelDefense, ModelRef, Recipe, Subject,
                     checked_budget)
from .registry import Registry

KINDS = ("clean", "defense", "purified", "personalized", "generated", "metric")


@dataclass
class StageSpec:
    kind: str
    inputs: dict[str, Any]
    deps: list[tuple[str, str]] = field(default_factory=list)  # (kind, key) of upstream stages
    label: str = ""
    plugin: str = ""  # plugin name, for cost estimates
    needs: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return stable_hash(self.inputs)

    @property
    def id(self) -> tuple[str, str]:
        return (self.kind, self.key)


@dataclass
class StageEnv:
    """What a worker needs besides the stage spec; small and picklable."""

    home: Path
    device: str = "cpu"
    quiet: bool = False
    plugin_files: list[str] = field(default_factory=list)
    # CPU float results depend on how reductions are split across threads: every
    # executor runs stages with the driver's thread count so records match exactly.
    threads: int = field(default_factory=lambda: _default_threads())
    artifacts_url: str | None = None  # fsspec URL shared by all workers (see ArtifactStore)

    def registry(self) -> Registry:
        reg = Registry()
        for f in self.plugin_files:
            reg.add_file(f)
        return reg

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.home / "artifacts", self.artifacts_url)


def _default_threads() -> int:
    import os

    return int(os.environ.get("BENCH_THREADS", 0)) or len(os.sched_getaffinity(0))


def base_identity(base_model: dict[str, Any]) -> dict[str, Any]:
    """What identifies a base model in keys, known before anything is downloaded or built."""
    mid = base_model.get("id")
    rev = base_model.get("revision")
    if mid and mid.startswith("zoo:") and zoo.known(mid[4:]):
        rev = zoo.zoo_revision(mid[4:])
    return {"id": None if base_model.get("path") else mid, "path": base_model.get("path"), "revision": rev}


# ----------------------------------------------------------------- helpers
def progress_path(store: ArtifactStore, key: str) -> Path:
    """Saved progress of a long stage (by its key): beside the store's temp folders, removed once
    the artifact exists."""
    return store.root / ".progress" / f"{key}.pt"


def _ctx(env: StageEnv, inputs: dict[str, Any], store: ArtifactStore, log) -> Context:
    return Context(profile=inputs["profile"], seed=inputs.get("seed", 0), resolution=inputs["resolution"], store=store,
                   home=env.home, device=env.device, quiet=env.quiet, log=log,
                   progress_path=progress_path(store, stable_hash(inputs)))


def _plugin_and_ctx(env: StageEnv, kind: str, inputs: dict[str, Any], store: ArtifactStore, log):
    """The stage's plugin instance (parameters validated again in the worker) and its Context."""
    spec = inputs["metric"] if kind == "metric" else inputs["plugin"]
    plugin = env.registry().create(kind, spec["name"], spec["params"], inputs["profile"])
    return plugin, _ctx(env, inputs, store, log)


def _need(store: ArtifactStore, kind: str, key: str) -> Artifact:
    art = store.get(kind, key)
    if art is None:
        raise BenchError(f"internal: upstream {kind} artifact {key} is missing")
    return art


def subject_from(art: Artifact) -> Subject:
    return Subject(
        identity=art.meta["identity"],
        train=load_pngs(art.path / "train"),
        surrogate=load_pngs(art.path / "surrogate"),
        reference=load_pngs(art.path / "reference"),
        train_names=[p.stem for p in sorted((art.path / "train").glob("*.png"))],
        train_original=load_pngs(art.path / "train_original"),
    )


def model_ref(inputs_base: dict[str, Any], store: ArtifactStore, zoo_root: Path) -> ModelRef:
    """A base model, or a model-level defense's protected model (an artifact)."""
    if inputs_base.get("defense_model"):
        art = _need(store, "defense", inputs_base["defense_model"])
        return ModelRef(path=art.path / "model", source=f"defense:{art.key}", revision=art.key,
                        weights=models.folder_hashes(art.path / "model"))
    return models.resolve(inputs_base["source"], zoo_root)


def upstream_images(store: ArtifactStore, ref: dict[str, str], role: str = "images") -> list[np.ndarray]:
    art = _need(store, ref["kind"], ref["key"])
    return load_pngs(art.path / (role if ref["kind"] != "clean" else "train"))


def _check_images(out: list, ref: list, who: str) -> None:
    if not isinstance(out, (list, tuple)):
        raise BenchError(f"{who} returned {type(out).__name__}, expected a list of {len(ref)} uint8 images")
    if len(out) != len(ref):
        raise BenchError(f"{who} returned {len(out)} images for {len(ref)} inputs")
    for o, r in zip(out, ref):
        if not isinstance(o, np.ndarray) or o.dtype != np.uint8 or o.shape != r.shape:
            got = f"{getattr(o, 'dtype', type(o).__name__)} {getattr(o, 'shape', '')}"
            raise BenchError(f"{who} must return uint8 images shaped like its inputs {r.shape}, got {got}")


# ----------------------------------------------------------------- execute
def execute(env: StageEnv, spec: StageSpec, log=print) -> Artifact:
    """Compute the stage unless its artifact exists (then it is returned as cached)."""
    store = env.store()
    found = store.get(spec.kind, spec.key)
    if found is not None:
        return found
    import torch

    torch.set_num_threads(env.threads)
    try:
        build = BUILDERS[spec.kind](env, spec.inputs, store, log)
        art = store.ensure(spec.kind, spec.key, build, spec.inputs)
        progress_path(store, spec.key).unlink(missing_ok=True)  # the artifact exists: progress is spent
        return art
    except StageFailed:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin's fault: one line for the user, the traceback in a log
        raise stage_failure(env, spec, exc) from None


def stage_failure(env: StageEnv, spec: StageSpec, exc: BaseException) -> StageFailed:
    """One line naming the stage, its plugin and the exception; user errors (BenchError) keep
    their own message, anything else also writes its traceback under <home>/logs/."""
    import traceback

    plugin = spec.plugin or spec.label
    where = f"{spec.kind} stage of {plugin!r}" + (f" ({spec.label})" if spec.label and spec.label != plugin else "")
    if isinstance(exc, BenchError):
        return StageFailed(f"{where}: {exc}", spec.kind, plugin)
    log_dir = env.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.kind}-{spec.key[:12]}.log"
    path.write_text(f"stage {spec.kind} {spec.key}\nplugin {plugin}\ninputs {spec.inputs}\n\n"
                    + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return StageFailed(f"{where} failed: {type(exc).__name__}{': ' + msg if msg else ''} (traceback in {path})",
                       spec.kind, plugin, str(path))


def _build_clean(env, inputs, store, log):
    def build(tmp: Path) -> dict:
        card = data.load_card(inputs["card_ref"])
        raw = data.load_raw(card, inputs.get("root"), inputs["identity"])
        if raw.fingerprint != inputs["fingerprint"]:
            raise BenchError(f"the images of {inputs['identity']!r} changed while the run was planned; run again")
        warnings = raw.warnings + raw.check_resolution(inputs["resolution"])
        subject = data.make_subject(raw, inputs["resolution"])
        for role in ("train", "surrogate", "reference"):
            save_pngs(getattr(subject, role), tmp / role, raw.names[role])
        save_pngs(raw.roles["train"], tmp / "train_original", raw.names["train"])  # before any resizing: `files` measures here
        return {"identity": raw.identity, "card": card["name"], "counts": {r: len(v) for r, v in raw.roles.items()},
                **({"warnings": warnings} if warnings else {})}

    return build


def _build_defense(env, inputs, store, log):
    defense, ctx = _plugin_and_ctx(env, "defense", inputs, store, log)

    def build(tmp: Path) -> dict:
        subject = subject_from(_need(store, "clean", inputs["clean"]))
        base = model_ref({"source": inputs["base"]}, store, ctx.zoo_root)
        started = time.time()
        if isinstance(defense, ModelDefense):
            with PeakMemory() as memory:
                defense.protect_model(subject, base, ctx, tmp / "model")
            return {"level": "model", "seconds_total": round(time.time() - started, 3), **memory.record(),
                    "notes": ctx.notes.pop("defense", {}), "base_weights": base.weights}
        if not isinstance(defense, ImageDefense):
            raise BenchError(f"defense {defense.name!r} implements neither ImageDefense nor ModelDefense")
        budget = checked_budget(defense)  # before the work: a non-finite budget never reaches the attack
        with PeakMemory() as memory:
            out = defense.protect(subject, base, ctx)
        seconds = time.time() - started
        _check_images(out, subject.train, f"defense {defense.name}")
        save_pngs(out, tmp / "images", subject.train_names)
        saved = load_pngs(tmp / "images")  # measure what an attacker would download
        meas = pair_measures(saved, subject.train, with_lpips=True)
        if not meas["measured_linf"] <= budget + 1e-9:  # written so that a NaN measure fails too
            rejected = env.home / "rejected" / f"defense-{defense.name}-{stable_hash(inputs)}"
            shutil.rmtree(rejected, ignore_errors=True)
            shutil.copytree(tmp / "images", rejected)
            raise BudgetExceeded(
                f"defense {defense.name!r} exceeds its budget: measured L-inf {meas['measured_linf']}/255 on the saved PNGs "
                f"> declared {budget:g}/255 (images kept for inspection in {rejected})"
            )
        return {
            "level": "image", "budget": budget, **meas, "seconds_total": round(seconds, 3),
            "seconds_per_image": round(seconds / max(1, len(out)), 4), **memory.record(), "notes": ctx.notes.pop("defense", {}),
            "base_weights": base.weights, "encoders_seen": list(defense.encoders_seen()),
        }

    return build


def _build_purified(env, inputs, store, log):
    purifier, ctx = _plugin_and_ctx(env, "purifier", inputs, store, log)

    def build(tmp: Path) -> dict:
        images = upstream_images(store, inputs["upstream"])
        clean = subject_from(_need(store, "clean", inputs["clean"]))
        started = time.time()
        out = purifier.purify(images, ctx)
        seconds = time.time() - started
        _check_images(out, images, f"purifier {purifier.name}")
        save_pngs(out, tmp / "images", clean.train_names)
        saved = load_pngs(tmp / "images")
        recipe = purifier.recipe()
        vs_in, vs_clean = pair_measures(saved, images), pair_measures(saved, clean.train)
        return {
            "name": purifier.name,
            "vs_input": {k: v for k, v in vs_in.items() if k != "per_image"},
            "vs_clean": {k: v for k, v in vs_clean.items() if k != "per_image"},
            "seconds_per_image": round(seconds / max(1, len(out)), 4),
            "recipe": recipe.as_dict() if recipe else None,
            "notes": ctx.notes.pop("purifier", {}),
        }

    return build


def _build_personalized(env, inputs, store, log):
    attack, ctx = _plugin_and_ctx(env, "attack", inputs, store, log)

    def build(tmp: Path) -> dict:
        images = upstream_images(store, inputs["upstream"])
        base = model_ref(inputs["base"], store, ctx.zoo_root)
        attack.personalize(images, base, Recipe(**inputs["recipe"]), ctx, tmp / "model")
        return {"zero_shot": attack.zero_shot, "notes": ctx.notes.pop("attack", {}), "base_weights": base.weights}

    return build


def _build_generated(env, inputs, store, log):
    attack, ctx = _plugin_and_ctx(env, "attack", inputs, store, log)

    def build(tmp: Path) -> dict:
        pers = _need(store, "personalized", inputs["personalized"])
        base = model_ref(inputs["base"], store, ctx.zoo_root)
        gen = Generation(**inputs["generation"], seed=inputs["seed"], resolution=inputs["resolution"])
        out: list[GeneratedImage] = attack.generate(pers.path / "model", base, gen, Recipe(**inputs["recipe"]), ctx)
        if not out:
            raise BenchError(f"attack {attack.name!r} generated no images")
        bad = [g for g in out if not (isinstance(g, GeneratedImage) and isinstance(g.image, np.ndarray) and g.image.dtype == np.uint8
                                      and g.image.ndim == 3 and g.image.shape[2] == 3)]
        if bad:
            raise BenchError(f"attack {attack.name!r}: generate() must return GeneratedImage items holding uint8 HxWx3 images, "
                             f"got {type(bad[0]).__name__}")
        names = [f"{i:04d}.png" for i in range(len(out))]
        save_pngs([g.image for g in out], tmp / "images", names)
        return {"images": [{"file": n, "prompt": g.prompt, "seed": g.seed} for n, g in zip(names, out)],
                "notes": ctx.notes.pop("attack", {})}

    return build


def _build_metric(env, inputs, store, log):
    metric, ctx = _plugin_and_ctx(env, "metric", inputs, store, log)

    def build(tmp: Path) -> dict:
        gen_art = _need(store, "generated", inputs["images"])
        images = load_pngs(gen_art.path / "images")
        refs = subject_from(_need(store, "clean", inputs["references"])).reference
        if inputs.get("gallery"):  # gallery metrics: every identity's references + the control samples
            ctx.gallery = {ident: subject_from(_need(store, "clean", key)).reference for ident, key in inputs["gallery"].items()}
            ctx.control_images = load_pngs(_need(store, "generated", inputs["control"]).path / "images")
            ctx.subject = inputs["subject"]
        ok, reason = metric.available()
        res = metric.compute(images, refs, ctx) if ok else MetricResult.unavailable(reason)
        _check_metric_result(res, metric.metric_id)
        extra = dict(res.extra)
        prompts = [im["prompt"] for im in gen_art.meta.get("images", [])]
        if res.per_image and len(res.per_image) == len(prompts) and len(set(prompts)) > 1:
            extra["by_prompt"] = _by_prompt(prompts, res.per_image)
        return {
            "value": res.value, "status": res.status, "per_image": res.per_image, "extra": extra,
            "higher_is_better": metric.higher_is_better, "target": metric.target,
        }

    return build


def _check_metric_result(res: Any, who: str) -> None:
    """An undefined value is None (e.g. no face found) or `MetricResult.unavailable(reason)`, never NaN."""
    import math

    if not isinstance(res, MetricResult):
        raise BenchError(f"metric {who}: compute() must return a MetricResult, got {type(res).__name__}")
    v = res.value
    if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
        raise BenchError(f"metric {who} returned value {v!r}: a value is a finite number, or None where it is undefined")


def _by_prompt(prompts: list[str], values: list[float | None]) -> dict[str, float | None]:
    """Mean of the per-image values per prompt (None where no image of it was measurable), so
    training-prompt and novel-scene generations can be told apart without recomputing."""
    groups: dict[str, list[float]] = {}
    for prompt, v in zip(prompts, values):
        groups.setdefault(prompt, [])
        if v is not None:
            groups[prompt].append(float(v))
    return {p: (round(sum(v) / len(v), 6) if v else None) for p, v in groups.items()}


BUILDERS = {
    "clean": _build_clean,
    "defense": _build_defense,
    "purified": _build_purified,
    "personalized": _build_personalized,
    "generated": _build_generated,
    "metric": _build_metric,
}
