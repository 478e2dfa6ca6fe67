"""AdverseCleaner (lllyasviel/AdverseCleaner, clean.py): removes adversarial noise from an
image with edge-preserving filters only, no model. 64 bilateral filter passes (diameter 5,
sigma colour 8, sigma space 8) on the float image, then 4 guided-filter passes that pull the
smoothed image back toward the edges of the original (radius 4, eps 16, the original as the
guide). The reference calls OpenCV-contrib's `cv2.ximgproc.guidedFilter`; the contrib build
replaces the `cv2` this project installs, so the colour guided filter (He et al., ECCV 2010,
Sec. 3.5: a 3x3 covariance per window, which is what ximgproc runs for a 3-channel guide) is
written here with box filters."""

from __future__ import annotations

import cv2
import numpy as np

from bench.params import Param
from bench.plugin import Purifier

REF = "lllyasviel/AdverseCleaner clean.py"


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT_101)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Colour guided filter: q = mean(a)^T I + mean(b), a = (Sigma_I + eps U)^-1 cov(I, p) per
    window (He et al. Eq. 14-16), for a float (H, W, 3) guide and a float (H, W, C) source."""
    I = guide.astype(np.float64)
    p = src.astype(np.float64)
    mean_i = np.stack([_box(I[..., c], r) for c in range(3)], axis=-1)
    # Sigma_I: 3x3 per pixel
    sigma = np.empty(I.shape[:2] + (3, 3))
    for a in range(3):
        for b in range(a, 3):
            sigma[..., a, b] = sigma[..., b, a] = _box(I[..., a] * I[..., b], r) - mean_i[..., a] * mean_i[..., b]
    inv = np.linalg.inv(sigma + eps * np.eye(3))
    out = np.empty_like(p)
    for c in range(p.shape[-1]):
        mean_p = _box(p[..., c], r)
        cov = np.stack([_box(I[..., k] * p[..., c], r) - mean_i[..., k] * mean_p for k in range(3)], axis=-1)
        a = np.einsum("...ij,...j->...i", inv, cov)
        b = mean_p - np.einsum("...i,...i->...", a, mean_i)
        mean_a = np.stack([_box(a[..., k], r) for k in range(3)], axis=-1)
        out[..., c] = np.einsum("...i,...i->...", mean_a, I) + _box(b, r)
    return out


class AdverseCleaner(Purifier):
    name = "adverse-cleaner"
    aliases = ("adversecleaner",)
    summary = "Edge-preserving filters only (64 bilateral + 4 guided passes), lllyasviel/AdverseCleaner."
    version = "1"
    links = {"code": "https://github.com/lllyasviel/AdverseCleaner"}
    params = [
        Param("bilateral_passes", int, 64, source=f"{REF}: i = 1..64 bilateralFilter", help="bilateral filter passes", ge=0),
        Param("diameter", int, 5, source=f"{REF}: bilateralFilter(y, 5, 8, 8)", help="bilateral neighbourhood diameter (px)", ge=1),
        Param("sigma_color", float, 8.0, source=f"{REF}: bilateralFilter(y, 5, 8, 8)", help="bilateral range sigma (0-255 levels)", gt=0),
        Param("sigma_space", float, 8.0, source=f"{REF}: bilateralFilter(y, 5, 8, 8)", help="bilateral spatial sigma (px)", gt=0),
        Param("guided_passes", int, 4, source=f"{REF}: i = 65..68 guidedFilter", help="guided filter passes", ge=0),
        Param("radius", int, 4, source=f"{REF}: guidedFilter(img, y, 4, 16)", help="guided filter window radius (px)", ge=1),
        Param("eps", float, 16.0, source=f"{REF}: guidedFilter(img, y, 4, 16) on 0-255 floats", help="guided filter regulariser", gt=0),
    ]

    def purify(self, images, ctx):
        out = []
        for img in images:
            original = img.astype(np.float32)
            y = original.copy()
            for _ in range(self.p.bilateral_passes):
                y = cv2.bilateralFilter(y, self.p.diameter, self.p.sigma_color, self.p.sigma_space)
            for _ in range(self.p.guided_passes):
                y = guided_filter(original, y, self.p.radius, self.p.eps).astype(np.float32)
            out.append(np.clip(y, 0, 255).astype(np.uint8))  # as the reference: clip, then truncate
        return out
