"""Measures the face world's acceptance (issue: "A world where identity is measurable"):

1. the no-defense DreamBooth cell on every identity of a card: FDFR, identification of the
   generated faces among the card's identities (control-calibrated), the unpersonalised
   model's control rate, and the ISM gap between subject and others relative to the card's
   own photos;
2. defenses (default advdm, aspl) over the same identities, each beside its no-defense
   baseline and its equal-budget noise control: mean [bootstrap 95% CI] and the paired
   Wilcoxon p over identities;
3. wall time per cell and for the whole run (2 cores: workers x threads <= 2);
4. a picture for one identity: training images, then generations with none, noise, advdm, aspl.

    python benchmarks/face_world.py                                   # sample card, tiny defaults
    python benchmarks/face_world.py --card anti-db --root ../shared/data/faces_glint
    python benchmarks/face_world.py --defenses none --picture ''      # baseline only

Not a test: it prints numbers for docs/face-world.md. Every cell is cached in --home, so a
second run with more defenses recomputes only the new cells.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _agg(records: list[dict]) -> dict:
    """Pooled over the card: faces found, faces identified, control rate, gap ratio."""
    n_img = n_face = n_id = 0
    ctrl, gaps, fdfr = [], [], []
    for r in records:
        m = r["metrics"].get("idr[dlib]", {})
        ex = m.get("extra") or {}
        per = m.get("per_image") or []
        n_img += ex.get("n_images", 0)
        n_face += ex.get("n_faces", 0)
        n_id += int(round(sum(v for v in per if v)))
        if "control_rate" in ex:
            ctrl.append(ex["control_rate"])
        if "gap_ratio" in ex:
            gaps.append(ex["gap_ratio"])
        fdfr.append(r["metrics"].get("fdfr[dlib]", {}).get("value"))
    return {"cells": len(records), "fdfr": float(np.mean([f for f in fdfr if f is not None])), "faces": f"{n_face}/{n_img}",
            "identified_among_faces": n_id / max(1, n_face), "control_rate": float(np.mean(ctrl)) if ctrl else None,
            "gap_ratio_mean": float(np.mean(gaps)) if gaps else None, "chance": ex.get("chance")}


def _picture(home: Path, records: dict[str, dict], train_png: Path, out: Path) -> None:
    from PIL import Image

    from bench.images import load_pngs

    rows = [np.concatenate(load_pngs(train_png), 1)]
    labels = ["training (clean set_B)"]
    for name, rec in records.items():
        gen = home / "artifacts" / "generated" / rec["stages"]["generate"]["artifact"] / "images"
        imgs = load_pngs(gen)[: len(load_pngs(train_png))]
        rows.append(np.concatenate(imgs, 1))
        labels.append(name)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(out)
    print(f"picture: {out} (rows: {', '.join(labels)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", default="sample")
    ap.add_argument("--root", default=None)
    ap.add_argument("--identities", type=int, default=0, help="first N identities of the card (0: all)")
    ap.add_argument("--defenses", default="none,advdm,aspl")
    ap.add_argument("--attack", default="db")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--home", type=Path, default=Path(".bench-face-world"))
    ap.add_argument("--set", action="append", default=[], help="override for every cell, e.g. attack.steps=400")
    ap.add_argument("--picture", default="docs/img/face_world.png", help="output PNG ('' = none)")
    a = ap.parse_args()
    os.environ.setdefault("BENCH_THREADS", str(max(1, len(os.sched_getaffinity(0)) // a.workers)))

    from bench import data
    from bench.cli import _print_statistics
    from bench.executors import LocalExecutor
    from bench.protocol import CellConfig
    from bench.runner import Runner

    card = data.load_card(a.card)
    ids = data.identities(card, a.root)
    ids = ids[: a.identities] if a.identities else ids
    runner = Runner(home=a.home, quiet=True, log=lambda m: None, compare=True)
    ds = {"card": a.card, **({"root": a.root} if a.root else {})}
    started = time.time()
    by_defense: dict[str, list[dict]] = {}
    for d in a.defenses.split(","):
        cfgs = [CellConfig.build({"defense": {"name": d}, "attack": {"name": a.attack}, "dataset": {**ds, "identity": i}}, a.set)
                for i in ids]
        t0 = time.time()
        by_defense[d] = runner.run_many(cfgs, LocalExecutor(a.workers))
        print(f"{d}: {len(cfgs)} identities in {time.time() - t0:.0f} s (with their baseline and noise companions)")
    print(f"total {time.time() - started:.0f} s, {a.workers} workers x {os.environ['BENCH_THREADS']} threads")

    # 1. the no-defense cells, read from any defense's comparison or from the none run
    none_recs = by_defense.get("none") or [runner.results.get(r["compare"]["baseline"]["cell_key"]) for r in next(iter(by_defense.values()))]
    print("\nno-defense baseline per identity")
    print(f"{'identity':12s} {'fdfr':>5s} {'idr':>5s} {'faces':>6s} {'control':>7s} {'ism subj':>8s} {'ism oth':>8s} {'gap/card':>8s} {'ctrl ism':>8s}")
    for r in none_recs:
        ex = r["metrics"]["idr[dlib]"].get("extra") or {}
        f = lambda k: f"{ex[k]:.3f}" if isinstance(ex.get(k), float) else "-"  # noqa: E731
        print(f"{r['identity']:12s} {r['metrics']['fdfr[dlib]']['value']:5.2f} {r['metrics']['idr[dlib]']['value']:5.2f} "
              f"{ex.get('n_faces', 0):>3d}/{ex.get('n_images', 0):<2d} {f('control_rate'):>7s} {f('ism_subject'):>8s} "
              f"{f('ism_others'):>8s} {f('gap_ratio'):>8s} {f('control_ism_subject'):>8s}")
    agg = _agg(none_recs)
    print(f"card: {agg}")
    print("acceptance: FDFR <= 0.2: {}; identified >= 0.8 of faces: {}; gap ratio >= 0.5: {}".format(
        agg["fdfr"] <= 0.2, agg["identified_among_faces"] >= 0.8, (agg["gap_ratio_mean"] or 0) >= 0.5))

    # 2. defenses against their companions
    defended = [r for d, recs in by_defense.items() if d != "none" for r in recs]
    if defended:
        print()
        _print_statistics(defended)

    # 4. the picture
    if a.picture and defended:
        first = ids[0]
        pick = {"none": none_recs[0]}
        for d, recs in by_defense.items():
            if d == "none":
                continue
            rec = next(r for r in recs if r["identity"] == first)
            if "noise" in rec["compare"] and "noise" not in pick:
                pick["noise"] = runner.results.get(rec["compare"]["noise"]["cell_key"])
            pick[d] = rec
        clean = a.home / "artifacts" / "clean" / none_recs[0]["stages"]["data"]["artifact"] / "train"
        Path(a.picture).parent.mkdir(parents=True, exist_ok=True)
        _picture(a.home, pick, clean, Path(a.picture))


if __name__ == "__main__":
    main()
