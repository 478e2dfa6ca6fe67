"""Anti-DreamBooth (FSMG), ASPL (+ E-ASPL, targeted) and MetaCloak on the tiny
profile against the real faces (n000050), and unit tests of the shared
adversarial core (defenses/adversarial.py).

A defense passes when the base model's denoising loss on its PNG-quantised
output (measured at fixed (t, noise) draws, as in test_defense_advdm.py) beats
both the clean images and uniform random noise of the same L-inf, the budget
holds on the quantised output, and the same seed reproduces it bit for bit."""

import numpy as np
import pytest
import torch

from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.errors import BenchError
from bench.images import linf
from bench.models import load_sd, resolve
from defenses.adversarial import (
    EOT, GaussianBlur, HFlip, Surrogate, TrainConfig, denoising_objective, frozen, pgd, px_to_model, target_image,
    target_shift,
)
from defenses.anti_db import AntiDreamBooth
from defenses.aspl import ASPL
from defenses.metacloak import MetaCloak

PROMPT = "a photo of sks person"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two intra-op threads on cores shared with other jobs spin-wait badly (10x slower
    in CPU time here); one thread keeps the module inside its time budget."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(faces, shared_zoo, tmp_path_factory):
    home = tmp_path_factory.mktemp("defenses_image")
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(home / "a"), home=home, quiet=True, log=lambda m: None)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 64)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    return ctx, subject, base, load_sd(base)


def mean_loss(parts, images, n=16):
    """Base-model denoising loss over fixed (t, noise) draws: the same draws for every set."""
    g = torch.Generator().manual_seed(1234)
    x = sd.to_tensor(images)
    with torch.no_grad():
        cond = sd.encode_prompts(parts, [PROMPT])
        return float(torch.stack([sd.denoising_loss(parts, x, cond, g) for _ in range(n)]).mean())


def uniform_noise(images, eps):
    rng = np.random.default_rng(0)
    return [np.clip(c.astype(int) + rng.integers(-eps, eps + 1, c.shape), 0, 255).astype(np.uint8) for c in images]


def check_protection(defense, ctx, subject, base, parts):
    """Budget on the quantised output, loss above clean and equal-budget noise, determinism."""
    protected = defense.protect(subject, base, ctx)
    eps = int(np.floor(defense.budget()))
    assert [p.dtype for p in protected] == [np.uint8] * len(subject.train)
    dists = [linf(p, c) for p, c in zip(protected, subject.train)]
    assert max(dists) == eps, dists  # within budget, and the budget is used (integer levels)
    clean_l, noise_l, adv_l = mean_loss(parts, subject.train), mean_loss(parts, uniform_noise(subject.train, eps)), mean_loss(parts, protected)
    assert adv_l > clean_l and adv_l > noise_l, (defense.name, clean_l, noise_l, adv_l)
    again = type(defense)(dict(defense.p), "tiny").protect(subject, base, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(protected, again)), f"{defense.name}: same seed, different PNGs"
    return protected


# ------------------------------------------------------------ the methods
def test_anti_db_fsmg(setup):
    ctx, subject, base, parts = setup
    check_protection(AntiDreamBooth({}, "tiny"), ctx, subject, base, parts)
    notes = ctx.notes["defense"]
    assert len(notes["surrogate_loss_trace"]) == 20 and len(notes["loss_trace"]) == 20


def test_aspl(setup):
    ctx, subject, base, parts = setup
    check_protection(ASPL({}, "tiny"), ctx, subject, base, parts)
    notes = ctx.notes["defense"]
    assert len(notes["loss_trace"]) == 5 * 6 and len(notes["clone_loss_trace"]) == 5 * 3
    # class images come from the shared cache the dreambooth attack uses
    assert len(list((ctx.store.root / "class_images").iterdir())) == 1


def test_metacloak(setup):
    ctx, subject, base, parts = setup
    check_protection(MetaCloak({}, "tiny"), ctx, subject, base, parts)
    notes = ctx.notes["defense"]
    assert notes["pool_snapshots_at_step"] == [0, 4, 9]  # before step 0 and every (s+1) % interval == 0
    assert len(notes["loss_trace"]) == 1 * 3 * (5 // 2)  # trials x snapshots x interval // advance_steps


def test_e_aspl_two_zoo_models(setup, shared_zoo):
    """E-ASPL over two different tiny models (tiny-sd, and the face-trained tiny-sd-face:
    other pre-training): each surrogate runs its PGD every iteration, interleaved or
    averaged, and the result is harder to denoise for both."""
    ctx, subject, base, parts = setup
    second = load_sd(resolve({"id": "zoo:tiny-sd-face"}, shared_zoo))
    out = {}
    for mode in ("interleave", "average"):
        d = ASPL({"ensemble": ["zoo:tiny-sd-face"], "ensemble_mode": mode, "outer_steps": 2}, "tiny")
        out[mode] = d.protect(subject, base, ctx)
        assert ctx.notes["defense"]["surrogates"] == ["zoo:tiny-sd", "zoo:tiny-sd-face"]
        assert len(ctx.notes["defense"]["loss_trace"]) == 2 * 2 * 6  # every surrogate runs its PGD each iteration
        assert max(linf(p, c) for p, c in zip(out[mode], subject.train)) == 6
        for model in (parts, second):
            assert mean_loss(model, out[mode]) > mean_loss(model, subject.train)
    assert not all(np.array_equal(a, b) for a, b in zip(out["interleave"], out["average"]))


def test_targeted_aspl_moves_toward_target(setup):
    """The target-shift term pulls the base model's one-step denoising of the protected
    images toward the target's latents (lower than clean and than random noise)."""
    ctx, subject, base, parts = setup
    protected = ASPL({"target": "pattern", "outer_steps": 4}, "tiny").protect(subject, base, ctx)
    assert ctx.notes["defense"]["targeted"] is True
    assert max(linf(p, c) for p, c in zip(protected, subject.train)) == 6

    def shift(images, n=16):
        g = torch.Generator().manual_seed(99)
        x = sd.to_tensor(images)
        with torch.no_grad():
            tl = sd.encode_images(parts, sd.to_tensor([target_image("pattern", 64)]), g)
            cond = sd.encode_prompts(parts, [PROMPT]).expand(len(x), -1, -1)
            vals = []
            for _ in range(n):
                lat = sd.encode_images(parts, x, g)
                noise, t = torch.randn(lat.shape, generator=g), torch.randint(0, 1000, (len(x),), generator=g)
                noisy = parts["scheduler"].add_noise(lat, noise, t)
                vals.append(target_shift(parts["scheduler"], parts["unet"](noisy, t, cond).sample, t, noisy, noise, tl, g))
            return float(torch.stack(vals).mean())

    clean_s, noise_s, adv_s = shift(subject.train), shift(uniform_noise(subject.train, 6)), shift(protected)
    assert adv_s < clean_s and adv_s < noise_s, (clean_s, noise_s, adv_s)


@pytest.mark.parametrize(
    "cls,params,match",
    [
        (AntiDreamBooth, {"eps": -1}, "eps"),
        (AntiDreamBooth, {"steps": 0}, "steps"),
        (AntiDreamBooth, {"surrogate_steps": 0}, "surrogate_steps"),
        (AntiDreamBooth, {"target": "/no/such/target.png"}, "target"),
        (ASPL, {"eps": -6}, "eps"),
        (ASPL, {"pgd_steps": 0}, "pgd_steps"),
        (ASPL, {"outer_steps": 0}, "outer_steps"),
        (ASPL, {"ensemble_mode": "vote"}, "ensemble_mode"),
        (ASPL, {"alpha": 0}, "alpha"),
        (MetaCloak, {"eps": 0}, "eps"),
        (MetaCloak, {"pgd_steps": 0}, "pgd_steps"),
        (MetaCloak, {"blur_kernel": 6}, "blur_kernel"),
        (MetaCloak, {"interval": 1, "advance_steps": 2}, "interval"),
        (MetaCloak, {"lr": -1e-4}, "lr"),
    ],
)
def test_bad_parameters(cls, params, match):
    with pytest.raises(BenchError, match=match) as err:
        cls(params, "tiny")
    assert "\n" not in str(err.value)


# ------------------------------------------------------ the adversarial core
def test_pgd_projection_never_exceeds_eps():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((2, 3, 8, 8), generator=g) * 2 - 1
    w = torch.randn(x.shape, generator=g)
    eps_px = 6.0
    eps = px_to_model(eps_px)
    seen = []

    def loss_fn(x_adv, step):
        seen.append((x_adv - x).abs().max().item())
        return (x_adv * w).sum()

    far = x + 10 * torch.randn(x.shape, generator=g)  # a warm start far outside the ball
    for kwargs in ({}, {"random_start": True, "generator": g}, {"init": far}):
        seen.clear()
        adv = pgd(x, loss_fn, eps_px, 2.5, 7, **kwargs)
        assert max(seen) <= eps + 1e-6 and (adv - x).abs().max().item() <= eps + 1e-6
        assert adv.min() >= -1 and adv.max() <= 1
    # a linear loss drives every pixel to the boundary of the box it may reach
    expect = (x + eps * w.sign()).clamp(-1, 1)
    assert torch.allclose(pgd(x, loss_fn, eps_px, 1.0, 20), expect, atol=1e-6)


def test_eot_transforms_are_differentiable_and_seeded():
    x = torch.rand((1, 3, 12, 12), dtype=torch.float64, requires_grad=True)
    blur = GaussianBlur(7)
    fn = blur.sample(torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(fn, (x,))
    flip = HFlip(p=1.0).sample()
    w = torch.randn(x.shape, dtype=torch.float64)
    (grad,) = torch.autograd.grad((flip(x) * w).sum(), x)
    assert torch.equal(grad, torch.flip(w, dims=(-1,)))
    eot = EOT([GaussianBlur(7), HFlip(0.5)])
    draws = [eot.sample(torch.Generator().manual_seed(s))(x.detach()) for s in range(8)]
    again = [eot.sample(torch.Generator().manual_seed(s))(x.detach()) for s in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(draws, again))
    assert len({round(float(d.sum()), 6) for d in draws}) > 1  # blur sigma / flip vary across draws
    blurred = GaussianBlur(7, sigma=(2.0, 2.0)).sample()(x.detach())
    assert blurred.std() < x.detach().std()  # it is a low-pass filter


def test_objective_matches_sd_loss_and_pgd_freezes_weights(setup):
    ctx, subject, base, parts = setup
    x = sd.to_tensor(subject.train[:2])
    with torch.no_grad():
        cond = sd.encode_prompts(parts, [PROMPT])
        a = denoising_objective(parts, x, cond, torch.Generator().manual_seed(5))
        b = sd.denoising_loss(parts, x, cond, torch.Generator().manual_seed(5))
    assert torch.allclose(a, b)
    unet = parts["unet"]
    unet.requires_grad_(True)
    with frozen(unet):
        assert not any(p.requires_grad for p in unet.parameters())
    assert all(p.requires_grad for p in unet.parameters())
    unet.requires_grad_(False)


def test_surrogate_clone_restore_leaves_weights_untouched(setup):
    ctx, subject, base, _ = setup
    cfg = TrainConfig(lr=1e-3, batch_size=1)
    sur = Surrogate.load(base, cfg, subject.reference[:2])
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in sur.modules]
    x = sd.to_tensor(subject.surrogate)
    g = torch.Generator().manual_seed(0)
    with sur.clone():
        losses = sur.train(x, 2, g)
        assert len(losses) == 2
        changed = [not torch.equal(v, before[0][k]) for k, v in sur.modules[0].state_dict().items()]
        assert sum(changed) > 0.9 * len(changed)  # float32 master weights: nearly every tensor moves
        adv = sur.attack(sd.to_tensor(subject.train[:2]), 6, 1, 2, g)
        assert all(p.grad is None for m in sur.all_modules for p in m.parameters())  # PGD computed no weight grads
        assert (adv - sd.to_tensor(subject.train[:2])).abs().max() <= px_to_model(6) + 1e-6
    for m, ref in zip(sur.modules, before):
        assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    assert all(not p.requires_grad for m in sur.all_modules for p in m.parameters())


def test_memory_options_keep_results(setup):
    """Gradient checkpointing and eager attention change memory / speed, not the numbers;
    autocast and 8-bit Adam are no-ops on CPU."""
    ctx, subject, base, _ = setup
    results = []
    for gc, sdpa, mp, bnb in ((False, True, "no", False), (True, True, "bf16", True), (False, False, "fp16", False)):
        sur = Surrogate.load(base, TrainConfig(lr=1e-3, mixed_precision=mp, use_8bit_adam=bnb), subject.reference[:2],
                             gradient_checkpointing=gc, sdpa=sdpa)
        g = torch.Generator().manual_seed(0)
        losses = sur.train(sd.to_tensor(subject.surrogate), 2, g)
        assert sur.optimizer_name == "AdamW"
        results.append((losses, sur.attack(sd.to_tensor(subject.train[:2]), 6, 1, 2, g)))
    for losses, adv in results[1:]:
        assert losses == pytest.approx(results[0][0], abs=2e-5)  # eager vs SDPA attention: last-digit float noise
        assert torch.allclose(adv, results[0][1], atol=1e-6)
