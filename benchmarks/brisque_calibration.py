"""BRISQUE calibration: every backend's value on one fixed image set.

Run:  python benchmarks/brisque_calibration.py [--faces ../shared/data/faces]
      [--piq-weights PATH] [--pyiqa-weights PATH]

Image set (fixed, deterministic): the shared portraits n000050/set_A (4 PNGs) and the
first 4 rid_103 JPEGs at native size, each clean and degraded three ways - JPEG
quality 10 (PIL), Gaussian noise sigma 20 levels (numpy seed 0), Gaussian blur radius
3 (PIL). Prints a table (rows: images x variants, columns: backends) and the mean per
variant. A backend whose SVR file is absent prints "unavailable: <reason>" - never a
number from another backend's model. Lower BRISQUE = better quality for all backends.
See docs/metrics.md, "BRISQUE calibration", for which backend matches the original
LIVE BRISQUE and the values measured here.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from PIL import ImageFilter  # noqa: E402

from bench.images import load_image  # noqa: E402
from metrics.brisque import BRISQUE  # noqa: E402


def variants(img: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="JPEG", quality=10)
    return {
        "clean": img,
        "jpeg10": np.asarray(PILImage.open(buf).convert("RGB")),
        "noise20": np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8),
        "blur3": np.asarray(PILImage.fromarray(img).filter(ImageFilter.GaussianBlur(3))),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", default=str(REPO.parent / "shared" / "data" / "faces"))
    ap.add_argument("--piq-weights", default="")
    ap.add_argument("--pyiqa-weights", default="")
    args = ap.parse_args()
    faces = Path(args.faces)
    files = sorted((faces / "n000050" / "set_A").glob("*.png")) + sorted((faces / "rid_103").glob("*.jpg"))[:4]
    rng = np.random.default_rng(0)
    rows = [(f.name, v, im) for f in files for v, im in variants(load_image(f), rng).items()]

    backends = {
        "libsvm": BRISQUE({"backend": "libsvm"}),
        "piq": BRISQUE({"backend": "piq", "weights": args.piq_weights}),
        "pyiqa": BRISQUE({"backend": "pyiqa", "weights": args.pyiqa_weights}),
    }
    cols: dict[str, list[float | None]] = {}
    for name, m in backends.items():
        ok, reason = m.available()
        if not ok:
            print(f"brisque[{name}]: unavailable: {reason}")
            continue
        cols[name] = m.compute([im for _, _, im in rows], [], None).per_image
    if not cols:
        return
    print(f"\n{'image':18s} {'variant':8s} " + " ".join(f"{n:>9s}" for n in cols))
    for i, (fname, var, _) in enumerate(rows):
        cells = " ".join(f"{cols[n][i]:9.2f}" if cols[n][i] is not None else f"{'-':>9s}" for n in cols)
        print(f"{fname:18s} {var:8s} {cells}")
    print("\nmean per variant (lower = better quality):")
    for var in ("clean", "jpeg10", "noise20", "blur3"):
        idx = [i for i, r in enumerate(rows) if r[1] == var]
        means = " ".join(f"{np.mean([cols[n][i] for i in idx if cols[n][i] is not None]):9.2f}" for n in cols)
        print(f"{'':18s} {var:8s} {means}")


if __name__ == "__main__":
    main()
