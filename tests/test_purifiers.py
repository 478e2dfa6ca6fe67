"""Purifiers on real faces (tiny profile): the classical ones and Real-ESRGAN strip most of
an AdvDM perturbation while keeping the identity; GrIDPure's split/merge/mix is exact;
DiffPure at zero noise is the identity (pixel) or the VAE round trip (latent); the
diffusion purifiers run end to end on the tiny models."""

import numpy as np
import pytest
import torch

from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.errors import BenchError
from bench.models import load_sd, resolve
from defenses.advdm import AdvDM
from metrics import face_offline
from purifiers import gridpure as gp
from purifiers import sdedit
from purifiers.adverse_cleaner import AdverseCleaner, guided_filter
from purifiers.codeformer_sr import CodeFormerSR
from purifiers.diffpure import DiffPure
from purifiers.gaussian import Gaussian
from purifiers.gridpure import GrIDPure
from purifiers.jpeg import JPEG
from purifiers.tvm import TVM


def rms(a, b):
    return float(np.sqrt(np.mean((np.stack(a).astype(float) - np.stack(b).astype(float)) ** 2)))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small CPU kernels: on the shared 2-core machine two OpenMP threads spin against each
    other (measured 10-40x slower); the stages set their own count (BENCH_THREADS)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_ctx(home, res):
    return Context(profile="tiny", seed=0, resolution=res, store=ArtifactStore(home / "a"), home=home, quiet=True, log=lambda m: None)


@pytest.fixture(scope="module")
def protected(faces, shared_zoo, tmp_path_factory):
    """Real AdvDM (eps 16/255, 3 PGD steps of 8/255) on n000050 at 128 px: at 64 px the faces
    are too small for a x4 SR from a quarter-size image to keep the identity."""
    ctx = make_ctx(tmp_path_factory.mktemp("pur"), 128)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 128)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    prot = AdvDM({"eps": 16, "alpha": 8, "steps": 3}, "tiny").protect(subject, base, ctx)
    other = data.make_subject(data.load_raw(data.load_card("celebahq-flat"), str(faces), "rid_103"), 128)
    return ctx, subject.train, prot, other.train


def embeddings(images):
    found = face_offline.detect_and_embed(images)
    assert all(f is not None for f in found), "no face found"
    return np.stack([f.embedding for f in found])


@pytest.mark.parametrize("purifier, kept, raw_l2", [
    (JPEG({}, "tiny"), 0.95, True),  # quality 75 removes little at 128 px, but nets closer to clean
    (Gaussian({}, "tiny"), 0.8, False),  # kernel 5 also blurs the face: not closer to clean in raw L2
    (TVM({}, "tiny"), 0.8, True),
    # DiffShortcut's SR step at its own ratio: 128 px -> 32 px -> Real-ESRGAN x4plus -> 128 px; the
    # re-synthesised detail is far from the clean pixels (raw L2 ~21 vs ~12) but not from the clean face.
    (CodeFormerSR({"restore": "none", "sr": "realesrgan", "sr_input": 32}, "tiny"), 0.85, False),
    (AdverseCleaner({}, "tiny"), 0.8, True),  # edge-preserving filters only
], ids=["jpeg", "gaussian", "tvm", "realesrgan", "adverse-cleaner"])
def test_purifier_strips_advdm_and_keeps_identity(protected, purifier, kept, raw_l2):
    ctx, clean, prot, other = protected
    out = purifier.purify(prot, ctx)
    assert all(o.dtype == np.uint8 and o.shape == p.shape for o, p in zip(out, prot))
    delta = rms(prot, clean)
    assert delta > 8  # the protection is really there (eps 16)
    # The perturbation is attenuated: what survives is P(protected) - P(clean), which a purifier
    # that ignored the perturbation would leave at the full delta.
    survived = rms(out, purifier.purify(clean, ctx))
    assert survived < kept * delta, (survived, delta)
    if raw_l2:  # JPEG and TVM also land closer to the clean image itself
        assert rms(out, clean) < delta, (rms(out, clean), delta)
    # Identity (offline dlib descriptor): the purified face stays n000050, far above another person.
    e_clean, e_out, e_other = embeddings(clean), embeddings(out), embeddings(other)
    own = np.sum(e_out * e_clean, axis=1)
    assert own.mean() > 0.9 and own.min() > (e_clean @ e_other.T).max() + 0.05, (own, (e_clean @ e_other.T).max())


def test_guided_filter_smooths_noise_and_keeps_the_edge_of_its_guide():
    """He et al.'s colour guided filter with the image as its own guide: noise in the flat
    parts is averaged away, the step edge between them survives."""
    rng = np.random.default_rng(0)
    img = np.where(np.arange(32)[None, :, None] < 16, 50.0, 200.0) * np.ones((32, 32, 3)) + rng.normal(0, 3, (32, 32, 3))
    out = guided_filter(img, img, 4, 16.0)
    left, right = out[:, :12], out[:, 20:]
    assert left.std() < img[:, :12].std() / 2 and right.std() < img[:, 20:].std() / 2
    assert right.mean() - left.mean() > 145  # the edge is kept (a box blur of radius 4 would not touch these columns' means
    assert abs(out[:, 15].mean() - 50) < 10 and abs(out[:, 16].mean() - 200) < 10  # ... but would smear the edge itself)


# ------------------------------------------------------------------ GrIDPure
def test_gridpure_split_merge_is_exact():
    x = torch.rand(3, 12, 12, dtype=torch.float64)
    # windows start at 0, 4 and the flush 6 (stride 4 does not reach the border)
    assert gp.window_starts(12, 6, 4) == [0, 4, 6]
    patches, boxes = gp.split(x, 6, 4, corners=True)
    assert patches.shape == (len(boxes) + 1, 3, 6, 6) and len(boxes) == 9
    assert torch.equal(patches[-1][:, :3, 3:], x[:, :3, 9:])  # top-right corner in the mosaic
    same = gp.grid_step(x, lambda b: b, 6, 4, corners=True)
    assert torch.allclose(same, x, rtol=0, atol=1e-15)
    assert torch.allclose(gp.gridpure(x, lambda b: b, 6, 4, 0.1, 5), x, rtol=0, atol=1e-14)


def test_gridpure_overlaps_are_averaged():
    """6x6 image, window 4, stride 2: windows at (0,0), (0,2), (2,0), (2,2) plus the corner mosaic.
    Inner step: window k returns the constant k + 1 (mosaic: 5) -> each pixel gets the mean of
    the constants of the windows covering it, worked out by hand."""
    x = torch.zeros(1, 6, 6, dtype=torch.float64)

    def inner(batch):
        return torch.stack([torch.full_like(b, float(k + 1)) for k, b in enumerate(batch)])

    merged = gp.grid_step(x, inner, 4, 2, corners=True)[0]
    expected = torch.tensor([
        [3.0, 3.0, 1.5, 1.5, 3.5, 3.5],   # (0,0): windows 1 + mosaic 5 -> 3; (0,2): windows 1, 2 -> 1.5
        [3.0, 3.0, 1.5, 1.5, 3.5, 3.5],   # (0,4): window 2 + mosaic -> 3.5
        [2.0, 2.0, 2.5, 2.5, 3.0, 3.0],   # (2,0): windows 1, 3 -> 2; centre: all four -> 2.5
        [2.0, 2.0, 2.5, 2.5, 3.0, 3.0],
        [4.0, 4.0, 3.5, 3.5, 4.5, 4.5],   # (4,0): window 3 + mosaic -> 4; (4,4): window 4 + mosaic -> 4.5
        [4.0, 4.0, 3.5, 3.5, 4.5, 4.5],
    ], dtype=torch.float64)
    assert torch.equal(merged, expected)
    without = gp.grid_step(x, inner, 4, 2, corners=False)[0]
    assert without[0, 0] == 1 and without[5, 5] == 4 and without[2, 2] == 2.5


def test_gridpure_gamma_mix():
    x0 = torch.rand(3, 8, 8, dtype=torch.float64)
    assert torch.equal(gp.mix(torch.ones_like(x0), x0, 0.1), 0.9 + 0.1 * x0)
    # an inner step that returns zeros: x_N = gamma^N * x_0
    out = gp.gridpure(x0, torch.zeros_like, 4, 2, gamma=0.1, iterations=3)
    assert torch.allclose(out, 1e-3 * x0, rtol=1e-12, atol=0)
    # a constant inner step c: x_1 = (1 - gamma) c + gamma x_0
    out = gp.gridpure(x0, lambda b: torch.full_like(b, 0.5), 4, 2, gamma=0.25, iterations=1)
    assert torch.allclose(out, 0.375 + 0.25 * x0, rtol=0, atol=1e-15)


def test_gridpure_rejects_bad_windows():
    with pytest.raises(BenchError, match="stride"):
        GrIDPure({"window": 16, "stride": 32}, "tiny")
    with pytest.raises(BenchError, match="even"):
        GrIDPure({"window": 15, "stride": 5}, "tiny")


# ------------------------------------------------------------------ DiffPure
@pytest.fixture(scope="module")
def small(faces, shared_zoo, tmp_path_factory):
    ctx = make_ctx(tmp_path_factory.mktemp("dp"), 64)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 64)
    return ctx, subject.train[:2]


def test_diffpure_at_zero_noise_returns_its_input(small, shared_zoo):
    ctx, imgs = small
    pixel = DiffPure({"space": "pixel", "t": 0}, "tiny").purify(imgs, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(pixel, imgs))
    latent = DiffPure({"space": "latent", "strength": 0.0}, "tiny").purify(imgs, ctx)
    dp = DiffPure({"space": "latent", "strength": 0.0}, "tiny")
    vae = load_sd(sdedit.resolve_sd(dp.p.model, "tiny", shared_zoo))["vae"]  # the profile's own base
    roundtrip = sd.to_uint8(sdedit.vae_roundtrip(vae, sd.to_tensor(imgs)))
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(latent, roundtrip))  # quantisation only
    assert ctx.notes["purifier"]["denoising_steps"] == 0


def test_dds_timestep_rule():
    from diffusers import DDPMScheduler

    abar = DDPMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02).alphas_cumprod
    t = sdedit.dds_timestep(abar, 11 / 255)
    target = 1 / (1 + (11 / 255) ** 2)
    assert abs(float(abar[t - 1]) - target) <= min(abs(float(abar[t - 2]) - target), abs(float(abar[t]) - target))
    assert 5 <= t <= 20  # (1 - abar_t) / abar_t = sigma^2 is reached early on the linear schedule
    assert sdedit.dds_timestep(abar, 2 * 11 / 255) > t  # Carlini's x2 convention: more noise
    assert sdedit.dds_timestep(abar, 1e3) == 1000  # clipped to the schedule


@pytest.mark.parametrize("params", [
    {"space": "pixel", "t": 20},
    {"space": "pixel", "timestep_rule": "ddspure"},
    {"space": "latent"},  # RID's setting: strength 0.1, 'A photo of a person', CFG 7.5
], ids=["pixel", "pixel-ddspure", "latent"])
def test_diffpure_runs_end_to_end_on_tiny(small, params):
    ctx, imgs = small
    out = DiffPure(params, "tiny").purify(imgs, ctx)
    again = DiffPure(params, "tiny").purify(imgs, ctx)
    assert all(o.dtype == np.uint8 and o.shape == i.shape for o, i in zip(out, imgs))
    assert all(np.array_equal(a, b) for a, b in zip(out, again))  # seeded
    assert 0 < rms(out, imgs) < 40  # it changed the images without destroying them
    if params.get("timestep_rule") == "ddspure":
        assert 5 <= ctx.notes["purifier"]["t"] <= 20


def test_gridpure_runs_end_to_end_on_tiny(small):
    ctx, imgs = small
    out = GrIDPure({"iterations": 2}, "tiny").purify(imgs, ctx)
    assert all(o.dtype == np.uint8 and o.shape == i.shape for o, i in zip(out, imgs))
    assert 0 < rms(out, imgs) < 25  # small-step purification: the image is kept


def test_codeformer_without_weights_names_the_parameter(small):
    ctx, imgs = small
    with pytest.raises(BenchError, match="codeformer_weights") as err:
        CodeFormerSR({"restore": "codeformer"}, "tiny").purify(imgs, ctx)
    assert "restore=none" in str(err.value)


def test_tvm_guo_formulation(small):
    """Seed 002's masked TV_2 problem, solved exactly (cvxpy) on a noisy 24 px face crop. Its
    fidelity term is a plain (not squared) L2 norm, so the solution has two regimes: at the
    paper's lambda 0.01 the kept 98 % of pixels stay put and only the dropped 2 % are filled
    in; a large lambda collapses the image towards a constant."""
    ctx, imgs = small
    img = imgs[0][20:44, 20:44].copy()
    rng = np.random.default_rng(0)
    noisy = np.clip(img.astype(int) + rng.integers(-16, 17, img.shape), 0, 255).astype(np.uint8)

    def tv(a):
        a = a.astype(float)
        return np.abs(np.diff(a, axis=0)).sum() + np.abs(np.diff(a, axis=1)).sum()

    paper = TVM({"method": "guo"}, "tiny").purify([noisy], ctx)[0]
    changed = np.abs(paper.astype(int) - noisy) > 1
    assert 0 < changed.mean() < 0.05 and tv(paper) < tv(noisy)
    strong = TVM({"method": "guo", "lambda_tv": 0.3}, "tiny").purify([noisy], ctx)[0]
    assert tv(strong) < 0.1 * tv(noisy)
