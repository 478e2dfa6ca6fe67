"""Image I/O at stage boundaries: everything crosses as 8-bit RGB PNG, the way an
attacker downloads it. Loading is strict about what it cannot read and lenient
about what it can convert (EXIF rotation, RGBA, CMYK, 16-bit, palette, grey)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from .errors import BenchError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def to_rgb8(img: PILImage.Image, where: str = "image", notes: list[str] | None = None) -> np.ndarray:
    """Any PIL image -> uint8 RGB array; 16-bit and float modes are rescaled, alpha composited on
    white (and noted in `notes`, so the caller can say so)."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if notes is not None and rgba.getextrema()[3][0] < 255:
            notes.append("transparent")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PILImage.alpha_composite(background, rgba)
    if mode not in ("RGB",):
        try:
            img = img.convert("RGB")
        except Exception as exc:  # e.g. unsupported raw modes
            raise BenchError(f"{where}: cannot convert image mode {mode} to RGB ({exc})") from None
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def load_image(path: str | Path, notes: list[str] | None = None) -> np.ndarray:
    """One still image as uint8 RGB. Decompression bombs (PIL's pixel limit) and animations
    are errors: a benchmark must not pick a frame, or allocate gigabytes, without saying so."""
    path = Path(path)
    try:
        with PILImage.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise BenchError(f"{path}: animated image ({frames} frames); save the frame to use as a still image")
            img.load()
            return to_rgb8(img, str(path), notes)
    except PILImage.DecompressionBombError as exc:
        raise BenchError(f"{path}: image too large to load safely ({exc}); downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BenchError(f"{path}: unreadable image ({exc.__class__.__name__}: {exc})") from None


def list_images(folder: str | Path) -> list[Path]:
    """The images of a folder, sorted; a dangling link is an error, never silently skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchError(f"{folder}: no such folder")
    for p in folder.iterdir():
        if p.is_symlink() and not p.exists():
            raise BenchError(f"{p}: dangling symbolic link (its target {os.readlink(p)} does not exist)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BenchError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def center_crop_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Anti-DreamBooth preprocessing: center crop to square, then resize (bicubic)."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[top : top + s, left : left + s]
    if s == size:
        return np.ascontiguousarray(crop)
    pil = PILImage.fromarray(crop).resize((size, size), PILImage.BICUBIC)
    return np.asarray(pil)


def save_png(img: np.ndarray, path: str | Path) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise BenchError(f"{path}: plugins must return uint8 RGB (H, W, 3) images, got {img.dtype} {img.shape}")
    PILImage.fromarray(img).save(path, format="PNG")


def save_pngs(images: list[np.ndarray], folder: Path, names: list[str] | None = None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:04d}.png" for i in range(len(images))]
    out = []
    for img, name in zip(images, names):
        name = Path(name).stem + ".png"
        save_png(img, folder / name)
        out.append(name)
    return out


def load_pngs(folder: Path) -> list[np.ndarray]:
    return [load_image(p) for p in sorted(folder.glob("*.png"))]


# ------------------------------------------------------------- measurements
def linf(a: np.ndarray, b: np.ndarray) -> int:
    """L-inf distance in 0-255 pixel units."""
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def quantize_perturbed(clean: np.ndarray, adv01: np.ndarray, budget: float) -> np.ndarray:
    """Round a float image in [0, 1] to uint8 while keeping |adv - clean| <= floor(budget) levels.

    Rounding alone can add half a level; clipping the integer delta keeps the
    saved PNG inside the declared budget exactly.
    """
    levels = np.floor(budget + 1e-6)
    adv = np.round(np.clip(adv01, 0.0, 1.0) * 255.0)
    delta = np.clip(adv - clean.astype(np.float64), -levels, levels)
    return np.clip(clean.astype(np.float64) + delta, 0, 255).astype(np.uint8)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
