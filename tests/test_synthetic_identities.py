"""The `sample` card's synthetic identities: deterministic GAN faces, unseen in pre-training,
that the offline identity encoder finds and tells apart (bench/synthetic_identities.py)."""

import numpy as np
import pytest

from bench import data, gan_faces
from bench import synthetic_identities as si
from bench.errors import BenchError
from metrics.face_backends import get_backend


@pytest.fixture(scope="module")
def card():
    return data.load_card("sample")


@pytest.fixture(scope="module")
def images(card):
    return {i: data.load_raw(card, None, i).roles["reference"] for i in card["identities"]}


def test_card_identities_load_as_twelve_distinct_faces(card, images):
    assert len(card["identities"]) >= 8
    for imgs in images.values():
        assert len(imgs) == 12 and all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in imgs)
    blobs = [im.tobytes() for imgs in images.values() for im in imgs]
    assert len(set(blobs)) == len(blobs)  # no image repeats within or across identities


def test_generation_is_deterministic(card, images):
    first = card["identities"][0]
    si._faces.cache_clear()  # render and check again from the seeds, not from the cache
    again = si.identity_images(si.parse(first), candidates=card["candidates"], sigma=card["sigma"])
    assert [im.tobytes() for im in again] == [im.tobytes() for im in images[first]]


def test_seeds_are_identity_seeds_never_pretraining_seeds(card):
    for ident in card["identities"]:
        base, var = si.seeds(si.parse(ident), card["candidates"])
        for s in (base, *var):
            assert s in gan_faces.IDENTITY_SEEDS and s not in gan_faces.PRETRAIN_SEEDS


def test_encoder_finds_and_tells_apart_every_identity(images):
    enc = get_backend("dlib")
    embs = []
    for ident, imgs in images.items():
        res = enc.detect_and_embed(imgs)
        assert all(r is not None for r in res), f"{ident}: no face in some image"
        embs.append(np.array([r.embedding for r in res]))
    hits = np.concatenate(si.nearest_mean_hits(embs))
    assert hits.mean() >= 0.9  # leave-one-out nearest-mean identification (1.0 when selected)
    stats = si.statistics(embs)
    assert stats["same_cos"] > stats["diff_cos"] and stats["pair_auc"] > 0.95


def test_names_and_unknown_identities(card):
    assert si.parse("synth-012") == 12 and si.name(12) == "synth-012"
    raw = data.load_raw(card, None, card["identities"][0])
    assert raw.names["train"] == ["set_B_00", "set_B_01", "set_B_02", "set_B_03"] and raw.names["reference"][-1] == "set_C_03"
    with pytest.raises(BenchError, match="no identity 'astronaut'"):
        data.load_raw(card, None, "astronaut")
    with pytest.raises(BenchError, match="look like 'synth-000'"):
        si.parse("synthetic-1")


def test_auc_matches_pair_counting():
    pos, neg = np.array([0.9, 0.5, 0.7]), np.array([0.5, 0.1, 0.8])
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg]
    assert si.auc(pos, neg) == pytest.approx(np.mean(pairs))
