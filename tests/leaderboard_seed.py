"""A seeded results home for the leaderboard tests: schema-faithful records written with
bench.results.ResultsStore and tiny PNG artifacts, no model runs.

Two protocol groups:
- TINY (tiny profile, zoo:tiny-sd, 64 px): identities id1, id2; defenses none, advdm,
  aspl; purifiers none, jpeg; attack dreambooth. BRISQUE is unavailable for aspl+jpeg.
  TINY's advdm and aspl cells carry their paired comparison with the `none` cell of the same
  identity and purifier (as `bench run --compare` writes it), so the group has a per-defense
  ranking: worst-case ISM protection advdm 0.15 (jpeg), aspl 0.20 (jpeg).
- PAPER (paper profile, SD 2.1-base, 512 px): id1 only; none and advdm, no purifier.
  Its advdm has the best ISM of all (0.05): if groups were mixed it would outrank TINY's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from bench.results import ResultsStore
from bench.runner import comparison

TINY, PAPER = "1111aaaa2222", "9999ffff0000"
IDS = ("id1", "id2")
SECONDS = {"none": 0.0, "advdm": 2.0, "aspl": 5.0}
FDFR = {"none": 0.0, "advdm": 0.25, "aspl": 0.5}
# ISM per (defense, purifier) and identity; means: none 0.55, advdm 0.25 / 0.40, aspl 0.15 / 0.35
ISM = {
    ("none", "none"): (0.60, 0.50), ("advdm", "none"): (0.30, 0.20), ("aspl", "none"): (0.10, 0.20),
    ("none", "jpeg"): (0.58, 0.52), ("advdm", "jpeg"): (0.45, 0.35), ("aspl", "jpeg"): (0.40, 0.30),
}
PAPER_ISM = {"none": 0.70, "advdm": 0.05}
BRISQUE_REASON = "BRISQUE model file missing (seeded)"
LPIPS_REASON = "LPIPS weights not present offline (seeded)"
PERTURB = 4  # pixel units added by the seeded "advdm"/"aspl" images


def _key(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def _clean(identity: str, i: int) -> np.ndarray:
    rng = np.random.default_rng(IDS.index(identity) * 10 + i)
    return rng.integers(20, 200, size=(8, 8, 3))


def _metric(value, hib, per_image=None, status="ok", extra=None):
    return {"value": value, "status": status, "higher_is_better": hib, "per_image": per_image, "extra": extra or {}}


def make_record(home: Path, group: str, profile: str, identity: str, defense: str, purifier: str,
                ism: float, clean_key: str | None = None, metric_ids=("ism[dlib]", "fdfr[dlib]", "brisque[libsvm]")) -> dict:
    """Write the artifacts of one cell under home/artifacts and return its record."""
    art = home / "artifacts"
    clean_key = clean_key or _key("clean", group, identity)
    names = ["view00.png", "view01.png"]
    cleans = [_clean(identity, i) for i in range(2)]
    for n, c in zip(names, cleans):
        if not (art / "clean" / clean_key / "train" / n).exists():
            _png(art / "clean" / clean_key / "train" / n, c)
    d_key = _key("defense", clean_key, defense)
    bump = 0 if defense == "none" else PERTURB
    for n, c in zip(names, cleans):
        prot = c.copy()
        prot[::2, ::2, 0] += bump  # L-inf exactly `bump` on channel 0
        _png(art / "defense" / d_key / "images" / n, prot)
    stages_pur = []
    if purifier != "none":
        p_key = _key("purified", d_key, purifier)
        for n, c in zip(names, cleans):
            _png(art / "purified" / p_key / "images" / n, c)
        stages_pur.append({"artifact": p_key, "key": p_key, "name": purifier, "recipe": None, "seconds": 0.01,
                           "seconds_per_image": 0.005, "stage": "purified",
                           "vs_clean": {"measured_linf": 3, "psnr": 40.0, "ssim": 0.99},
                           "vs_input": {"measured_linf": 5, "psnr": 38.0, "ssim": 0.98}})
    g_key = _key("generated", d_key, purifier, group)
    gen = []
    for i in range(2):
        _png(art / "generated" / g_key / "images" / f"{i:04d}.png", np.full((8, 8, 3), 40 * (i + 1)))
        gen.append({"file": f"{i:04d}.png", "prompt": "a photo of sks person", "seed": i})
    resolution = 64 if profile == "tiny" else 512
    base = {"id": "zoo:tiny-sd" if profile == "tiny" else "stabilityai/stable-diffusion-2-1-base",
            "mirrors": [], "path": None, "revision": None}
    protocol = {
        "profile": profile, "resolution": resolution, "seed": 0,
        "dataset": {"card": "anti-db", "identity": identity, "root": None},
        "base_model": base,
        "defense": {"name": defense, "version": "1", "params": {} if defense == "none" else {"eps": 16.0, "steps": 5}},
        "purifier": [] if purifier == "none" else [{"name": purifier, "version": "1", "params": {"quality": 75}}],
        "attack": {"name": "dreambooth", "version": "1", "params": {"steps": 30, "lr": 2e-4}},
        "generation": {"sampler": "dpm-solver", "steps": 10, "guidance_scale": 7.5, "images_per_prompt": 2,
                       "negative_prompt": "", "prompts": ["a photo of sks person"]},
        "metrics": [{"id": m, "name": m.split("[")[0], "params": {"backend": m.split("[")[1][:-1]}, "version": "1"} for m in metric_ids],
    }
    metrics = {}
    for m in metric_ids:
        if m.startswith("ism"):
            metrics[m] = _metric(ism, True, [ism, ism], extra={"definition": "antidb"})
        elif m.startswith("fdfr"):
            metrics[m] = _metric(FDFR[defense], False, [FDFR[defense]] * 2)
        elif m.startswith("brisque"):
            if (defense, purifier) == ("aspl", "jpeg"):
                metrics[m] = _metric(None, False, None, status=f"unavailable: {BRISQUE_REASON}")
            else:
                metrics[m] = _metric(20.0 + 10 * list(SECONDS).index(defense), False, [20.0, 20.0])
    cell_key = _key("cell", group, identity, defense, purifier)
    return {
        "cell_key": cell_key, "created": "2026-01-01T00:00:00+00:00", "bench_version": "0.1.0",
        "protocol": protocol, "protocol_group": group, "identity": identity,
        "base_model": {"source": base["id"], "revision": "seeded", "path": None},
        "stages": {
            "data": {"artifact": clean_key, "key": clean_key, "card": "anti-db", "identity": identity,
                     "counts": {"train": 2, "reference": 2, "surrogate": 2}, "stage": "clean", "seconds": 0.0},
            "defense": {"artifact": d_key, "key": d_key, "level": "image", "budget": 0.0 if defense == "none" else 16.0,
                        "measured_linf": bump, "psnr": float("inf") if bump == 0 else 45.0, "ssim": 1.0 if bump == 0 else 0.98,
                        "seconds_per_image": SECONDS[defense], "seconds_total": 2 * SECONDS[defense],
                        "ciede2000": 0.0 if bump == 0 else 1.5, "changed_fraction": 0.0 if bump == 0 else 0.25,
                        "lpips": None, "lpips_unavailable": LPIPS_REASON, "peak_rss_mib": 100.0 + SECONDS[defense],
                        "per_image": [{"linf": bump, "psnr": 45.0, "ssim": 0.98}] * 2, "stage": "defense"},
            "purifier": stages_pur,
            "personalize": {"artifact": _key("personalized", g_key), "key": _key("personalized", g_key),
                            "stage": "personalized", "seconds": 1.0, "zero_shot": False},
            "generate": {"artifact": g_key, "key": g_key, "images": gen, "stage": "generated", "seconds": 1.0},
        },
        "recipe": {"class_suffix": "", "instance_suffix": "", "negative_prompt": "", "sample_suffix": ""},
        "links": {} if defense == "none" else {f"defense:{defense}": {"paper": f"https://example.org/{defense}", "code": "none published"}},
        "metrics": metrics,
        "environment": {"python": "3.11", "device": "cpu"},
    }


def seed_home(home: Path) -> dict[str, dict]:
    """Write the two groups; returns {"<group>/<identity>/<defense>/<purifier>": record}."""
    home = Path(home)
    store = ResultsStore(home / "results")
    out = {}
    for (defense, purifier), values in ISM.items():  # `none` first: the companions of the others
        for identity, v in zip(IDS, values):
            rec = make_record(home, TINY, "tiny", identity, defense, purifier, v)
            if defense != "none":
                rec["compare"] = comparison(rec, {"baseline": out[f"{TINY}/{identity}/none/{purifier}"]})
            store.add(rec)
            out[f"{TINY}/{identity}/{defense}/{purifier}"] = rec
    for defense, v in PAPER_ISM.items():
        rec = make_record(home, PAPER, "paper", "id1", defense, "none", v)
        store.add(rec)
        out[f"{PAPER}/id1/{defense}/none"] = rec
    return out
