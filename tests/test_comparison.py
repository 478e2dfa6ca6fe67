"""A defense's number means something only beside its no-defense baseline and the equal-budget
noise control of the same cell, over identities, with a CI and a paired test: the `noise`
defense, the planner's companions, the record's comparison and the paired statistics."""

import numpy as np
import pytest

from bench.context import Context
from bench.plugin import Subject
from bench.protocol import CellConfig
from bench.registry import Registry
from bench.runner import Runner, comparison
from bench.stats import paired_comparison


def _subject(seed=0):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    imgs[0][:8] = 0  # clipped at 0: noise may not go below
    imgs[1][:8] = 255
    return Subject("x", train=imgs, surrogate=imgs, reference=imgs, train_names=list("abcd"))


def test_noise_defense_moves_every_channel_by_the_budget(tmp_path):
    reg = Registry()
    subj = _subject()
    ctx = Context(profile="tiny", seed=3, resolution=64, store=None, home=tmp_path)
    out = reg.create("defense", "noise", {"eps": 8.7}, "tiny").protect(subj, None, ctx)
    for clean, prot in zip(subj.train, out):
        d = prot.astype(int) - clean.astype(int)
        assert np.abs(d).max() == 8  # floor(8.7): the saved PNG respects the budget
        inside = (clean >= 8) & (clean <= 247)
        assert np.all(np.abs(d[inside]) == 8)  # full budget everywhere it is not clipped
        assert 0.45 < (d[inside] > 0).mean() < 0.55  # random sign
    again = reg.create("defense", "noise", {"eps": 8.7}, "tiny").protect(subj, None, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    other = reg.create("defense", "noise", {"eps": 8.7}, "tiny").protect(subj, None, Context("tiny", 4, 64, None, tmp_path))
    assert not np.array_equal(out[0], other[0])


def test_each_defense_cell_plans_its_baseline_and_equal_budget_noise(tmp_path):
    runner = Runner(home=tmp_path, quiet=True, compare=True)
    small = ["attack.steps=1", "generation.images_per_prompt=1", "metrics=[]"]
    cfgs = [CellConfig.build({"defense": {"name": d}}, small) for d in ("advdm", "aspl", "none")]
    plan = runner.plan(cfgs)
    advdm, aspl, none = plan.cells
    assert set(advdm.companions) == {"baseline", "noise"} and not none.companions
    assert advdm.companions["noise"].proto["defense"]["params"]["eps"] == advdm.proto["defense"]["params"]["eps"]
    assert aspl.companions["noise"].proto["defense"]["params"]["eps"] == aspl.proto["defense"]["params"]["eps"] != 16.0
    # the baseline of every defense is the same cell as the explicit none cell: computed once
    assert advdm.companions["baseline"].cell_key == aspl.companions["baseline"].cell_key == none.cell_key
    # advdm, aspl, none and one noise cell per budget (16 and 6): the shared baseline is planned once
    assert sum(1 for kind, _ in plan.stages if kind == "personalized") == 5
    assert not runner.plan(cfgs, compare=False).cells[0].companions


def test_comparison_signs_protection_by_the_metrics_direction():
    rec = {"metrics": {"ism": {"value": 0.5, "status": "ok", "higher_is_better": True},
                       "fdfr": {"value": 0.75, "status": "ok", "higher_is_better": False},
                       "fid": {"value": None, "status": "unavailable: x", "higher_is_better": False}}}
    base = {"cell_key": "b", "protocol": {"defense": {"name": "none"}},
            "metrics": {"ism": {"value": 0.8, "status": "ok"}, "fdfr": {"value": 0.25, "status": "ok"}, "fid": {"value": 3, "status": "ok"}}}
    c = comparison(rec, {"baseline": base})
    assert c["protection"]["ism"]["vs_baseline"] == pytest.approx(0.3)  # ISM fell: protection
    assert c["protection"]["fdfr"]["vs_baseline"] == pytest.approx(0.5)  # FDFR rose: protection
    assert c["protection"]["fid"]["vs_baseline"] is None  # unavailable is never a number


def test_paired_comparison_detects_a_consistent_effect_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.9, 10)
    defended = base - 0.2 + rng.normal(0, 0.03, 10)
    noise = base + rng.normal(0, 0.03, 10)
    s = paired_comparison(list(defended), {"baseline": list(base), "noise": list(noise)}, higher_is_better=True)
    assert s["n"] == 10 and s["baseline"]["p_value"] < 0.01
    assert s["baseline"]["protection"] == pytest.approx(0.2, abs=0.03)
    lo, hi = s["baseline"]["protection_ci"]
    assert lo < 0.2 < hi and lo > 0.1
    # noise vs baseline is no effect: large p
    s2 = paired_comparison(list(noise), {"baseline": list(base)}, higher_is_better=True)
    assert s2["baseline"]["p_value"] > 0.05
    # an undefined value drops its pair and says so
    s3 = paired_comparison([None, *defended[1:]], {"baseline": list(base)}, higher_is_better=True)
    assert s3["baseline"]["n_pairs"] == 9 and s3["baseline"]["n_dropped"] == 1
