"""Protection-side fidelity: how far protected (or purified) images are from the clean ones.

target "protection": images[i] is the protected/purified version of references[i]
(same order, same shape). Pixel units are 0-255 throughout; the measurements are
the harness helpers in bench.images so budgets and metrics agree bit for bit.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from bench import images as bimg
from bench.errors import BenchError
from bench.plugin import Image, Metric, MetricResult


class _Paired(Metric):
    target = "protection"
    params: list = []
    _fn: Callable[[np.ndarray, np.ndarray], float]

    def _reduce(self, per: list[float]) -> float:
        return float(np.mean(per))

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        if not images:
            return MetricResult.unavailable("no images")
        if len(images) != len(references):
            raise BenchError(
                f"{self.name}: {len(images)} images but {len(references)} clean references; they must be paired"
            )
        per = []
        for i, (a, b) in enumerate(zip(images, references)):
            if a.shape != b.shape:
                raise BenchError(f"{self.name}: image {i} has shape {a.shape} but its clean reference {b.shape}")
            per.append(float(type(self)._fn(a, b)))
        return MetricResult(value=self._reduce(per), per_image=per, extra={"n_images": len(per)})


class PSNR(_Paired):
    name = "psnr"
    summary = "PSNR (dB) of protected vs clean images, peak 255; inf for identical images"
    higher_is_better = True
    _fn = staticmethod(bimg.psnr)


class SSIM(_Paired):
    name = "ssim"
    summary = "SSIM of protected vs clean images (skimage, channel_axis=2, data_range=255)"
    higher_is_better = True
    _fn = staticmethod(bimg.ssim)


class LInf(_Paired):
    name = "linf"
    summary = "L-inf distance of protected vs clean images in 0-255 pixel units (value: the max)"
    higher_is_better = None  # a budget check, not a score to optimise
    _fn = staticmethod(bimg.linf)

    def _reduce(self, per: list[float]) -> float:
        return float(np.max(per))
