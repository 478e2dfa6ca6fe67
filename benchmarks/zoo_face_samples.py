"""How often the face-trained tiny SD draws a face a detector finds: N samples per prompt
with the tiny profile's sampler (DPM-Solver, 10 steps, CFG 7.5), judged by the offline
backend's MTCNN (the detector behind fdfr[dlib]); also the same for the old `tiny-sd`.
Writes a grid of the first 16 samples to docs/img/tiny-sd-face-samples.png.

    python benchmarks/zoo_face_samples.py [--n 32] [--models tiny-sd-face,tiny-sd]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ("a photo of a person", "a photo of sks person", "a dslr portrait of sks person", "a photo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--models", default="tiny-sd-face")
    ap.add_argument("--zoo", type=Path, default=Path(os.environ.get("BENCH_ZOO", ".bench/zoo")))
    ap.add_argument("--picture", default="docs/img/tiny-sd-face-samples.png")
    a = ap.parse_args()
    from PIL import Image

    from bench import sd
    from bench.models import load_sd, resolve
    from metrics.face_backends import get_backend

    det = get_backend("dlib")
    for name in a.models.split(","):
        t0 = time.time()
        pipe = sd.pipeline(load_sd(resolve({"id": f"zoo:{name}"}, a.zoo)), "dpm-solver")
        print(f"{name}: loaded/built in {time.time() - t0:.1f} s")
        for prompt in PROMPTS:
            t0 = time.time()
            imgs = sd.generate(pipe, [prompt] * a.n, list(range(a.n)), 10, 7.5, "", 64, batch_size=8)
            found = sum(f is not None for f in det.detect_and_embed(imgs))
            print(f"  {prompt!r}: MTCNN finds a face in {found}/{a.n} ({time.time() - t0:.1f} s)")
            if prompt == PROMPTS[0] and name == "tiny-sd-face" and a.picture:
                grid = np.concatenate([np.concatenate(imgs[i * 8:(i + 1) * 8], 1) for i in range(min(2, a.n // 8))], 0)
                Path(a.picture).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(a.picture)


if __name__ == "__main__":
    main()
