"""Seconds per image and peak memory of every image defense on the tiny profile,
side by side in one run.

Run:  python benchmarks/defenses.py [--threads N] [--defenses none,advdm,...]
      (about 2-4 minutes on 2 idle cores; longer on shared ones)

Each defense runs in its own fresh Python process (so one defense's allocator
caches do not hide the next one's peak) on identity n000050 of the shared faces
(4 set_B images, 64 px), with the tiny zoo model and the tiny-profile defaults.
The shared class images are generated before timing starts (in the harness they
are a cached artifact shared across cells), and the libraries are imported by
one untimed model load. Timed: the whole `protect` call, its own model loading
included, as the harness measures a defense stage.

Columns
  s/image      wall-clock seconds of protect / number of images
  cpu/wall     process CPU time / wall time; about the thread count on an idle
               machine, much lower when other processes share the cores
  peak RSS +   peak resident memory during protect minus the RSS just before it
               (psutil, sampled every 2 ms) - the memory the defense adds
  py peak      tracemalloc peak of Python-level allocations (numpy, lists;
               torch tensors are not traced)
  L-inf        measured on the quantised uint8 output, 0-255 units
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFENSES = ["none", "advdm", "anti-db", "aspl", "metacloak"]
FACES = Path(os.environ.get("BENCH_TEST_FACES", REPO.parent / "shared" / "data" / "faces"))


class PeakRSS:
    """Background sampler of this process's resident set size."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self.proc, self.interval, self.peak, self._stop = psutil.Process(), interval, 0, threading.Event()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def child(name: str, threads: int, home: Path) -> dict:
    import tracemalloc

    import torch

    from bench import data
    from bench.artifacts import ArtifactStore
    from bench.class_images import class_images
    from bench.context import Context
    from bench.images import linf
    from bench.models import load_sd, resolve
    from bench.registry import Registry

    torch.set_num_threads(threads)
    zoo = Path(os.environ.get("BENCH_ZOO", home / "zoo"))
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(home / "artifacts"), home=home,
                  quiet=True, log=lambda m: None)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(FACES), "n000050"), 64)
    base = resolve({"id": "zoo:tiny-sd"}, zoo)
    defense = Registry().create("defense", name, {}, "tiny")
    p = defense.p
    if "num_class_images" in p:  # warm the shared class-image cache outside the timing
        class_images(base, ctx, p.class_prompt, p.num_class_images, p.class_steps)
    load_sd(base)  # imports (diffusers, transformers) and the page cache, outside the timing
    tracemalloc.start()
    with PeakRSS() as mem:
        wall, cpu = time.perf_counter(), time.process_time()
        out = defense.protect(subject, base, ctx)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = len(out)
    return {
        "defense": name, "images": n, "s_per_image": wall / n, "cpu_per_wall": cpu / max(wall, 1e-9),
        "peak_rss_delta_mb": (mem.peak - mem.start) / 2**20, "rss_before_mb": mem.start / 2**20,
        "py_peak_mb": py_peak / 2**20, "linf": max(linf(a, b) for a, b in zip(out, subject.train)),
        "budget": defense.budget(), "threads": threads,
        "params": {k: v for k, v in p.items() if k in ("eps", "steps", "pgd_steps", "outer_steps", "surrogate_steps",
                                                        "total_train_steps", "interval", "total_trail_num")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--defenses", default=",".join(DEFENSES))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.threads, Path(args.home))))
        return
    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-defenses-") as home:
        for name in args.defenses.split(","):
            cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads), "--home", home]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(line[0][7:]))
            print(f"  {name}: done", file=sys.stderr)
    print(f"\nImage defenses, tiny profile (64 px, n000050 set_B = 4 images, tiny zoo SD, {args.threads} thread(s))\n")
    head = f"{'defense':<10} {'s/image':>8} {'cpu/wall':>8} {'peak RSS +MB':>12} {'py peak MB':>10} {'L-inf':>5} {'budget':>6}  settings"
    print(head)
    print("-" * len(head))
    for r in rows:
        settings = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        print(f"{r['defense']:<10} {r['s_per_image']:>8.2f} {r['cpu_per_wall']:>8.2f} {r['peak_rss_delta_mb']:>12.1f} "
              f"{r['py_peak_mb']:>10.2f} {r['linf']:>5} {np.floor(r['budget'] + 1e-6):>6.0f}  {settings}")
    print("\npeak RSS + = peak resident memory during protect minus RSS before it; cpu/wall < threads means shared cores.")


if __name__ == "__main__":
    main()
