"""DLADiff (defenses/dladiff*.py) on real faces (n000050).

Layer 1 (tiny zoo, 64 px): the protected images raise both the Eq. 8 attention loss
(static surrogate on clean vs base UNet on the images) and the base model's denoising
loss over clean and over equal-budget noise. Layer 2 (160 px, dlib ResNet torch port):
the protected faces' identity similarity to the clean faces drops far below the clean
value (1.0) and below every same-person pair of the identity, by the torch port AND by
dlib's own descriptor. Budgets are checked on PNGs read back from disk."""

import numpy as np
import pytest
import torch

from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.errors import BenchError
from bench.images import linf, load_pngs, save_pngs
from bench.models import load_sd, resolve
from bench.plugin import Subject
from defenses import dladiff_zs as zs
from defenses.dladiff import DLADiff
from defenses.dladiff_ft import attention_loss, recording, static_unet

PROMPT = "a photo of sks person"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_ctx(home, resolution):
    return Context(profile="tiny", seed=0, resolution=resolution, store=ArtifactStore(home / "a"), home=home, quiet=True,
                   log=lambda m: None)


def subject_at(faces, resolution):
    return data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), resolution)


def png_roundtrip(images, folder):
    save_pngs(images, folder)
    return load_pngs(folder)


def uniform_noise(images, eps):
    rng = np.random.default_rng(0)
    return [np.clip(c.astype(int) + rng.integers(-eps, eps + 1, c.shape), 0, 255).astype(np.uint8) for c in images]


# ------------------------------------------------------------------ layer 1
def test_layer1_raises_attention_and_denoising_loss(faces, shared_zoo, tmp_path):
    ctx, subject = make_ctx(tmp_path, 64), subject_at(faces, 64)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    defense = DLADiff({"layers": "ft"}, "tiny")
    assert defense.budget() == 7.0
    protected = png_roundtrip(defense.protect(subject, base, ctx), tmp_path / "ft")
    notes = ctx.notes["defense"]
    assert "zs" not in notes and notes["linf_zs"] == 0 and notes["linf_ft"] == notes["linf_total"] == 7
    assert max(linf(p, c) for p, c in zip(protected, subject.train)) == 7  # the budget holds on the PNGs, and is used

    parts = load_sd(base)
    unet_s, _ = static_unet(base, parts, subject.surrogate, defense.train_config(defense.p.static_lr, 4, 0.0),
                            defense.p.static_steps, ctx)  # the cached static surrogate of the run

    def losses(images, n=12):
        """(L_att vs the static surrogate, base denoising loss) at fixed draws, same for every set."""
        g = torch.Generator().manual_seed(1234)
        x, xa = sd.to_tensor(subject.train), sd.to_tensor(images)
        with torch.no_grad(), recording(unet_s) as ms, recording(parts["unet"]) as md:
            cond = sd.encode_prompts(parts, [PROMPT])
            att = np.mean([float(attention_loss(unet_s, parts["unet"], parts, x, xa, cond, g, ms, md)) for _ in range(n)])
            den = np.mean([float(sd.denoising_loss(parts, xa, cond, g)) for _ in range(n)])
        return att, den

    (att_c, den_c), (att_n, den_n), (att_p, den_p) = losses(subject.train), losses(uniform_noise(subject.train, 7)), losses(protected)
    assert att_p > 1.03 * max(att_c, att_n), (att_c, att_n, att_p)
    assert den_p > max(den_c, den_n), (den_c, den_n, den_p)



# ------------------------------------------------------------------ layer 2
def test_layer2_lowers_identity_similarity_torch_and_native_dlib(faces, tmp_path):
    from metrics import face_offline

    ctx, subject = make_ctx(tmp_path, 160), subject_at(faces, 160)
    defense = DLADiff({"layers": "zs"}, "tiny")  # no base model needed for this layer
    assert defense.budget() == 11.0
    blank = np.full((160, 160, 3), 128, np.uint8)  # no face: skipped, counted, left unchanged (no crash)
    with_blank = Subject(subject.identity, subject.train + [blank], subject.surrogate, subject.reference)
    protected = png_roundtrip(defense.protect(with_blank, None, ctx), tmp_path / "zs")
    notes = ctx.notes["defense"]
    assert notes["zs"]["skipped_no_face"] == 1 and notes["zs"]["per_image"][-1] is None and notes["linf_ft"] == 0
    assert np.array_equal(protected.pop(), blank)
    assert 0 < max(linf(p, c) for p, c in zip(protected, subject.train)) <= 11

    # the perturbation stays on the face chip: pixels the chip does not cover are untouched
    enc = zs.load_encoders(["dlib"], "cpu")[0]
    for img, prot in zip(subject.train, protected):
        m = zs.normalised(enc.matrix(img), img.shape[:2], (enc.chip_size,) * 2)
        cover = zs.warp(torch.ones(1, 1, enc.chip_size, enc.chip_size, dtype=torch.float64), torch.linalg.inv(m), img.shape[:2])
        outside = cover[0, 0].numpy() == 0
        assert outside.any() and np.array_equal(img[outside], prot[outside])

    # the torch port on PNG-read images (face re-aligned from the clean landmarks)
    def torch_cos(a, b):
        ma = zs.normalised(enc.matrix(a), a.shape[:2], (150, 150))
        with torch.no_grad():
            ea, eb = (enc.embed(zs.warp((sd.to_tensor([im]) + 1) / 2, ma, (150, 150))) for im in (a, b))
        return float((ea * eb).sum())

    assert all(abs(torch_cos(c, c) - 1) < 1e-5 for c in subject.train[:1])
    cos_t = [torch_cos(c, p) for c, p in zip(subject.train, protected)]
    # dlib's own pipeline (MTCNN + shape predictor + dlib C++ ResNet), detection redone on the protected image
    clean_r = face_offline.detect_and_embed(subject.train, cache=False)
    prot_r = face_offline.detect_and_embed(protected, cache=False)
    ref_r = face_offline.detect_and_embed(subject.surrogate + subject.reference, cache=False)
    assert all(r is not None for r in clean_r + prot_r + ref_r)
    cos_d = [float(c.embedding @ p.embedding) for c, p in zip(clean_r, prot_r)]
    same_person = min(float(c.embedding @ r.embedding) for c in clean_r for r in ref_r)  # ~0.93 for n000050
    assert max(cos_t) < 0.85 and max(cos_d) < 0.85 and max(cos_d) < same_person - 0.08, (cos_t, cos_d, same_person)


def test_both_layers_budgets_on_pngs_and_determinism(faces, shared_zoo, tmp_path):
    """At 64 px MTCNN still finds the n000050 faces (they fill the crop), so both layers run."""
    ctx, full = make_ctx(tmp_path, 64), subject_at(faces, 64)
    subject = Subject(full.identity, full.train[:2], full.surrogate[:2], full.reference)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    params = {"static_steps": 4, "epochs": 1, "zs_steps": 10}
    defense = DLADiff(params, "tiny")
    assert defense.budget() == 18.0  # eta_ft + eta_zs: each layer has its own bound
    protected = png_roundtrip(defense.protect(subject, base, ctx), tmp_path / "png")
    notes = ctx.notes["defense"]
    assert notes["zs"]["skipped_no_face"] == 0
    assert 0 < notes["linf_ft"] <= 7 and 0 < notes["linf_zs"] <= 11 and notes["linf_total"] <= 18
    assert max(linf(p, c) for p, c in zip(protected, subject.train)) == notes["linf_total"]
    again = DLADiff(params, "tiny").protect(subject, base, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(protected, again)), "same seed, different PNGs"


# ------------------------------------------------------- layer-2 mechanics
def _stand_in_encoder(chip: int = 32) -> zs.IdentityEncoder:
    """A seeded random CNN + a fixed centre-crop "alignment": only for testing the PGD,
    warp and skip mechanics (never a production encoder)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, 2), torch.nn.Tanh(), torch.nn.Conv2d(8, 8, 5, 2),
                              torch.nn.Flatten()).double()
    net.requires_grad_(False)

    def matrix(img):
        if img.mean() < 1:  # an all-black image has "no face"
            return None
        h, w = img.shape[:2]
        s = chip / (w / 2)  # the centre half of the image -> the chip
        return np.array([[s, 0.0, -s * w / 4], [0.0, s, -s * h / 4]])

    return zs.IdentityEncoder("stand-in", chip, matrix, lambda x: torch.nn.functional.normalize(net(x.double() - 0.5), dim=-1))


def test_layer2_pgd_mechanics_with_stand_in_encoder():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(40, 215, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    imgs = [smooth, np.zeros((64, 64, 3), np.uint8)]
    enc = _stand_in_encoder()
    g = torch.Generator().manual_seed(0)
    out, info = zs.protect_images(imgs, imgs, [enc], 8, 1.0, 30, -1.0, 0.0, g)
    assert info["skipped_no_face"] == 1 and np.array_equal(out[1], imgs[1])  # no face: unchanged
    first = info["per_image"][0]
    assert first["steps"] == 30 and first["sum_cos_trace"][0] > 0.999 and first["cos_after"][0] < 0.9
    m = zs.normalised(enc.matrix(smooth), (64, 64), (32, 32))
    noisy = np.clip(smooth + rng.choice([-8, 8], smooth.shape), 0, 255).astype(np.uint8)  # the budget's corners, at random
    with torch.no_grad():
        e_clean, e_noisy = (enc.embed(zs.warp((sd.to_tensor([im]) + 1) / 2, m, (32, 32))) for im in (smooth, noisy))
    assert first["cos_after"][0] < float((e_clean * e_noisy).sum()) - 0.05  # PGD, not just any noise
    d = np.abs(out[0].astype(int) - imgs[0])
    assert d.max() == 8 and d[:12].max() == 0 and d[:, -12:].max() == 0  # within budget, only on the chip (centre half)
    # Alg. 2's threshold stops the loop early
    _, early = zs.protect_images(imgs[:1], imgs[:1], [enc], 8, 1.0, 30, 0.999, 0.0, g)
    assert early["per_image"][0]["steps"] < 30
    # warp: align then map back is the identity on the chip's interior
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    m = zs.normalised(enc.matrix(imgs[0]), (64, 64), (32, 32))
    back = zs.warp(zs.warp(x, m, (32, 32)), torch.linalg.inv(m), (64, 64))
    assert torch.allclose(back[..., 20:44, 20:44], x[..., 20:44, 20:44], atol=0.2)


def test_bad_parameters_are_one_line_errors():
    for bad in ({"layers": ""}, {"layers": "ft,ft"}, {"layers": "xx"}, {"eps_ft": 0}, {"zs_encoders": "arcface"}):
        with pytest.raises(BenchError):
            DLADiff(bad, "tiny")
    assert DLADiff({"layers": "zs"}, "paper").budget() == 11.0


def test_declares_the_encoders_its_identity_layer_attacks():
    """Recorded in the defense stage; the leaderboard flags ism[dlib] of such a cell as white-box."""
    assert DLADiff({}, "tiny").encoders_seen() == ["dlib"]
    assert DLADiff({"layers": "ft"}, "tiny").encoders_seen() == []  # no identity layer, nothing seen
