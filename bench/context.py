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
    # Where a long stage saves its progress (bench/stages.py sets it per stage; None: no resume).
    progress_path: Path | None = None
    checkpoint_every: int = field(default_factory=lambda: _checkpoint_every())

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

    # ------------------------------------------------------------ resumable loops
    def load_progress(self) -> dict[str, Any] | None:
        """The state a killed run of this very stage saved (same inputs, same thread count), or None.
        With every tensor, optimiser and RNG state restored, the resumed loop computes bit for bit
        what the uninterrupted one would have (CPU, same threads)."""
        import torch

        if self.progress_path is None or not self.progress_path.is_file():
            return None
        try:
            state = torch.load(self.progress_path, weights_only=True)
        except Exception:  # a checkpoint cut off mid-write cannot happen (atomic rename); anything else: start over
            return None
        if state.get("threads") != torch.get_num_threads():
            self.log(f"  progress saved with {state.get('threads')} threads, running with {torch.get_num_threads()}: starting over")
            return None
        self.log(f"  resuming from step {state['step']} (saved progress)")
        return state

    def save_progress(self, step: int, total: int, state: Callable[[], dict[str, Any]], every: int | None = None) -> None:
        """Save `state()` after `step` of `total` every `checkpoint_every` steps, or every `every` for
        loops whose steps are long (atomic; not after the last). `state` is a callable so that the
        steps in between pay nothing. BENCH_CHECKPOINT_EVERY=0 turns saving off everywhere."""
        import os

        import torch

        interval = every if every is not None and self.checkpoint_every > 0 else self.checkpoint_every
        if self.progress_path is None or interval <= 0 or step % interval or step >= total:
            return
        self.progress_path.parent.mkdir(parents=True, exist_ok=True)
        for left in self.progress_path.parent.glob(f"{self.progress_path.stem}.*.part"):  # a save cut off by a kill
            left.unlink(missing_ok=True)
        tmp = self.progress_path.with_suffix(f".{os.getpid()}.part")
        torch.save({**state(), "step": step, "threads": torch.get_num_threads()}, tmp)
        os.replace(tmp, self.progress_path)

    def generator(self, offset: int = 0):
        import torch

        return torch.Generator(device="cpu").manual_seed(self.seed + offset)


def _checkpoint_every() -> int:
    """Steps between saved progress of long loops (BENCH_CHECKPOINT_EVERY; 0 turns it off)."""
    import os

    return int(os.environ.get("BENCH_CHECKPOINT_EVERY", 50))
