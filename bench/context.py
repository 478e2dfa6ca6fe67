"""What a plugin gets besides its inputs: profile, seed, device, the artifact store
for its own sub-artifacts (e.g. class images shared across cells), and progress."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .artifacts import Artifact, ArtifactStore, stable_hash


@dataclass
class Context:
    profile: str
    seed: int
    resolution: int
    store: ArtifactStore
    home: Path
    device: str = "cpu"
    quiet: bool = False
    log: Callable[[str], None] = print
    notes: dict[str, Any] = field(default_factory=dict)  # what a plugin wants in the record
    # Metrics with `uses_gallery`: every identity's clean references on the card (the subject's
    # included) and the base model's samples for the same prompts and seeds (the control).
    gallery: dict[str, list] | None = None
    subject: str | None = None
    control_images: list | None = None

    @property
    def zoo_root(self) -> Path:
        """Tiny zoo models are shared by every home unless BENCH_ZOO says otherwise."""
        import os

        return Path(os.environ.get("BENCH_ZOO", self.home / "zoo")).expanduser()

    def cached(self, stage: str, inputs: dict[str, Any], build: Callable[[Path], dict | None]) -> Artifact:
        """A plugin's own artifact (class images, a trained generator...), keyed by `inputs`."""
        art = self.store.ensure(stage, stable_hash(inputs), build, inputs=inputs)
        self.log(f"  {stage}: {'cached' if art.cached else 'computed'} ({art.key})")
        return art

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """Rich progress bar; yields `advance(n=1)`."""
        if self.quiet:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)

    def track(self, items: Iterable, description: str, total: int) -> Iterator:
        with self.progress(description, total) as advance:
            for item in items:
                yield item
                advance()

    def generator(self, offset: int = 0):
        import torch

        return torch.Generator(device="cpu").manual_seed(self.seed + offset)
