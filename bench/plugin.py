"""The four plugin kinds and the data that crosses their boundaries.

Contracts, not methods: a defense, purifier, attack or metric subclasses one of
these, declares its metadata as class attributes, and implements one or two
methods. The harness handles caching, budgets, PNG round trips and records.
Images are always uint8 RGB numpy arrays (H, W, 3), exactly what a PNG holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import BenchError
from .params import Needs, Param, ParamView, resolve_params

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

Image = np.ndarray  # uint8, (H, W, 3), RGB


class Plugin:
    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump whenever the plugin's output changes
    params: ClassVar[list[Param]] = []
    needs: ClassVar[Needs] = Needs()
    # False for a plugin that cannot run without the user's input (`files`): `all` leaves it out
    in_all: ClassVar[bool] = True
    # Where the method comes from, for the leaderboard: {"paper": URL or citation, "code": URL}
    links: ClassVar[dict[str, str]] = {}
    # Something to train ahead of runs (RID's generator): a classmethod
    # train(base_id, home, sets, out, device, quiet, log) -> Path that `bench train NAME` calls
    # through the registry, so the core names no method.
    train: ClassVar[Any] = None

    def __init__(self, params: dict[str, Any] | None = None, profile: str = "tiny"):
        self.profile = profile
        self.p = ParamView(resolve_params(self.params, params or {}, profile, f"{self.kind}.{self.name}"))
        self.check()

    def check(self) -> None:
        """Cross-parameter validation; raise BenchError with a one-line message."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "kind": cls.kind,
            "name": cls.name,
            "aliases": list(cls.aliases),
            "summary": cls.summary,
            "version": cls.version,
            "links": dict(cls.links),
            "params": [
                {
                    "name": p.name,
                    "type": p.type.__name__,
                    "tiny": p.default_for("tiny"),
                    "paper": p.default_for("paper"),
                    "unit": p.unit,
                    "source": p.source,
                    "help": p.help,
                }
                for p in cls.params
            ],
            "needs": {"weights": list(cls.needs.weights), "gpu_memory_gb": dict(cls.needs.gpu_memory_gb)},
        }


# ---------------------------------------------------------------- data types
@dataclass
class Subject:
    """One identity's clean images, by role (Anti-DreamBooth protocol, see data cards).

    train: the images the owner publishes and the attacker fine-tunes on (set_B);
    surrogate: clean images a defense may use as "leaked" data (set_A);
    reference: clean images the identity metrics compare against.
    """

    identity: str
    train: list[Image]
    surrogate: list[Image]
    reference: list[Image]
    train_names: list[str] = field(default_factory=list)
    train_original: list[Image] = field(default_factory=list)  # the train images before crop and resize


@dataclass
class ModelRef:
    """A base model resolved to a local diffusers folder, with its provenance."""

    path: Path
    source: str  # hub id, local path or zoo name
    revision: str | None = None
    family: str = "sd"  # "sd" (SD 1.x/2.x), "sdxl", ...
    weights: dict[str, str] | None = None  # SHA-256 of each weight file: what the records cite


@dataclass
class Recipe:
    """What a purifier may hand to the attack (DiffShortcut's negative tokens)."""

    instance_suffix: str = ""
    class_suffix: str = ""
    sample_suffix: str = ""
    negative_prompt: str = ""

    def merge(self, other: "Recipe | None") -> "Recipe":
        if other is None:
            return self
        join = lambda a, b: (a + b) if b else a  # noqa: E731
        neg = ", ".join(x for x in (self.negative_prompt, other.negative_prompt) if x)
        return Recipe(
            join(self.instance_suffix, other.instance_suffix),
            join(self.class_suffix, other.class_suffix),
            join(self.sample_suffix, other.sample_suffix),
            neg,
        )

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class Generation:
    """The one generation protocol every attack follows (from the profile, overridable)."""

    prompts: list[str]
    images_per_prompt: int
    steps: int
    guidance_scale: float
    sampler: str
    negative_prompt: str
    seed: int
    resolution: int
    prompt_set: str = "custom"

    # Prompts name the subject with this placeholder; attacks that learn another
    # identifier (LoRA+TI's `<new1>`) substitute theirs, so every attack is asked the same things.
    PLACEHOLDER: ClassVar[str] = "sks"

    def jobs(self, suffix: str = "", identifier: str | None = None) -> list[tuple[str, int]]:
        """(prompt, seed) for every image, in a fixed order: image i of prompt p gets
        seed `seed * 100003 + i`, so the same seed gives the same noise for every
        prompt, attack and defense (paired comparisons)."""
        out = []
        for prompt in self.prompts:
            if identifier:
                prompt = " ".join(identifier if w == self.PLACEHOLDER else w for w in prompt.split(" "))
            out += [(prompt + suffix, self.seed * 100003 + i) for i in range(self.images_per_prompt)]
        return out

    def run(self, ctx: "Context", draw, suffix: str = "", identifier: str | None = None) -> list["GeneratedImage"]:
        """Every job through `draw(prompt, seed) -> image`, with progress: the loop all attacks share."""
        out = []
        jobs = self.jobs(suffix, identifier)
        with ctx.progress("generate", len(jobs)) as advance:
            for prompt, seed in jobs:
                out.append(GeneratedImage(draw(prompt, seed), prompt, seed))
                advance()
        return out


@dataclass
class GeneratedImage:
    image: Image
    prompt: str
    seed: int


@dataclass
class MetricResult:
    value: float | None
    status: str = "ok"  # "ok" or "unavailable: <reason>"
    per_image: list[float | None] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, reason: str) -> "MetricResult":
        return cls(value=None, status=f"unavailable: {reason}")


# ---------------------------------------------------------------- the kinds
class Defense(Plugin):
    kind = "defense"
    level: ClassVar[str] = "image"  # "image" or "model"

    def encoders_seen(self) -> list[str]:
        """Identity encoders this defense optimises against, by metric backend name ("dlib"):
        an identity metric computed with one of them is white-box and flagged as such."""
        return []


class ImageDefense(Defense):
    level = "image"

    def budget(self) -> float | None:
        """Declared L-inf budget in 0-255 pixel units: a finite number in [0, 255] (`none`: 0).
        The harness checks the saved PNGs against it; a defense that declares none fails."""
        return None

    def protect(self, subject: Subject, base: ModelRef, ctx: "Context") -> list[Image]:
        """Return one protected uint8 image per `subject.train` image, same shapes."""
        raise NotImplementedError


def checked_budget(defense: ImageDefense) -> float:
    """The defense's declared budget, or a one-line error naming it: NaN, infinity, None or a
    value outside [0, 255] would switch the budget check off (NaN fails every comparison)."""
    import math

    try:
        value = defense.budget()
    except Exception as exc:
        raise BenchError(f"defense {defense.name!r}: budget() raised {type(exc).__name__}: {exc}") from None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 255
    if not ok:
        raise BenchError(f"defense {defense.name!r} declares budget {value!r}: an image defense's budget() must return a "
                         "finite L-inf bound in [0, 255] pixel units")
    return float(value)


class ModelDefense(Defense):
    """Protects the model (APDM): writes a protected base model in diffusers layout."""

    level = "model"

    def protect_model(self, subject: Subject, base: ModelRef, ctx: "Context", out_dir: Path) -> None:
        raise NotImplementedError


class Purifier(Plugin):
    kind = "purifier"

    def purify(self, images: list[Image], ctx: "Context") -> list[Image]:
        raise NotImplementedError

    def recipe(self) -> Recipe | None:
        """Training/sampling recipe handed to the attack (None: nothing to add)."""
        return None


class Attack(Plugin):
    """personalize() writes whatever the attack needs into out_dir (a fine-tuned
    model, adapters, or - for zero-shot attacks - the encoded reference face);
    generate() reads it back. Keeping both behind files makes each an artifact."""

    kind = "attack"
    zero_shot: ClassVar[bool] = False

    def personalize(
        self, images: list[Image], base: ModelRef, recipe: Recipe, ctx: "Context", out_dir: Path
    ) -> None:
        raise NotImplementedError

    def generate(
        self, personalized: Path, base: ModelRef, gen: Generation, recipe: Recipe, ctx: "Context"
    ) -> list[GeneratedImage]:
        raise NotImplementedError


class Metric(Plugin):
    """Metric ids name their backend: "ism[dlib]" = plugin `ism` with backend=dlib.

    target "generation": images = generated, references = clean identity images.
    target "protection": images = protected (or purified), references = clean, paired."""

    kind = "metric"
    target: ClassVar[str] = "generation"
    higher_is_better: ClassVar[bool | None] = None
    # True: the harness also hands the metric ctx.gallery (every identity's references) and
    # ctx.control_images (the unpersonalised model's samples of the same prompts and seeds).
    uses_gallery: ClassVar[bool] = False

    # Parameters that change what the value means, named in the id when not at their default
    # (fid[dlib-face,pooling=pooled]); the backend always is.
    id_params: ClassVar[tuple[str, ...]] = ()

    @property
    def metric_id(self) -> str:
        """`name[backend]` when the metric has a `backend` parameter (ism[dlib]), plus the
        `id_params` that differ from the profile default."""
        backend = self.p.get("backend")
        defaults = {p.name: p.default_for(self.profile) for p in self.params}
        named = [f"{k}={self.p[k]}" for k in self.id_params if self.p.get(k) != defaults.get(k)]
        inside = ",".join(([backend] if backend else []) + named)
        return f"{self.name}[{inside}]" if inside else self.name

    def available(self) -> tuple[bool, str]:
        return True, ""

    def compute(self, images: list[Image], references: list[Image], ctx: "Context") -> MetricResult:
        raise NotImplementedError


KINDS = {"defense": Defense, "purifier": Purifier, "attack": Attack, "metric": Metric}
