"""AdvDM on the tiny profile against real faces: the protection must raise the
surrogate's denoising loss beyond both clean and equal-budget random noise."""

import numpy as np
import pytest
import torch

from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.images import linf
from bench.models import load_sd, resolve
from defenses.advdm import AdvDM


@pytest.fixture(scope="module")
def setup(faces, shared_zoo, tmp_path_factory):
    home = tmp_path_factory.mktemp("advdm")
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(home / "a"), home=home, quiet=True, log=lambda m: None)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 64)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    return ctx, subject, base


def mean_loss(parts, images, n=16):
    """Denoising loss averaged over fixed (t, noise) draws: same draws for every image set."""
    g = torch.Generator().manual_seed(1234)
    x = sd.to_tensor(images)
    with torch.no_grad():
        cond = sd.encode_prompts(parts, ["a photo of sks person"])
        return float(torch.stack([sd.denoising_loss(parts, x, cond, g) for _ in range(n)]).mean())


def test_advdm_raises_loss_within_budget_and_is_deterministic(setup):
    ctx, subject, base = setup
    defense = AdvDM({"eps": 8, "alpha": 1, "steps": 20}, "tiny")
    protected = defense.protect(subject, base, ctx)
    assert all(linf(p, c) <= 8 for p, c in zip(protected, subject.train))
    assert max(linf(p, c) for p, c in zip(protected, subject.train)) == 8  # the budget is used, integer levels
    rng = np.random.default_rng(0)
    noisy = [np.clip(c.astype(int) + rng.integers(-8, 9, c.shape), 0, 255).astype(np.uint8) for c in subject.train]
    parts = load_sd(base)
    clean_l, noise_l, adv_l = mean_loss(parts, subject.train), mean_loss(parts, noisy), mean_loss(parts, protected)
    assert adv_l > clean_l and adv_l > noise_l, (clean_l, noise_l, adv_l)
    again = AdvDM({"eps": 8, "alpha": 1, "steps": 20}, "tiny").protect(subject, base, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(protected, again))
