"""Zero-shot attacks (IP-Adapter FaceID, InstantID) on the tiny profile, with real faces:
generations follow the reference face, the face-embedding path runs end to end (MTCNN +
dlib), and the adapter checkpoints go through diffusers' own IP-Adapter loader."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from attacks import face_ref, tiny_zero_shot
from attacks.instantid import InstantID, draw_kps
from attacks.ipa_faceid import IPAdapterFaceID
from bench import zoo
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.errors import BenchError
from bench.images import center_crop_resize
from bench.models import resolve
from bench.plugin import Generation, Recipe

ATTACKS = [IPAdapterFaceID, InstantID]


def _load(paths, size=64):
    return [center_crop_resize(np.asarray(Image.open(p).convert("RGB")), size) for p in paths]


@pytest.fixture(scope="module")
def setup(faces, shared_zoo, tmp_path_factory):
    home = tmp_path_factory.mktemp("zero_shot")
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(home / "a"), home=home, quiet=True, log=lambda m: None)
    a = _load(sorted((faces / "n000050" / "set_B").glob("*.png")))
    b = _load(sorted((faces / "rid_103").glob("*.jpg"))[:4])
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    gen = Generation(prompts=["a photo of sks person"], images_per_prompt=1, steps=3, guidance_scale=7.5,
                     sampler="dpm-solver", negative_prompt="", seed=0, resolution=64)
    for cls in ATTACKS:  # encode the references once: <home>/<attack>/{A, A2 (same faces again), B}
        for name, imgs in (("A", a), ("A2", a), ("B", b)):
            cls({}, "tiny").personalize(imgs, base, Recipe(), ctx, home / cls.name / name)
    return ctx, a, b, base, gen, home


@pytest.mark.parametrize("cls", ATTACKS, ids=lambda c: c.name)
def test_generation_follows_the_reference_face(cls, setup):
    ctx, a, b, base, gen, home = setup
    root = home / cls.name
    attack = cls({}, "tiny")
    assert attack.zero_shot
    meta = json.loads((root / "A" / face_ref.META_FILE).read_text())
    assert meta["encoder"] == "dlib" and "MTCNN" in meta["detector_encoder"] and "dlib" in meta["detector_encoder"]
    assert meta["detected"] == [True] * 4 and meta["dim"] == 128 and len(meta["kps"]) == 5
    ea, ea2, eb = (np.load(root / n / face_ref.REFERENCE_FILE) for n in ("A", "A2", "B"))
    assert np.array_equal(ea, ea2) and not np.allclose(ea, eb)
    assert np.load(root / "A" / face_ref.EMBEDDINGS_FILE).shape == (4, 128)

    out_a = attack.generate(root / "A", base, gen, Recipe(), ctx)
    notes = ctx.notes["attack"]
    out_a2 = cls({}, "tiny").generate(root / "A2", base, gen, Recipe(), ctx)
    out_b = attack.generate(root / "B", base, gen, Recipe(), ctx)
    assert [g.prompt for g in out_a] == ["a photo of sks person"] and out_a[0].image.shape == (64, 64, 3)
    assert np.array_equal(out_a[0].image, out_a2[0].image)  # same face, same seed: identical
    assert np.abs(out_a[0].image.astype(int) - out_b[0].image).mean() > 1.0  # another face: another image
    assert notes["face_encoder"] == "dlib" and notes["steps"] == 3 and notes["sampler"] == "dpm-solver"
    if cls is InstantID:
        assert notes["base_model"] == "zoo:tiny-sdxl" and notes["cell_base_model_ignored"] == "zoo:tiny-sd"
    else:
        assert notes["base_model"] == "zoo:tiny-sd"


def test_faceless_references_and_missing_encoder_weights_are_one_line_errors(setup, tmp_path):
    ctx, a, _, base, _, _ = setup
    rng = np.random.default_rng(0)
    blank = [np.full((64, 64, 3), 128, np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    for cls in ATTACKS:
        with pytest.raises(BenchError, match="no face detected in any of the 2 reference images") as err:
            cls({}, "tiny").personalize(blank, base, Recipe(), ctx, tmp_path / cls.name)
        assert "\n" not in str(err.value)
    # paper profile: insightface packs absent -> the error names the folder to fill, no fallback
    empty = tmp_path / "packs"
    with pytest.raises(BenchError, match=r"insightface-buffalo_l.*unavailable") as err:
        IPAdapterFaceID({"face_weights_dir": str(empty)}, "paper").personalize(a, base, Recipe(), ctx, tmp_path / "p")
    assert "\n" not in str(err.value) and (str(empty / "buffalo_l") in str(err.value) or "not installed" in str(err.value))
    # paper checkpoints are not on this machine (offline): a clear error, never the tiny adapter instead
    with pytest.raises(BenchError, match="IP-Adapter FaceID checkpoint 'h94/IP-Adapter-FaceID' not available"):
        IPAdapterFaceID({"base_model": ""}, "paper").load_pipeline(base, "dpm-solver", ctx)
    with pytest.raises(BenchError, match="stable-diffusion-xl-base-1.0"):
        InstantID({}, "paper").load_pipeline("dpm-solver", ctx)


def test_ipa_faceid_checkpoint_loads_through_diffusers(setup, tmp_path):
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterFaceIDImageProjection

    ctx, a, _, base, gen, home = setup
    attack = IPAdapterFaceID({}, "tiny")
    pipe, _ = attack.load_pipeline(base, "dpm-solver", ctx)
    names = list(pipe.unet.attn_processors)
    procs = pipe.unet.attn_processors
    assert all(isinstance(procs[n], IPAdapterAttnProcessor2_0) for n in names if n.endswith("attn2.processor"))
    assert all(isinstance(procs[n], AttnProcessor2_0) for n in names if n.endswith("attn1.processor"))
    proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(proj, IPAdapterFaceIDImageProjection) and proj.num_tokens == 4
    file = load_file(zoo.ensure("tiny-ipa-faceid", ctx.zoo_root) / tiny_zero_shot.TINY_IPA_FACEID["weight_name"])
    assert torch.equal(proj.ff.net[0].proj.weight, file["image_proj.proj.0.weight"])
    i = next(k for k, n in enumerate(names) if n.endswith("attn2.processor"))
    assert torch.equal(procs[names[i]].to_k_ip[0].weight, file[f"ip_adapter.{i}.to_k_ip.weight"])
    # the FaceID LoRA became a peft adapter on every attention projection
    assert "faceid_0" in pipe.unet.peft_config
    attn = pipe.unet.get_submodule(names[0][: -len(".processor")])
    assert torch.equal(attn.to_q.lora_A["faceid_0"].weight, file["ip_adapter.0.to_q_lora.down.weight"])
    # an embedding of the wrong width is refused before sampling
    wrong = tmp_path / "wrong"
    shutil.copytree(home / "ipa-faceid" / "A", wrong)
    np.save(wrong / face_ref.REFERENCE_FILE, np.ones(512, np.float32))
    with pytest.raises(BenchError, match="expects 128-d face embeddings"):
        attack.generate(wrong, base, gen, Recipe(), ctx)


def _resampler(sd, x, heads):
    """IP-Adapter's Resampler (ip_adapter/resampler.py) written out from its equations."""
    lat = sd["latents"].repeat(x.shape[0], 1, 1)
    x = F.linear(x, sd["proj_in.weight"], sd["proj_in.bias"])
    dim = lat.shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    for layer in range(depth):
        p, f = f"layers.{layer}.0.", f"layers.{layer}.1."
        xn = F.layer_norm(x, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        ln = F.layer_norm(lat, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"])
        q = F.linear(ln, sd[p + "to_q.weight"])
        k, v = F.linear(torch.cat([xn, ln], 1), sd[p + "to_kv.weight"]).chunk(2, -1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / split(q).shape[-1] ** 0.5, -1) @ split(v)
        lat = F.linear(att.transpose(1, 2).reshape(lat.shape[0], lat.shape[1], -1), sd[p + "to_out.weight"]) + lat
        h = F.layer_norm(lat, (dim,), sd[f + "0.weight"], sd[f + "0.bias"])
        lat = lat + F.linear(F.gelu(F.linear(h, sd[f + "1.weight"])), sd[f + "3.weight"])
    out = F.linear(lat, sd["proj_out.weight"], sd["proj_out.bias"])
    return F.layer_norm(out, (out.shape[-1],), sd["norm_out.weight"], sd["norm_out.bias"])


def test_instantid_loads_through_diffusers_and_follows_keypoints(setup, tmp_path):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    ctx, a, _, base, gen, home = setup
    attack = InstantID({}, "tiny")
    pipe, model = attack.load_pipeline("dpm-solver", ctx)
    assert model.source == "zoo:tiny-sdxl" and pipe.controlnet.config.cross_attention_dim == 64
    cross = [p for n, p in pipe.unet.attn_processors.items() if n.endswith("attn2.processor")]
    assert cross and all(isinstance(p, IPAdapterAttnProcessor2_0) and p.num_tokens == [16] and p.scale == [0.8] for p in cross)
    proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(proj, IPAdapterPlusImageProjection)
    # diffusers' converted projection computes InstantID's Resampler on the checkpoint's own keys
    file = load_file(zoo.ensure("tiny-instantid", ctx.zoo_root) / tiny_zero_shot.TINY_INSTANTID["weight_name"])
    img = {k[len("image_proj."):]: v for k, v in file.items() if k.startswith("image_proj.")}
    x = torch.randn(2, 1, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(proj(x), _resampler(img, x, heads=1), atol=1e-5)

    # draw_kps: each keypoint is a disc of its InstantID colour
    kps = np.array([[20, 20], [44, 20], [32, 32], [22, 46], [42, 46]], float)
    canvas = draw_kps(kps, 64)
    for (x0, y0), colour in zip(kps.astype(int), [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]):
        assert tuple(canvas[y0, x0]) == colour
    assert canvas[2, 2].sum() == 0

    # IdentityNet is live: same face embedding, moved keypoints -> another image
    moved = tmp_path / "moved"
    shutil.copytree(home / "instantid" / "A", moved)
    meta = json.loads((moved / face_ref.META_FILE).read_text())
    meta["kps"] = (np.asarray(meta["kps"]) + [12.0, -8.0]).tolist()
    (moved / face_ref.META_FILE).write_text(json.dumps(meta))
    first = attack.generate(home / "instantid" / "A", base, gen, Recipe(), ctx)[0].image
    shifted = attack.generate(moved, base, gen, Recipe(), ctx)[0].image
    assert np.abs(first.astype(int) - shifted).mean() > 0.1  # tiny, random weights: measured 0.29
