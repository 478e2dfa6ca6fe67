import pytest
import torch

from bench import zoo
from bench.errors import BenchError
from bench.models import load_sd, resolve

QUICK = {"vae_steps": 2, "unet_steps": 2}  # the real pre-training runs once, in the shared zoo


def _assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_zoo_build_saves_and_reloads_identically_and_deterministically(tmp_path):
    built = zoo.build("tiny-sd", tmp_path / "m", pretrain_overrides=QUICK)
    from bench.plugin import ModelRef

    loaded = load_sd(ModelRef(path=tmp_path / "m", source="test"))  # the paper profile's from_pretrained path
    for part in ("unet", "vae", "text_encoder"):
        _assert_same(getattr(built, part), loaded[part])
    assert loaded["vae"].config.scaling_factor == built.vae.config.scaling_factor
    again = zoo.build("tiny-sd", tmp_path / "again", pretrain_overrides=QUICK)
    _assert_same(built.unet, again.unet)  # fixed seed -> identical weights


def test_shared_zoo_model_resolves_with_revision(shared_zoo):
    ref = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    assert (ref.path / "model_index.json").is_file() and ref.revision == zoo.zoo_revision("tiny-sd")
    tok = load_sd(ref)["tokenizer"]
    assert len(tok("a photo of sks person").input_ids) == 7  # bos + five single-token words + eos, like CLIP


def test_unknown_zoo_model_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="unknown zoo model"):
        resolve({"id": "zoo:nope"}, tmp_path)


def test_missing_hub_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError, match="not available.*base_model.path"):
        resolve({"id": "stabilityai/stable-diffusion-2-1-base", "revision": None}, tmp_path)
    with pytest.raises(BenchError, match="not a diffusers model folder"):
        resolve({"path": str(tmp_path)}, tmp_path)


def test_shipped_tiny_sd_faces_weights_are_hash_checked(tmp_path, monkeypatch):
    """tiny-sd-faces loads the weights its pre-training made (shipped, verified by sha256);
    a tampered file is a one-line error, never a silently different model."""
    import shutil

    built = zoo.ensure("tiny-sd-faces", tmp_path / "zoo")
    assert load_sd(resolve({"id": "zoo:tiny-sd-faces"}, tmp_path / "zoo"))["unet"] is not None
    assert built.name.endswith(zoo.zoo_revision("tiny-sd-faces"))
    fake = tmp_path / "shipped"
    shutil.copytree(zoo.SHIPPED, fake)
    with open(fake / "tiny-sd-faces.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    monkeypatch.setattr(zoo, "SHIPPED", fake)
    with pytest.raises(BenchError, match="sha256"):
        zoo.build("tiny-sd-faces", tmp_path / "again")
