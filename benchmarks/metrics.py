"""What the metrics cost next to the attack they score, on one tiny cell.

Run:  BENCH_ZOO=/tmp/zoo python benchmarks/metrics.py [--faces ../shared/data/faces]

Runs one tiny cell (no defense, no purifier, DreamBooth on zoo:tiny-sd, 64 px) in a
fresh temporary home with bench.runner.Runner + CellConfig, takes the attack's
personalize + generate seconds from the record, then times every metric on that
cell's generated images against its clean references, twice: "first" includes
loading the models (once per process), "warm" is the steady-state cost per cell
(models loaded, per-image face memo cleared, as for a new cell's images).
Prints each metric's seconds and its fraction of the attack's seconds. Metrics
whose weights are absent are listed as unavailable (their cost is not measured).
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

from bench.images import load_pngs  # noqa: E402
from bench.protocol import CellConfig  # noqa: E402
from bench.registry import Registry  # noqa: E402
from bench.runner import Runner  # noqa: E402
from metrics import face_backends  # noqa: E402

METRICS = [
    "fdfr[dlib]", "ism[dlib]", "aism[dlib]", "fid[dlib-face]", "brisque[libsvm]", "brisque[piq]",
    "brisque[pyiqa]", "fid[inception]", "ism[insightface-antelopev2]", "ism[deepface-arcface]", "ims",
    "liqe[pyiqa-mix]", "clip-iqac",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", default=str(REPO.parent / "shared" / "data" / "faces"))
    args = ap.parse_args()
    os.environ.setdefault("BENCH_OFFLINE", "1")
    reg = Registry()
    with tempfile.TemporaryDirectory() as home:
        cfg = CellConfig.build(
            {
                "profile": "tiny",
                "dataset": {"card": "anti-db", "root": args.faces, "identity": "n000050"},
                "defense": "none",
                "attack": "dreambooth",
                "metrics": ["fdfr[dlib]"],
            }
        )
        runner = Runner(home=Path(home), registry=reg, quiet=True, log=lambda m: None)
        t0 = time.time()
        rec = runner.run(cfg)
        stage_s = {kind: s for kind, _label, cached, s in rec["_run"]["stages"]}
        attack_s = stage_s.get("personalized", 0.0) + stage_s.get("generated", 0.0)
        gen = load_pngs(runner.store.get("generated", rec["stages"]["generate"]["artifact"]).path / "images")
        refs = load_pngs(runner.store.get("clean", rec["stages"]["data"]["artifact"]).path / "reference")
        print(f"tiny cell: {len(gen)} generated images at {gen[0].shape[0]} px, {len(refs)} references; "
              f"cell wall time {time.time() - t0:.1f} s")
        print(f"attack cost (personalize {stage_s.get('personalized', 0):.1f} s + generate "
              f"{stage_s.get('generated', 0):.1f} s) = {attack_s:.1f} s\n")
        print(f"{'metric':32s} {'first s':>9s} {'warm s':>8s} {'warm/attack':>12s}  value / status")
        for mid in METRICS:
            name, _, rest = mid.partition("[")
            metric = reg.get("metric", name)({"backend": rest.rstrip("]")} if rest else {}, "tiny")
            ok, reason = metric.available()
            if not ok:
                print(f"{mid:32s} {'-':>9s} {'-':>8s} {'-':>12s}  unavailable: {reason[:70]}")
                continue
            times = []
            for _ in range(2):
                face_backends.clear_caches()  # a new cell brings new images: no memo hits
                t = time.perf_counter()
                res = metric.compute(gen, refs, None)
                times.append(time.perf_counter() - t)
            val = "None" if res.value is None else f"{res.value:.4g}"
            print(f"{mid:32s} {times[0]:9.2f} {times[1]:8.3f} {times[1] / attack_s:12.4f}  {val} ({res.status})")
        print("\nwarm = second call in the same process, models loaded, memo cleared. Within a real cell "
              "fdfr/ism/aism[dlib] share one detection pass (memo by image content), so their sum overstates.")


if __name__ == "__main__":
    main()
