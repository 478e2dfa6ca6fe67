"""RID vs ASPL seconds per image on the same tiny setup, in one run.

Both protect the same identity (n000050 set_B, 64 px) against the tiny zoo model on
this machine's CPU. RID is timed for inference only: its tiny generator is trained
first (or reused from the artifact cache, stage rid_generator) and the training time
is reported separately. ASPL (defenses/aspl.py, tiny defaults) is timed end to end,
which is what a user waits for; its shared class images are generated before timing.
Falls back to AdvDM when defenses/aspl.py cannot be imported.

    BENCH_ZOO=/tmp/zoo python benchmarks/rid_vs_aspl.py [--faces DIR] [--home DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(REPO.parent / "shared" / "data" / "faces"))
    ap.add_argument("--identity", default="n000050")
    ap.add_argument("--home", default=None, help="artifact home (default: a fresh temp dir)")
    ap.add_argument("--repeats", type=int, default=3, help="RID inference repeats (median)")
    args = ap.parse_args()

    import torch

    from bench import data
    from bench.artifacts import ArtifactStore
    from bench.context import Context
    from bench.models import resolve
    from defenses.rid import RID

    home = Path(args.home or tempfile.mkdtemp(prefix="rid_vs_aspl_"))
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(home / "artifacts"), home=home, quiet=True,
                  log=lambda m: None)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), args.faces, args.identity), 64)
    base = resolve({"id": "zoo:tiny-sd"}, Path(os.environ.get("BENCH_ZOO", home / "zoo")))
    n = len(subject.train)
    print(f"setup: tiny profile, {n} images of {args.identity} at 64 px, zoo:tiny-sd, CPU threads {torch.get_num_threads()}")

    rid = RID({}, "tiny")
    t0 = time.perf_counter()
    rid.network(base, ctx)  # trains once (or loads the cached generator)
    prep = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rid.protect(subject, base, ctx)
        times.append(time.perf_counter() - t0)
    rid_s = sorted(times)[len(times) // 2] / n
    print(f"RID   training/loading {prep:7.2f} s (once, cached); inference {rid_s:.4f} s/image "
          f"(median of {args.repeats})")

    try:
        from defenses.aspl import ASPL

        other, name = ASPL({}, "tiny"), "ASPL"
        from bench.class_images import class_images

        p = other.p
        if p.prior_weight > 0:
            class_images(base, ctx, p.class_prompt, p.num_class_images, p.class_steps)  # shared, not timed
    except ImportError:
        from defenses.advdm import AdvDM

        other, name = AdvDM({}, "tiny"), "AdvDM"
    t0 = time.perf_counter()
    other.protect(subject, base, ctx)
    other_s = (time.perf_counter() - t0) / n
    print(f"{name:5s} {other_s:.4f} s/image (tiny defaults, end to end)")
    print(f"ratio {name}/RID = {other_s / rid_s:.1f}x  (RID {rid_s:.4f} s/image vs {name} {other_s:.4f} s/image)")


if __name__ == "__main__":
    main()
