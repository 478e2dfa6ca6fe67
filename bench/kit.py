"""Plugin author kit: `bench new <kind> NAME` scaffolds a package, `bench check plugin
NAME` runs the conformance checks a submission must pass (schema, shapes and modes,
determinism under a seed, budget on the saved PNGs, speed; for model-level defenses a
loadable diffusers model with the base's architecture; for attacks the generation
protocol's images)."""

from __future__ import annotations

import functools
import re
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BenchError
from .images import linf, load_image, save_png
from .plugin import (Attack, Generation, ImageDefense, Metric, ModelDefense, ModelRef, Purifier, Recipe, Subject,
                     checked_budget)

TEMPLATES = {
    "defense": ("bench.defenses", "ImageDefense", '''
        def budget(self) -> float:
            """Declared L-inf budget in 0-255 pixel units; the harness checks it on the saved PNGs."""
            return self.p.eps

        def protect(self, subject, base, ctx):
            """Replace this example (seeded uniform noise) with your method. `base.path` is the
            base model as a diffusers folder: bench.models.load_sd(base, ctx.device) loads it."""
            rng = np.random.default_rng(ctx.seed)
            out = []
            for img in subject.train:
                noise = rng.integers(-int(self.p.eps), int(self.p.eps) + 1, img.shape)
                out.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
            return out
    ''', '''Param("eps", float, 8.0, paper=8.0, source="<paper, section/table>", gt=0, unit="px/255", help="L-inf budget")'''),
    "purifier": ("bench.purifiers", "Purifier", '''
        def purify(self, images, ctx):
            """Replace this example (a box blur) with your method; return uint8 images of the same shapes."""
            from PIL import Image, ImageFilter

            return [np.asarray(Image.fromarray(i).filter(ImageFilter.BoxBlur(self.p.radius))) for i in images]
    ''', '''Param("radius", int, 1, source="<paper, section/table>", ge=0)'''),
    "metric": ("bench.metrics", "Metric", '''
        target = "generation"
        higher_is_better = False

        def compute(self, images, references, ctx):
            """Replace this example (mean absolute difference to the mean reference) with your metric."""
            ref = np.mean([r.astype(float) for r in references], axis=0)
            per = [float(np.abs(i.astype(float) - ref).mean()) if i.shape == ref.shape else None for i in images]
            vals = [v for v in per if v is not None]
            return MetricResult(value=float(np.mean(vals)) if vals else None, per_image=per)
    ''', ""),
}


def scaffold(kind: str, name: str, folder: Path) -> Path:
    if kind not in TEMPLATES:
        raise BenchError(f"bench new: kind must be one of {', '.join(TEMPLATES)}")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise BenchError(f"bench new: name {name!r} must be lower case letters, digits and dashes, starting with a letter")
    group, base_cls, body, param = TEMPLATES[kind]
    pkg = "bench_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + kind.capitalize()
    root = folder / f"bench-{name}"
    if root.exists():
        raise BenchError(f"bench new: {root} already exists")
    (root / pkg).mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(textwrap.dedent(f'''\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "bench-{name}"
        version = "0.1.0"
        description = "{kind} plugin '{name}' for antipers-bench"
        requires-python = ">=3.11"
        dependencies = ["antipers-bench"]

        [project.entry-points."{group}"]
        {name} = "{pkg}.{kind}:{cls}"

        [tool.setuptools]
        packages = ["{pkg}"]
    '''))
    (root / pkg / "__init__.py").write_text(f'"""{kind} plugin {name} for antipers-bench."""\n')
    imports = "import numpy as np\n\nfrom bench.params import Param\nfrom bench.plugin import " + base_cls + (", MetricResult" if kind == "metric" else "")
    params = f"[{param}]" if param else "[]"
    (root / pkg / f"{kind}.py").write_text(
        f'"""{name}: <one paragraph: what it does and the paper it comes from>."""\n\n{imports}\n\n\n'
        f"class {cls}({base_cls}):\n"
        f'    name = "{name}"\n    aliases = ()\n    summary = "<one line shown by bench list>"\n'
        f'    version = "1"  # bump whenever the output changes: it is part of every cache key\n'
        f"    params = {params}\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    (root / "tests" / f"test_{pkg}.py").write_text(textwrap.dedent(f'''\
        """Conformance: the same checks `bench check plugin {name}` runs."""

        from bench.kit import check_plugin


        def test_conformance():
            report = check_plugin("{kind}", "{name}")
            assert report.passed, report.text()
    '''))
    (root / "README.md").write_text(
        f"# bench-{name}\n\nA {kind} plugin for antipers-bench.\n\n```bash\npip install -e .\nbench list {kind}\n"
        f"bench check plugin {name}\n```\n\nSee docs/plugins.md of antipers-bench for submitting results.\n"
    )
    return root


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    kind: str
    name: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def text(self) -> str:
        lines = [f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        lines.append(f"verdict: {self.kind} {self.name} {'PASSES' if self.passed else 'FAILS'} conformance")
        return "\n".join(lines)


def _sample_subject(shape: tuple[int, int]) -> Subject:
    from .data import sample_views
    from .images import center_crop_resize

    views = [center_crop_resize(v, max(shape)) [: shape[0], : shape[1]] for v in sample_views()]
    views = [np.ascontiguousarray(v) for v in views]
    return Subject("astronaut", train=views[4:6], surrogate=views[0:2], reference=views[:6], train_names=["a", "b"])


def _configured(cls, params: dict, values: dict, profile: str):
    """What the checks below get as `cls`: `cls(values, profile)` with the user's params on top."""
    return cls({**values, **params}, profile)


def _schema(cls) -> Check:
    problems = []
    for attr in ("name", "summary", "version"):
        if not getattr(cls, attr, ""):
            problems.append(f"no {attr}")
    for p in cls.params:
        if not p.source and not p.setup:
            problems.append(f"parameter {p.name} cites no source")
    for profile in ("tiny", "paper"):
        try:
            cls({}, profile)
        except BenchError as exc:
            problems.append(f"{profile} defaults invalid: {exc}")
    return Check("parameter schema", not problems, "; ".join(problems) or f"{len(cls.params)} parameters, defaults valid, sources cited")


def check_plugin(kind: str, name: str, registry=None, plugin_files: list[str] | None = None, profile: str = "tiny",
                 params: dict | None = None) -> Report:
    """Run the conformance checks for one plugin on the tiny profile (offline, CPU). `params`
    (default: the plugin's defaults) configure the instance the behavioural checks run, e.g. a
    shorter attack; the schema check always validates the defaults of both profiles."""
    from .artifacts import ArtifactStore
    from .context import Context
    from .models import resolve
    from .registry import Registry

    if registry is None:
        registry = Registry()
        for f in plugin_files or []:
            registry.add_file(f)
    cls = registry.get(kind, name)
    checks = [_schema(cls)]
    make = functools.partial(_configured, cls, dict(params or {}))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = ArtifactStore(home / "artifacts")

        def ctx(seed: int, res: int) -> Context:
            return Context(profile=profile, seed=seed, resolution=res, store=store, home=home, quiet=True, log=lambda m: None)

        if issubclass(cls, ImageDefense):
            checks += _check_image_defense(make, profile, ctx, resolve)
        elif issubclass(cls, ModelDefense):
            checks += _check_model_defense(make, profile, ctx, resolve, home)
        elif issubclass(cls, Purifier):
            checks += _check_purifier(make, profile, ctx)
        elif issubclass(cls, Metric):
            checks += _check_metric(make, profile, ctx)
        elif issubclass(cls, Attack):
            checks += _check_attack(make, profile, ctx, resolve, home)
    return Report(kind, cls.name, checks)


def _png_roundtrip(img: np.ndarray, folder: Path, i: int) -> np.ndarray:
    path = folder / f"{i}.png"
    save_png(img, path)
    return load_image(path)


def _shape_check(outs, ins, who) -> Check:
    bad = [f"{getattr(o, 'dtype', type(o))} {getattr(o, 'shape', '')} for {i.shape}" for o, i in zip(outs, ins)
           if not (isinstance(o, np.ndarray) and o.dtype == np.uint8 and o.shape == i.shape)]
    if len(outs) != len(ins):
        bad.append(f"{len(outs)} outputs for {len(ins)} inputs")
    return Check(f"modes and shapes ({who})", not bad, "; ".join(bad) or "uint8 RGB, same shapes as the inputs")


def _check_image_defense(cls, profile, ctx, resolve) -> list[Check]:
    checks = []
    base = resolve({"id": "zoo:tiny-sd"}, ctx(0, 64).zoo_root)
    plugin = cls({}, profile)
    try:
        budget = checked_budget(plugin)
        checks.append(Check("declared budget", True, f"{budget:g}/255"))
    except BenchError as exc:
        return [Check("declared budget", False, str(exc))]
    outs = {}
    for shape in ((64, 64), (48, 64)):
        subject = _sample_subject(shape)
        try:
            started = time.time()
            out = plugin.protect(subject, base, ctx(0, shape[1]))
            seconds = (time.time() - started) / len(subject.train)
        except Exception as exc:  # the verdict must name the failure, not crash
            checks.append(Check(f"runs on {shape[0]}x{shape[1]}", False, f"{exc.__class__.__name__}: {exc}"))
            continue
        checks.append(_shape_check(out, subject.train, f"{shape[0]}x{shape[1]}"))
        outs[shape] = (subject, out, seconds)
    if (64, 64) not in outs:
        return checks
    subject, out, seconds = outs[(64, 64)]
    with tempfile.TemporaryDirectory() as tmp:
        saved = [_png_roundtrip(o, Path(tmp), i) for i, o in enumerate(out)]
    measured = max(linf(s, c) for s, c in zip(saved, subject.train))
    checks.append(Check("budget on saved PNGs", measured <= budget, f"measured L-inf {measured}/255, declared {budget:g}/255"))
    again = plugin.protect(subject, base, ctx(0, 64))
    same = all(np.array_equal(a, b) for a, b in zip(out, again))
    checks.append(Check("deterministic under a seed", same, "same seed gave identical images" if same else "same seed gave different images"))
    checks.append(Check("speed", True, f"{seconds:.3f} s per 64x64 image on {ctx(0, 64).device}"))
    return checks


def _check_purifier(cls, profile, ctx) -> list[Check]:
    plugin = cls({}, profile)
    checks = []
    subject = _sample_subject((64, 64))
    started = time.time()
    out = plugin.purify(subject.train, ctx(0, 64))
    seconds = (time.time() - started) / len(subject.train)
    checks.append(_shape_check(out, subject.train, "64x64"))
    odd = _sample_subject((48, 64))
    checks.append(_shape_check(plugin.purify(odd.train, ctx(0, 64)), odd.train, "48x64"))
    again = plugin.purify(subject.train, ctx(0, 64))
    same = all(np.array_equal(a, b) for a, b in zip(out, again))
    checks.append(Check("deterministic under a seed", same, "identical" if same else "same seed gave different images"))
    checks.append(Check("speed", True, f"{seconds:.3f} s per 64x64 image"))
    return checks


def _check_metric(cls, profile, ctx) -> list[Check]:
    from .plugin import MetricResult

    plugin = cls({}, profile)
    subject = _sample_subject((64, 64))
    ok, reason = plugin.available()
    if not ok:
        return [Check("available", True, f"reports unavailable: {reason}")]
    res = plugin.compute(subject.train, subject.reference, ctx(0, 64))
    good = isinstance(res, MetricResult) and (res.value is None or np.isfinite(res.value))
    again = plugin.compute(subject.train, subject.reference, ctx(0, 64))
    return [
        Check("returns a MetricResult", good, f"value {getattr(res, 'value', None)}, status {getattr(res, 'status', None)}"),
        Check("deterministic", again.value == res.value, f"{res.value} vs {again.value}"),
    ]


def _failed(what: str, exc: Exception) -> Check:
    return Check(what, False, f"{exc.__class__.__name__}: {exc}")


def _check_model_defense(cls, profile, ctx, resolve, home: Path) -> list[Check]:
    """Two protections with one seed: each must be a diffusers folder that loads like the base
    (same components, same tensor names and shapes), differ from it, and equal the other."""
    from .models import load_sd

    base = resolve({"id": "zoo:tiny-sd"}, ctx(0, 64).zoo_root)
    plugin = cls({}, profile)
    subject = _sample_subject((64, 64))
    states = []
    for run in range(2):
        out = home / f"protected-{run}"
        try:
            started = time.time()
            plugin.protect_model(subject, base, ctx(0, 64), out)
            seconds = time.time() - started
            parts = load_sd(ModelRef(path=out, source="check", revision=str(run)))
        except Exception as exc:
            return [_failed("writes a loadable diffusers model", exc)]
        states.append({name: m.state_dict() for name, m in parts.items() if hasattr(m, "state_dict")})
    ref = {name: m.state_dict() for name, m in load_sd(base).items() if hasattr(m, "state_dict")}
    bad = [f"{name}.{k}" for name, sd in ref.items() for k, v in sd.items()
           if k not in states[0].get(name, {}) or states[0][name][k].shape != v.shape]
    changed = sum(not states[0][name][k].equal(v) for name, sd in ref.items() for k, v in sd.items() if f"{name}.{k}" not in bad)
    same = all(states[0][name][k].equal(states[1][name][k]) for name, sd in states[0].items() for k in sd)
    return [
        Check("writes a loadable diffusers model", not bad,
              f"missing or reshaped: {', '.join(bad[:5])}" if bad else "loads with load_sd, base architecture kept"),
        Check("changes the model", changed > 0, f"{changed} tensors differ from the base"),
        Check("deterministic under a seed", same, "same seed gave identical weights" if same else "same seed gave different weights"),
        Check("speed", True, f"{seconds:.1f} s per protection (tiny profile) on {ctx(0, 64).device}"),
    ]


def _check_attack(cls, profile, ctx, resolve, home: Path) -> list[Check]:
    """Personalize on two sample views and generate the profile's protocol twice with one
    seed: one uint8 image per (prompt, seed) job at the resolution, identical both times."""
    from .profiles import PROFILES
    from .protocol import resolve_generation

    base = resolve({"id": "zoo:tiny-sd"}, ctx(0, 64).zoo_root)
    plugin = cls({}, profile)
    subject = _sample_subject((64, 64))
    spec = resolve_generation(dict(PROFILES[profile]["generation"]), ["a photo of sks person"])
    gen = Generation(**{**spec, "images_per_prompt": 2}, seed=0, resolution=64)
    runs = []
    for run in range(2):
        out = home / f"personalized-{run}"
        try:
            started = time.time()
            plugin.personalize(subject.train, base, Recipe(), ctx(0, 64), out)
            trained = time.time() - started
            images = plugin.generate(out, base, gen, Recipe(), ctx(0, 64))
            drawn = (time.time() - started - trained) / max(len(images), 1)
        except Exception as exc:
            return [_failed("personalizes and generates", exc)]
        runs.append(images)
    jobs = gen.jobs()
    first = runs[0]
    pictures = [[getattr(g, "image", g) for g in images] for images in runs]  # GeneratedImage expected; say what came
    bad = [f"image {i}: {getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}" for i, img in enumerate(pictures[0])
           if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.shape == (64, 64, 3))]
    seeds = [getattr(g, "seed", None) for g in first]
    if len(first) != len(jobs) or seeds != [seed for _, seed in jobs]:
        bad.append(f"{len(first)} images with seeds {seeds}; the protocol asks {[seed for _, seed in jobs]}")
    same = len(runs[1]) == len(first) and all(np.array_equal(a, b) for a, b in zip(*pictures))
    return [
        Check("generation protocol", not bad, "; ".join(bad) or f"{len(first)} uint8 64x64 images, one per (prompt, seed) job"),
        Check("deterministic under a seed", same, "same seed gave identical images" if same else "same seed gave different images"),
        Check("speed", True, f"personalize {trained:.1f} s, {drawn:.2f} s per image (tiny profile) on {ctx(0, 64).device}"),
    ]
