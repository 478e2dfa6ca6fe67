"""The identification metric on real photos (faces_glint, 16 identities): a person's own held-out
photos are identified as that person, someone else's are not, and the control calibration
removes a hub identity's advantage."""

import numpy as np
import pytest

from bench import data
from bench.context import Context
from bench.images import center_crop_resize
from bench.registry import Registry


@pytest.fixture(scope="module")
def glint_sets(glint):
    card = data.load_card("anti-db")
    out = {}
    for ident in data.identities(card, str(glint)):
        raw = data.load_raw(card, str(glint), ident)
        names = raw.names["reference"]
        imgs = [center_crop_resize(im, 64) for im in raw.roles["reference"]]
        out[ident] = {"held_out": [im for n, im in zip(names, imgs) if n.startswith("set_B")],
                      "gallery": [im for n, im in zip(names, imgs) if not n.startswith("set_B")]}
    return out


def _ctx(tmp_path, gallery, subject, control):
    ctx = Context(profile="tiny", seed=0, resolution=64, store=None, home=tmp_path)
    ctx.gallery, ctx.subject, ctx.control_images = gallery, subject, control
    return ctx


def test_own_photos_are_identified_and_others_are_not(glint_sets, tmp_path):
    metric = Registry().create("metric", "idr", {"backend": "dlib"}, "tiny")
    gallery = {k: v["gallery"] for k, v in glint_sets.items()}
    ids = sorted(glint_sets)
    control = [glint_sets[k]["held_out"][0] for k in ids]  # one unrelated face per identity
    own, other = [], []
    for i, subject in enumerate(ids):
        ctx = _ctx(tmp_path, gallery, subject, control)
        own.append(metric.compute(glint_sets[subject]["held_out"], [], ctx).value)
        other.append(metric.compute(glint_sets[ids[(i + 1) % len(ids)]]["held_out"], [], ctx).value)
    assert len(ids) == 16
    assert np.mean(own) >= 0.8, own
    assert np.mean(other) <= 0.1, other
    res = metric.compute(glint_sets[ids[0]]["held_out"], [], _ctx(tmp_path, gallery, ids[0], control))
    ex = res.extra
    assert ex["identities"] == 16 and ex["chance"] == pytest.approx(1 / 16) and ex["calibrated"]
    assert ex["card_gap"] > 0.05 and ex["gap_ratio"] > 0.5  # own photos: as separable as the card


def test_calibration_removes_a_hub_identity(glint_sets, tmp_path):
    """Faces that are nearest to one identity for everybody (a hub) must not count as that
    identity once the control says every sample looks like it."""
    metric = Registry().create("metric", "idr", {"backend": "dlib"}, "tiny")
    gallery = {k: v["gallery"] for k, v in glint_sets.items()}
    hub = sorted(glint_sets)[0]
    # the control is the hub's own held-out photos: an unpersonalised model that draws only the hub
    hub_faces = glint_sets[hub]["held_out"]
    raw = metric.compute(hub_faces, [], _ctx(tmp_path, gallery, hub, []))
    calibrated = metric.compute(hub_faces, [], _ctx(tmp_path, gallery, hub, hub_faces))
    assert raw.value >= 0.75 and not raw.extra["calibrated"]
    assert calibrated.value < raw.value
    assert calibrated.extra["control_ism_subject"] > calibrated.extra["control_ism_others"]


def test_without_a_gallery_it_is_unavailable_not_a_number(tmp_path, glint_sets):
    metric = Registry().create("metric", "idr", {"backend": "dlib"}, "tiny")
    one = next(iter(glint_sets))
    res = metric.compute(glint_sets[one]["held_out"], [], _ctx(tmp_path, {one: glint_sets[one]["gallery"]}, one, []))
    assert res.status.startswith("unavailable") and res.value is None
