"""RIDNet: reference checkpoint layout, loading paths, and the pixel budget of protect()."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defenses.rid_net import (  # noqa: E402
    RIDCheckpointError,
    RIDNet,
    eps_from_checkpoint_name,
    load_checkpoint,
    pixel_budget,
    protect,
    random_reference_state_dict,
    reference_state_dict_shapes,
    released_config,
)

SMALL = dict(input_size=64, patch_size=8, in_channels=3, hidden_size=64, depth=2, num_heads=4, mlp_ratio=4.0)


def _linf(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture(scope="module")
def released_net() -> RIDNet:
    """Released-size network loaded (strict) from a seeded random reference-layout state dict.

    The module is built on the meta device and the state dict's tensors are
    assigned, so the ~1.4 GB of weights are allocated once.
    """
    sd = random_reference_state_dict(released_config(), seed=0)
    with torch.device("meta"):
        net = RIDNet(**released_config(), eps_255=12)
    result = net.load_state_dict(sd, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    return net.eval()


# ------------------------------------------------------------------ (a) layout
def test_released_layout_key_for_key_and_shape_for_shape():
    expected = reference_state_dict_shapes(released_config())
    with torch.device("meta"):
        net = RIDNet(**released_config(), eps_255=12)
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == list(expected.items())  # same keys, same shapes, same order
    assert len(expected) == 152
    assert sum(int(np.prod(s)) for s in expected.values()) == 343_057_152
    assert expected["pos_embed"] == (1, 1024, 1152)
    assert expected["x_embedder.proj.weight"] == (1152, 3, 16, 16)
    assert expected["y_embedder.embedding_table.weight"] == (1001, 1152)
    assert expected["final_layer.linear.weight"] == (16 * 16 * 3, 1152)  # out_channels == 3 (no learn_sigma)
    assert "blocks.13.adaLN_modulation.1.weight" in expected and "blocks.14.attn.qkv.weight" not in expected


def test_released_random_state_dict_loads_strict(released_net):
    expected = reference_state_dict_shapes(released_config())
    sd = released_net.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == dict(expected)
    assert not any(v.is_meta for v in sd.values())
    assert released_net.pos_embed.requires_grad is False  # fixed sin-cos, as in the reference


def test_layout_errors_name_the_keys(tmp_path):
    sd = random_reference_state_dict(SMALL, seed=3)
    bad = dict(sd)
    del bad["blocks.1.mlp.fc2.bias"]
    bad["blocks.1.extra.weight"] = torch.zeros(2)
    bad["final_layer.linear.weight"] = torch.zeros(5, 64)
    torch.save(bad, tmp_path / "ASDS-eps-8_255.bin")
    with pytest.raises(RIDCheckpointError) as err:
        load_checkpoint(tmp_path / "ASDS-eps-8_255.bin", config=SMALL)
    msg = str(err.value)
    assert "blocks.1.mlp.fc2.bias" in msg and "blocks.1.extra.weight" in msg and "final_layer.linear.weight" in msg


# ------------------------------------------------------------------ (b) loading paths
def test_bin_and_safetensors_load_identically(tmp_path):
    from safetensors.torch import save_file

    sd = random_reference_state_dict(SMALL, seed=7)
    torch.save(sd, tmp_path / "ASDS-eps-8_255.bin")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "ASDS-eps-8_255.safetensors"))

    direct = RIDNet(**SMALL, eps_255=8)
    direct.load_state_dict(sd, strict=True)
    direct.eval()
    from_bin = load_checkpoint(tmp_path / "ASDS-eps-8_255.bin", config=SMALL)
    from_st = load_checkpoint(tmp_path / "ASDS-eps-8_255.safetensors", config=SMALL)
    assert from_bin.eps_255 == from_st.eps_255 == 8.0

    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ref = direct(x)
        assert torch.equal(from_bin(x), ref)
        assert torch.equal(from_st(x), ref)
    assert ref.abs().max() <= 8 / 255 + 1e-7
    assert ref.abs().max() > 0.5 * 8 / 255  # the random weights give a non-trivial perturbation


def test_sdpa_matches_explicit_attention():
    net = RIDNet(**SMALL, eps_255=12)
    net.load_state_dict(random_reference_state_dict(SMALL, seed=11), strict=True)
    net.eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        a = net.set_attention("sdpa")(x)
        b = net.set_attention("math")(x)
    assert (a - b).abs().max().item() * 127.5 < 1e-3  # far below one pixel level


def test_budget_helpers():
    assert pixel_budget(12) == 6.0 and pixel_budget(8) == 4.0 and pixel_budget(6) == 3.0
    assert eps_from_checkpoint_name("weights/ASDS-eps-12_255.bin") == 12.0
    assert eps_from_checkpoint_name("ASDS-eps-6_255.safetensors") == 6.0
    assert eps_from_checkpoint_name("model.bin") is None
    assert released_config() == dict(input_size=512, patch_size=16, in_channels=3, hidden_size=1152,
                                     depth=14, num_heads=8, mlp_ratio=4.0)


# ------------------------------------------------------------------ (c) protect() budget
def test_protect_released_size_square_and_non_square(released_net):
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, size=(300, 200, 3), dtype=np.uint8)
    out = protect(released_net, [square, tall], batch_size=2)  # one batched forward
    budget = int(np.floor(pixel_budget(12)))
    for clean, adv in zip([square, tall], out):
        assert adv.shape == clean.shape and adv.dtype == np.uint8
        d = _linf(adv, clean)
        assert 0 < d <= budget, d


def _saturating_small_net(eps_255: float) -> RIDNet:
    """Small net whose output mostly sits at +-eps/255 (tanh saturated): worst case for rounding."""
    sd = random_reference_state_dict(SMALL, seed=5)
    sd["final_layer.linear.bias"] = torch.where(torch.arange(8 * 8 * 3) % 2 == 0, 6.0, -6.0)
    net = RIDNet(**SMALL, eps_255=eps_255)
    net.load_state_dict(sd, strict=True)
    return net.eval()


@pytest.mark.parametrize("eps_255", [12, 7])  # 7 -> budget 3.5 levels -> at most 3 on the PNG
def test_protect_budget_is_exact_on_uint8(eps_255):
    net = _saturating_small_net(eps_255)
    rng = np.random.default_rng(1)
    budget = int(np.floor(pixel_budget(eps_255)))
    imgs = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(512, 512, 3), (300, 200, 3), (64, 64, 3), (37, 91, 3)]]
    outs = protect(net, imgs)
    for clean, adv in zip(imgs, outs):
        assert adv.shape == clean.shape and adv.dtype == np.uint8
        assert _linf(adv, clean) == budget  # saturated net reaches the budget, never exceeds it

    batch = rng.integers(0, 256, size=(3, 300, 200, 3), dtype=np.uint8)  # batched uint8 NHWC
    out = net.protect(batch)
    assert out.shape == batch.shape and out.dtype == np.uint8 and _linf(out, batch) == budget


def test_protect_float_tensor_input():
    net = _saturating_small_net(12)
    x = torch.rand(2, 3, 120, 90, generator=torch.Generator().manual_seed(2))
    out = protect(net, x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and out.shape == x.shape
    clean = torch.round(x * 255).to(torch.int16)
    assert (out.to(torch.int16) - clean).abs().max().item() == 6
