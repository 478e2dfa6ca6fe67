"""How visible a protection is, measured on the saved PNGs against the clean images: the
columns peer benchmarks report beside protection (DiffAdvPerturbationBench, CopyrightMeter).

- L-inf in 0-255 pixel units (the budget), PSNR, SSIM (skimage, data_range 255);
- CIEDE2000: mean colour difference per pixel in CIELAB (skimage.color.deltaE_ciede2000;
  about 1 = just noticeable, Sharma et al. 2005);
- changed fraction: share of pixels with any channel changed (the L0 view of a sparse attack);
- LPIPS (Zhang et al., CVPR 2018, arXiv 1801.03924): piq's VGG16 variant, computed only when
  both of its weight files are already in the torch hub cache. Nothing is downloaded; without
  them the value is None with the reason, never another network under the same name.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from .images import linf, psnr, ssim

# piq.LPIPS loads torchvision's VGG16 (ImageNet) and its own linear heads, both through torch.hub
LPIPS_FILES = ("vgg16-397923af.pth", "lpips_weights.pt")
_LOCK = threading.Lock()
_LPIPS: dict[str, Any] = {}


def ciede2000(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.color import deltaE_ciede2000, rgb2lab

    return float(deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).mean())


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    return float((a != b).any(axis=-1).mean())


def lpips_weights() -> tuple[Path | None, str]:
    """(hub checkpoint folder, "") when both weight files are present, else (None, reason)."""
    import torch

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    missing = [f for f in LPIPS_FILES if not (folder / f).is_file()]
    if missing:
        return None, f"LPIPS weights not present offline ({', '.join(missing)} missing in {folder}; piq fetches them from GitHub/PyTorch)"
    return folder, ""


def lpips(images: list[np.ndarray], refs: list[np.ndarray]) -> tuple[list[float] | None, str]:
    """Per-image LPIPS (lower = closer) or (None, reason)."""
    folder, reason = lpips_weights()
    if folder is None:
        return None, reason
    import torch

    with _LOCK:
        if "vgg" not in _LPIPS:
            from piq import LPIPS

            _LPIPS["vgg"] = LPIPS(reduction="none").eval()
        net = _LPIPS["vgg"]
    to = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    with torch.no_grad():
        return [float(v) for v in net(to(images), to(refs)).flatten()], ""


def pair_measures(images: list[np.ndarray], refs: list[np.ndarray], with_lpips: bool = False) -> dict[str, Any]:
    """Per-image and mean perceptibility of `images` against the paired `refs`."""
    per = [{"linf": linf(a, b), "psnr": psnr(a, b), "ssim": ssim(a, b), "ciede2000": ciede2000(a, b),
            "changed_fraction": changed_fraction(a, b)} for a, b in zip(images, refs)]
    finite = [p["psnr"] for p in per if np.isfinite(p["psnr"])]
    out: dict[str, Any] = {
        "measured_linf": max(p["linf"] for p in per),
        "psnr": float(np.mean(finite)) if finite else None,  # None: identical images (no noise)
        "ssim": float(np.mean([p["ssim"] for p in per])),
        "ciede2000": float(np.mean([p["ciede2000"] for p in per])),
        "changed_fraction": float(np.mean([p["changed_fraction"] for p in per])),
    }
    if with_lpips:
        values, reason = lpips(images, refs)
        out["lpips"] = float(np.mean(values)) if values else None
        if values:
            for p, v in zip(per, values):
                p["lpips"] = v
        else:
            out["lpips_unavailable"] = reason
    out["per_image"] = per
    return out
