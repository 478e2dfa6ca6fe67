"""Gaussian filtering: low-pass smoothing removes the high-frequency part of a protective
perturbation (and some image detail). Seed 002 App. C.1 item 1: kernel size 5 following
Anti-DreamBooth."""

from __future__ import annotations

import cv2
import numpy as np

from bench.errors import BenchError
from bench.params import Param
from bench.plugin import Purifier


class Gaussian(Purifier):
    name = "gaussian"
    aliases = ("gaussian-filter", "blur")
    summary = "Gaussian filter (OpenCV), kernel 5 as Anti-DreamBooth / seed 002."
    version = "1"
    params = [
        Param("kernel", int, 5, source="seed 002 (DiffShortcut) App. C.1 item 1: kernel size 5 following Anti-DreamBooth",
              help="odd kernel size (pixels)", ge=1),
        Param("sigma", float, 1.1,
              source="OpenCV's sigma for a 5-tap kernel, 0.3*((k-1)/2-1)+0.8 = 1.1 (the papers state only the kernel; "
                     "DiffShortcut's train-time transform samples sigma in [0.1, 2], its gau.py uses PIL radius=5)",
              help="standard deviation (pixels); 0 = OpenCV's rule for the kernel size", ge=0),
    ]

    def check(self):
        if self.p.kernel % 2 == 0:
            raise BenchError(f"purifier.gaussian.kernel must be odd, got {self.p.kernel}")

    def purify(self, images, ctx):
        k = self.p.kernel
        return [np.ascontiguousarray(cv2.GaussianBlur(img, (k, k), self.p.sigma, borderType=cv2.BORDER_REFLECT_101))
                for img in images]
