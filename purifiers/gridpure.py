"""GrIDPure (Zhao et al. 2024; seed 002 Algorithm 2): iterative small-step DiffPure on
overlapping windows, so the diffusion model cleans textures without redrawing the face.

Per iteration: split x_i into g x g windows with stride s (the last window flush with the
border), plus one "corner mosaic" window that tiles the four (g/2 x g/2) image corners
(GrIDPure gridpure.py get_corner_box: corners are otherwise covered by a single window);
DiffPure each window at timestep t; merge by averaging overlaps; then
x_{i+1} = (1 - gamma) * merged + gamma * x_i.

The split/merge/mix below are pure functions over tensors (C, H, W) that take the inner
purifier as an argument, so they can be tested exactly with hand-made inner steps.
"""

from __future__ import annotations

from typing import Callable

import torch

from bench import sd
from bench.errors import BenchError
from bench.params import Needs, Param
from bench.plugin import Purifier

from . import sdedit

SEED002 = "seed 002 (DiffShortcut) App. C.1 item 4 / Algorithm 2"
Inner = Callable[[torch.Tensor], torch.Tensor]  # (N, C, h, w) -> (N, C, h, w)
Box = tuple[int, int, int, int]  # y0, x0, y1, x1


# ------------------------------------------------------------ pure functions
def window_starts(length: int, window: int, stride: int) -> list[int]:
    """0, s, 2s, ... while the window fits, plus the window flush with the far border."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def grid_boxes(h: int, w: int, window: int, stride: int) -> list[Box]:
    return [(y, x, y + window, x + window) for y in window_starts(h, window, stride) for x in window_starts(w, window, stride)]


def corner_boxes(h: int, w: int, half: int) -> list[Box]:
    """The four half-window corners, in mosaic order: top-left, top-right, bottom-left, bottom-right."""
    return [(0, 0, half, half), (0, w - half, half, w), (h - half, 0, h, half), (h - half, w - half, h, w)]


def split(x: torch.Tensor, window: int, stride: int, corners: bool) -> tuple[torch.Tensor, list[Box]]:
    """Windows of x (C, H, W) as a batch (N, C, g, g); the corner mosaic (if any) comes last."""
    _, h, w = x.shape
    boxes = grid_boxes(h, w, window, stride)
    patches = [x[:, y0:y1, x0:x1] for y0, x0, y1, x1 in boxes]
    if corners:
        half = window // 2
        mosaic = torch.zeros_like(patches[0])
        for (y0, x0, y1, x1), (my, mx) in zip(corner_boxes(h, w, half), [(0, 0), (0, half), (half, 0), (half, half)]):
            mosaic[:, my : my + half, mx : mx + half] = x[:, y0:y1, x0:x1]
        patches.append(mosaic)
    return torch.stack(patches), boxes


def merge(patches: torch.Tensor, boxes: list[Box], shape: tuple[int, int, int], corners: bool) -> torch.Tensor:
    """Average the purified windows back into one (C, H, W) image (overlaps averaged)."""
    total = torch.zeros(shape, dtype=patches.dtype)
    count = torch.zeros(shape, dtype=patches.dtype)
    for p, (y0, x0, y1, x1) in zip(patches, boxes):
        total[:, y0:y1, x0:x1] += p
        count[:, y0:y1, x0:x1] += 1
    if corners:
        half = patches.shape[-1] // 2
        mosaic = patches[len(boxes)]
        for (y0, x0, y1, x1), (my, mx) in zip(corner_boxes(shape[1], shape[2], half), [(0, 0), (0, half), (half, 0), (half, half)]):
            total[:, y0:y1, x0:x1] += mosaic[:, my : my + half, mx : mx + half]
            count[:, y0:y1, x0:x1] += 1
    return total / count


def grid_step(x: torch.Tensor, inner: Inner, window: int, stride: int, corners: bool) -> torch.Tensor:
    """One split -> inner purification -> merge (Algorithm 2, lines 2-6)."""
    patches, boxes = split(x, window, stride, corners)
    return merge(inner(patches), boxes, tuple(x.shape), corners)


def mix(purified: torch.Tensor, previous: torch.Tensor, gamma: float) -> torch.Tensor:
    """Algorithm 2 line 7 / Eq. 7: x_{i+1} = (1 - gamma) * purified + gamma * x_i."""
    return (1 - gamma) * purified + gamma * previous


def gridpure(x: torch.Tensor, inner: Inner, window: int, stride: int, gamma: float, iterations: int,
             corners: bool = True, post: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Algorithm 2 on one image (C, H, W); `post` runs after every iteration (8-bit rounding)."""
    for _ in range(iterations):
        x = mix(grid_step(x, inner, window, stride, corners), x, gamma)
        if post is not None:
            x = post(x)
    return x


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Back to 8-bit levels in [-1, 1]: the reference saves a PIL image after every iteration."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


# ------------------------------------------------------------------ plugin
class GrIDPure(Purifier):
    name = "gridpure"
    links = {"code": "https://github.com/ZhengyueZhao/GrIDPure"}
    aliases = ("grid-pure",)
    summary = "Iterative small-step DiffPure on overlapping windows, mixed with the previous iterate (seed 002 Alg. 2)."
    version = "1"
    params = [
        Param("window", int, 256, tiny=32, source=SEED002 + ": 256x256 windows on 512 px images; tiny: 64/2",
              help="window size g (pixels)", ge=4),
        Param("stride", int, 128, tiny=16, source=SEED002 + ": stride 128; tiny: window/2", help="stride s (pixels)", ge=1),
        Param("t", int, 10, source=SEED002 + ": DiffPure with t = 10 per window", help="DDPM steps per window", ge=0, le=1000),
        Param("gamma", float, 0.1, source=SEED002 + ", Eq. 7: gamma = 0.1", help="weight of the previous iterate", ge=0, le=1),
        Param("iterations", int, 10, source=SEED002 + ": 10 iterations (RID used 20, methods.md)", ge=1),
        Param("corners", bool, True, source="GrIDPure gridpure.py get_corner_box: one extra window tiling the four corners",
              help="add the corner-mosaic window"),
        Param("pixel_model", str, sdedit.TINY_PIXEL_MODEL, paper=sdedit.PAPER_PIXEL_MODEL,
              source="paper: a face DDPM in diffusers format (GrIDPure used guided-diffusion 256x256_diffusion_uncond); "
                     "tiny: purifiers/tiny_ddpm.py", help="zoo:tiny-ddpm, hub id or local diffusers folder"),
    ]
    needs = Needs(weights=("pixel DDPM",), gpu_memory_gb={"paper": 8.0})

    def check(self):
        if self.p.corners and self.p.window % 2:
            raise BenchError(f"purifier.gridpure.window must be even when corners=true, got {self.p.window}")
        if self.p.stride > self.p.window:
            raise BenchError(f"purifier.gridpure.stride ({self.p.stride}) must not exceed window ({self.p.window})")

    def purify(self, images, ctx):
        unet, sched_cfg = sdedit.load_pixel_model(sdedit.resolve_pixel_model(self.p.pixel_model, ctx.zoo_root), ctx.device)
        g, s = self.p.window, self.p.stride
        out = []
        for i, img in enumerate(ctx.track(images, "gridpure", len(images))):
            if min(img.shape[:2]) < g:
                raise BenchError(f"purifier.gridpure.window {g} is larger than the image ({img.shape[1]}x{img.shape[0]}); "
                                 "pass --set purifier.window=N with N <= the image size")
            gen = ctx.generator(i)

            def inner(batch: torch.Tensor) -> torch.Tensor:
                return sdedit.pixel_sdedit(unet, sched_cfg, batch.to(ctx.device), self.p.t, gen).cpu()

            x = sd.to_tensor([img])[0]
            y = gridpure(x, inner, g, s, self.p.gamma, self.p.iterations, self.p.corners, post=quantize)
            out.append(sd.to_uint8(y[None])[0])
        ctx.notes["purifier"] = {"window": g, "stride": s, "t": self.p.t, "iterations": self.p.iterations, "model": self.p.pixel_model}
        return out
