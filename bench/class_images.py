"""Prior-preservation ("class") images, generated once per base model + prompt +
count and shared by every plugin that needs them: the DreamBooth attack and the
DreamBooth-style surrogates of Anti-DreamBooth (FSMG/ASPL) and MetaCloak. The
cache key is the same for all of them, so a defense and the attack of one cell
reuse a single set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context
    from .plugin import ModelRef

SAMPLER = "dpm-solver"
GUIDANCE = 7.5
# Images per pipeline call. Fixed (not a per-plugin parameter) so that every plugin asks for
# the same artifact; each image keeps its own seed's noise whatever the batch.
BATCH = 4


def class_images(base: "ModelRef", ctx: "Context", prompt: str, count: int, steps: int) -> list[np.ndarray]:
    """`count` images of `prompt` from the base model (seeds 0..count-1), cached as a
    `class_images` artifact. count == 0 returns []."""
    if count <= 0:
        return []
    from . import sd
    from .images import load_pngs, save_pngs
    from .models import load_sd

    inputs = {
        "base": {"source": base.source, "revision": base.revision}, "prompt": prompt, "count": count,
        "steps": steps, "resolution": ctx.resolution, "sampler": SAMPLER, "seed": 0, "batch": BATCH,
    }

    def build(tmp: Path) -> dict:
        pipe = sd.pipeline(load_sd(base, ctx.device), SAMPLER)
        imgs = []
        with ctx.progress("class images", count) as advance:
            for start in range(0, count, BATCH):
                seeds = list(range(start, min(count, start + BATCH)))
                imgs += sd.generate(pipe, [prompt] * len(seeds), seeds, steps, GUIDANCE, "", ctx.resolution, batch_size=BATCH)
                advance(len(seeds))
        save_pngs(imgs, tmp / "images")
        return {"count": count}

    art = ctx.cached("class_images", inputs, build)
    return load_pngs(art.path / "images")
