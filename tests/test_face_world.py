"""The face world on a small scale (docs/face-world.md has the 8-identity version): on one
synthetic identity, at the tiny defaults, the no-defense DreamBooth cell generates faces
identified as the subject far above the unpersonalised control; AdvDM takes most of that
away, and noise at the same budget does not."""

import pytest

from bench.protocol import CellConfig
from bench.runner import Runner

IDENTITY = "synth-004"  # benchmarks/face_world.py: none 1.00, noise 1.00, advdm 0.19 over 16 images


@pytest.fixture(scope="module")
def cells(shared_zoo, tmp_path_factory):
    runner = Runner(home=tmp_path_factory.mktemp("fw"), quiet=True, log=lambda m: None, compare=True)
    small = ["generation.images_per_prompt=4", "metrics=fdfr[dlib],idr[dlib]"]  # the first 8 of those 16 images
    rec = runner.run(CellConfig.build({"defense": {"name": "advdm"}, "dataset": {"card": "sample", "identity": IDENTITY}}, small))
    return {"advdm": rec, **{role: runner.results.get(c["cell_key"]) for role, c in rec["compare"].items() if isinstance(c, dict) and "cell_key" in c}}


def test_no_defense_cell_recognises_the_person(cells):
    m = cells["baseline"]["metrics"]
    idr = m["idr[dlib]"]
    assert m["fdfr[dlib]"]["value"] <= 0.2
    assert idr["value"] >= 0.6, idr  # identified among the card's ten identities (chance 0.1)
    assert idr["value"] >= idr["extra"]["control_rate"] + 0.4, idr["extra"]  # personalisation did it, not the base
    assert idr["extra"]["gap_ratio"] >= 0.5, idr["extra"]


def test_advdm_protects_and_equal_budget_noise_does_not(cells):
    idr = {k: r["metrics"]["idr[dlib]"]["value"] for k, r in cells.items()}
    assert cells["noise"]["protocol"]["defense"]["params"]["eps"] == cells["advdm"]["protocol"]["defense"]["params"]["eps"] == 16.0
    assert idr["advdm"] <= idr["baseline"] - 0.3, idr
    assert idr["advdm"] <= idr["noise"] - 0.3, idr
    assert cells["advdm"]["compare"]["protection"]["idr[dlib]"]["vs_baseline"] == pytest.approx(idr["baseline"] - idr["advdm"])
