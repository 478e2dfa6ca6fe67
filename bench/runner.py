"""Runs one cell as a chain of cached stages:

clean -> defense -> purifier links -> personalize -> generate -> metrics -> record.

Every stage is an artifact keyed by its inputs (see artifacts.py), so a rerun
computes only what is missing and a killed run resumes at the stage it was in.
Images cross every boundary as 8-bit PNGs, read back from disk by the next stage.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, data, models
from .artifacts import Artifact, ArtifactStore, stable_hash
from .context import Context
from .errors import BenchError, BudgetExceeded
from .images import linf, load_pngs, psnr, save_pngs, ssim
from .plugin import Attack, GeneratedImage, Generation, ImageDefense, ModelDefense, ModelRef, Recipe, Subject
from .protocol import CellConfig, PluginSpec, protocol_group, resolve
from .registry import Registry
from .results import ResultsStore


def default_home() -> Path:
    return Path(os.environ.get("BENCH_HOME", ".bench")).expanduser()


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        return "cpu"


def pair_measures(images: list[np.ndarray], refs: list[np.ndarray]) -> dict[str, Any]:
    """Per-image L-inf (0-255 units), PSNR and SSIM against paired references."""
    per = [{"linf": linf(a, b), "psnr": psnr(a, b), "ssim": ssim(a, b)} for a, b in zip(images, refs)]
    finite = [p["psnr"] for p in per if np.isfinite(p["psnr"])]
    return {
        "measured_linf": max(p["linf"] for p in per),
        "psnr": float(np.mean(finite)) if finite else float("inf"),
        "ssim": float(np.mean([p["ssim"] for p in per])),
        "per_image": per,
    }


@dataclass
class StageLog:
    rows: list[tuple[str, str, bool, float]] = field(default_factory=list)

    def add(self, stage: str, art: Artifact, label: str) -> None:
        self.rows.append((stage, label, art.cached, float(art.meta.get("seconds", 0.0))))


class Runner:
    def __init__(self, home: Path | None = None, registry: Registry | None = None, device: str | None = None, quiet: bool = False, log=print):
        self.home = Path(home or default_home())
        self.registry = registry or Registry()
        self.device = device or default_device()
        self.quiet = quiet
        self.log = log
        self.store = ArtifactStore(self.home / "artifacts")
        self.results = ResultsStore(self.home / "results")

    # ------------------------------------------------------------------ cell
    def run(self, cfg: CellConfig) -> dict[str, Any]:
        proto = resolve(cfg, self.registry)  # validates every name and parameter before computing
        cell_key = stable_hash(proto)
        ctx = Context(
            profile=proto["profile"], seed=proto["seed"], resolution=proto["resolution"], store=self.store,
            home=self.home, device=self.device, quiet=self.quiet, log=self.log,
        )
        stages = StageLog()
        started = time.time()

        base = models.resolve(proto["base_model"], ctx.zoo_root)
        base_id = {"source": base.source, "revision": base.revision}

        clean_art, subject = self._clean(proto, ctx)
        stages.add("data", clean_art, f"{subject.identity} ({len(subject.train)} train images)")

        defense = self.registry.create("defense", proto["defense"]["name"], proto["defense"]["params"], ctx.profile)
        def_art = self._defense(defense, proto, subject, base, base_id, clean_art, ctx)
        stages.add("defense", def_art, defense.name)

        if isinstance(defense, ModelDefense):
            # APDM-style: the attacker personalizes the PROTECTED model on CLEAN images.
            attack_base = ModelRef(path=def_art.path / "model", source=f"{base.source}+{defense.name}", revision=def_art.key)
            current, current_key = subject.train, clean_art.key
        else:
            attack_base = base
            current, current_key = load_pngs(def_art.path / "images"), def_art.key

        recipe = Recipe()
        purifier_meta = []
        for link in proto["purifier"]:
            purifier = self.registry.create("purifier", link["name"], link["params"], ctx.profile)
            art = self._purify(purifier, link, current, current_key, subject, ctx)
            stages.add("purifier", art, purifier.name)
            current, current_key = load_pngs(art.path / "images"), art.key
            recipe = recipe.merge(Recipe(**art.meta["recipe"]) if art.meta.get("recipe") else None)
            purifier_meta.append(_public_meta(art))

        attack = self.registry.create("attack", proto["attack"]["name"], proto["attack"]["params"], ctx.profile)
        pers_art = self._personalize(attack, proto, current, current_key, attack_base, recipe, ctx)
        stages.add("personalize", pers_art, attack.name)
        gen = Generation(**proto["generation"], seed=proto["seed"], resolution=proto["resolution"])
        gen_art = self._generate(attack, pers_art, attack_base, gen, recipe, ctx)
        stages.add("generate", gen_art, f"{len(gen_art.meta['images'])} images")
        generated = load_pngs(gen_art.path / "images")

        metrics = {}
        for m in proto["metrics"]:
            art = self._metric(m, generated, gen_art.key, subject.reference, clean_art.key, ctx)
            stages.add("metric", art, m["id"])
            metrics[m["id"]] = {k: art.meta[k] for k in ("value", "status", "higher_is_better", "per_image", "extra")}

        record = {
            "cell_key": cell_key,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "bench_version": __version__,
            "protocol": proto,
            "protocol_group": protocol_group(proto),
            "identity": subject.identity,
            "base_model": {**base_id, "path": str(base.path) if base.source.startswith("zoo:") else base.source},
            "stages": {
                "data": _public_meta(clean_art),
                "defense": _public_meta(def_art),
                "purifier": purifier_meta,
                "personalize": _public_meta(pers_art),
                "generate": _public_meta(gen_art),
            },
            "recipe": recipe.as_dict(),
            "metrics": metrics,
            "environment": _environment(self.device),
        }
        existing = self.results.get(cell_key)
        path = self.results.add(record)
        record = existing or record
        record["_run"] = {"stages": stages.rows, "seconds": round(time.time() - started, 2), "record_path": str(path)}
        return record

    # ---------------------------------------------------------------- stages
    def _clean(self, proto: dict, ctx: Context) -> tuple[Artifact, Subject]:
        ds = proto["dataset"]
        card = data.load_card(ds["card"])
        raw = data.load_raw(card, ds.get("root"), ds.get("identity"))
        inputs = {"card": card["name"], "identity": raw.identity, "fingerprint": raw.fingerprint, "resolution": ctx.resolution, "v": 1}

        def build(tmp: Path) -> dict:
            subject = data.make_subject(raw, ctx.resolution)
            for role in ("train", "surrogate", "reference"):
                save_pngs(getattr(subject, role), tmp / role, raw.names[role])
            return {"identity": raw.identity, "card": card["name"], "counts": {r: len(v) for r, v in raw.roles.items()}}

        art = self.store.ensure("clean", stable_hash(inputs), build, inputs)
        subject = Subject(
            identity=art.meta["identity"],
            train=load_pngs(art.path / "train"),
            surrogate=load_pngs(art.path / "surrogate"),
            reference=load_pngs(art.path / "reference"),
            train_names=[p.stem for p in sorted((art.path / "train").glob("*.png"))],
        )
        return art, subject

    def _defense(self, defense, proto, subject, base, base_id, clean_art, ctx) -> Artifact:
        spec = proto["defense"]
        inputs = {"clean": clean_art.key, "plugin": spec, "seed": ctx.seed, "base": base_id}

        def build(tmp: Path) -> dict:
            started = time.time()
            if isinstance(defense, ModelDefense):
                defense.protect_model(subject, base, ctx, tmp / "model")
                return {"level": "model", "seconds_total": round(time.time() - started, 3), "notes": ctx.notes.pop("defense", {})}
            if not isinstance(defense, ImageDefense):
                raise BenchError(f"defense {defense.name!r} implements neither ImageDefense nor ModelDefense")
            out = defense.protect(subject, base, ctx)
            seconds = time.time() - started
            _check_images(out, subject.train, f"defense {defense.name}")
            save_pngs(out, tmp / "images", subject.train_names)
            saved = load_pngs(tmp / "images")  # measure what an attacker would download
            meas = pair_measures(saved, subject.train)
            budget = defense.budget()
            if budget is not None and meas["measured_linf"] > budget + 1e-9:
                rejected = self.home / "rejected" / f"defense-{defense.name}-{stable_hash(inputs)}"
                shutil.rmtree(rejected, ignore_errors=True)
                shutil.copytree(tmp / "images", rejected)
                raise BudgetExceeded(
                    f"defense {defense.name!r} exceeds its budget: measured L-inf {meas['measured_linf']}/255 on the saved PNGs "
                    f"> declared {budget:g}/255 (images kept for inspection in {rejected})"
                )
            return {
                "level": "image",
                "budget": budget,
                **meas,
                "seconds_total": round(seconds, 3),
                "seconds_per_image": round(seconds / max(1, len(out)), 4),
                "notes": ctx.notes.pop("defense", {}),
            }

        return self.store.ensure("defense", stable_hash(inputs), build, inputs)

    def _purify(self, purifier, link, images, upstream_key, subject, ctx) -> Artifact:
        inputs = {"upstream": upstream_key, "plugin": link, "seed": ctx.seed}

        def build(tmp: Path) -> dict:
            started = time.time()
            out = purifier.purify(images, ctx)
            seconds = time.time() - started
            _check_images(out, images, f"purifier {purifier.name}")
            save_pngs(out, tmp / "images", subject.train_names)
            saved = load_pngs(tmp / "images")
            recipe = purifier.recipe()
            vs_in, vs_clean = pair_measures(saved, images), pair_measures(saved, subject.train)
            return {
                "name": purifier.name,
                "vs_input": {k: vs_in[k] for k in ("measured_linf", "psnr", "ssim")},
                "vs_clean": {k: vs_clean[k] for k in ("measured_linf", "psnr", "ssim")},
                "seconds_per_image": round(seconds / max(1, len(out)), 4),
                "recipe": recipe.as_dict() if recipe else None,
            }

        return self.store.ensure("purified", stable_hash(inputs), build, inputs)

    def _personalize(self, attack: Attack, proto, images, upstream_key, base: ModelRef, recipe: Recipe, ctx) -> Artifact:
        inputs = {
            "upstream": upstream_key, "plugin": proto["attack"], "seed": ctx.seed, "resolution": ctx.resolution,
            "base": {"source": base.source, "revision": base.revision}, "recipe": recipe.as_dict(),
        }

        def build(tmp: Path) -> dict:
            attack.personalize(images, base, recipe, ctx, tmp / "model")
            return {"zero_shot": attack.zero_shot, "notes": ctx.notes.pop("attack", {})}

        return self.store.ensure("personalized", stable_hash(inputs), build, inputs)

    def _generate(self, attack: Attack, pers: Artifact, base: ModelRef, gen: Generation, recipe: Recipe, ctx) -> Artifact:
        inputs = {"personalized": pers.key, "generation": gen.__dict__, "recipe": recipe.as_dict(), "attack_version": attack.version}

        def build(tmp: Path) -> dict:
            out: list[GeneratedImage] = attack.generate(pers.path / "model", base, gen, recipe, ctx)
            if not out:
                raise BenchError(f"attack {attack.name!r} generated no images")
            names = [f"{i:04d}.png" for i in range(len(out))]
            save_pngs([g.image for g in out], tmp / "images", names)
            return {"images": [{"file": n, "prompt": g.prompt, "seed": g.seed} for n, g in zip(names, out)]}

        return self.store.ensure("generated", stable_hash(inputs), build, inputs)

    def _metric(self, m: dict, images, images_key, refs, refs_key, ctx) -> Artifact:
        metric = self.registry.create("metric", m["name"], m["params"], ctx.profile)
        inputs = {"images": images_key, "references": refs_key, "metric": m}

        def build(tmp: Path) -> dict:
            ok, reason = metric.available()
            res = metric.compute(images, refs, ctx) if ok else None
            from .plugin import MetricResult

            res = res or MetricResult.unavailable(reason)
            return {
                "value": res.value, "status": res.status, "per_image": res.per_image, "extra": res.extra,
                "higher_is_better": metric.higher_is_better, "target": metric.target,
            }

        return self.store.ensure("metric", stable_hash(inputs), build, inputs)


def _check_images(out: list, ref: list, who: str) -> None:
    if len(out) != len(ref):
        raise BenchError(f"{who} returned {len(out)} images for {len(ref)} inputs")
    for o, r in zip(out, ref):
        if not isinstance(o, np.ndarray) or o.dtype != np.uint8 or o.shape != r.shape:
            got = f"{getattr(o, 'dtype', type(o).__name__)} {getattr(o, 'shape', '')}"
            raise BenchError(f"{who} must return uint8 images shaped like its inputs {r.shape}, got {got}")


def _public_meta(art: Artifact) -> dict[str, Any]:
    meta = {k: v for k, v in art.meta.items() if k not in ("inputs",)}
    meta["artifact"] = art.key
    return meta


def _environment(device: str) -> dict[str, Any]:
    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device}
    for pkg in ("torch", "diffusers", "transformers", "peft", "numpy"):
        try:
            from importlib.metadata import version

            env[pkg] = version(pkg)
        except Exception:
            env[pkg] = None
    return env
