"""RID defense on the tiny profile: a tiny RID trained by defenses/rid_train.py
(Adv-SDS + ASPL regression, ensemble of the zoo model twice) must raise the tiny
model's denoising loss beyond clean images and equal-L-inf uniform and Gaussian noise, keep the
budget on the saved PNGs, train once (cached artifact), and released-layout
checkpoints must load through the plugin with one-line errors for bad ones."""

import numpy as np
import pytest
import torch

from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.errors import BenchError
from bench.images import linf, load_pngs, save_pngs
from bench.models import load_sd, resolve
from defenses import rid_net
from defenses.rid import RID

SMALL = dict(input_size=32, patch_size=8, hidden_size=32, depth=1, num_heads=2)
SMALL_SPEC = ",".join(f"{k}={v}" for k, v in SMALL.items())


@pytest.fixture(scope="module")
def setup(faces, shared_zoo, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny ops: one thread is as fast and does not spin on shared cores
    home = tmp_path_factory.mktemp("rid")
    logs: list[str] = []
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(home / "a"), home=home, quiet=True, log=logs.append)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 64)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    yield ctx, subject, base, home, logs
    torch.set_num_threads(threads)


def mean_loss(parts, images, n=16):
    """Denoising loss averaged over fixed (t, noise) draws: same draws for every image set."""
    g = torch.Generator().manual_seed(1234)
    x = sd.to_tensor(images)
    with torch.no_grad():
        cond = sd.encode_prompts(parts, ["a photo of sks person"])
        return float(torch.stack([sd.denoising_loss(parts, x, cond, g) for _ in range(n)]).mean())


def test_trained_rid_raises_loss_keeps_budget_and_trains_once(setup):
    ctx, subject, base, home, logs = setup
    params = {"train_steps": 80}
    protected = RID(params, "tiny").protect(subject, base, ctx)
    assert ctx.notes["defense"]["reg_method"] == "aspl" and ctx.notes["defense"]["n_surrogates"] == 2
    # the budget holds on the saved PNGs (6 pixel levels = the released eps-12_255 semantics)
    save_pngs(protected, home / "png")
    pngs = load_pngs(home / "png")
    assert all(linf(p, c) <= 6 for p, c in zip(pngs, subject.train))
    assert max(linf(p, c) for p, c in zip(pngs, subject.train)) == 6
    # protection: above clean and above uniform noise of the same L-inf
    rng = np.random.default_rng(0)
    noisy = [np.clip(c.astype(int) + rng.integers(-6, 7, c.shape), 0, 255).astype(np.uint8) for c in subject.train]
    gauss = [np.clip(c.astype(int) + np.clip(np.round(rng.normal(0, 3, c.shape)), -6, 6), 0, 255).astype(np.uint8)
             for c in subject.train]  # Gaussian noise clipped to the same L-inf (the comparison)
    parts = load_sd(base)
    clean_l, noise_l, rid_l = mean_loss(parts, subject.train), mean_loss(parts, noisy), mean_loss(parts, pngs)
    gauss_l = mean_loss(parts, gauss)
    assert rid_l > clean_l and rid_l > noise_l and rid_l > gauss_l, (clean_l, noise_l, gauss_l, rid_l)
    # a second protect call (new plugin instance, as in another cell) reuses the generator
    stage = home / "a" / "rid_generator"
    assert len([d for d in stage.iterdir() if d.is_dir()]) == 1
    again = RID(params, "tiny").protect(subject, base, ctx)
    assert len([d for d in stage.iterdir() if d.is_dir()]) == 1
    assert any("rid_generator: cached" in m for m in logs)
    assert all(np.array_equal(a, b) for a, b in zip(protected, again))


def test_released_layout_checkpoint_loads_through_the_plugin(setup, tmp_path):
    ctx, subject, base, _, _ = setup
    state = rid_net.random_reference_state_dict(SMALL, seed=3)
    path = tmp_path / "ASDS-eps-12_255.bin"
    torch.save(state, path)
    out = RID({"checkpoint": str(path), "config": SMALL_SPEC, "eps": 6}, "tiny").protect(subject, base, ctx)
    direct = rid_net.RIDNet(**{**rid_net.released_config(), **SMALL}, eps_255=12)
    direct.load_state_dict(state, strict=True)
    expected = rid_net.protect(direct.eval(), [im.copy() for im in subject.train])
    assert all(np.array_equal(a, b) for a, b in zip(out, expected))
    assert max(linf(p, c) for p, c in zip(out, subject.train)) == 6
    # the name's eps/2 must agree with the pixel budget
    with pytest.raises(BenchError, match="set eps=6"):
        RID({"checkpoint": str(path), "config": SMALL_SPEC, "eps": 8}, "tiny")
    # a layout mismatch is one line naming the keys
    with pytest.raises(BenchError) as exc:
        RID({"checkpoint": str(path), "config": SMALL_SPEC.replace("depth=1", "depth=2")}, "tiny").protect(subject, base, ctx)
    assert "\n" not in str(exc.value) and "missing keys" in str(exc.value)


def test_cpu_engines_agree_within_one_level_and_onnx_is_exported_once(setup, tmp_path):
    """torch-int8 and onnxruntime-int8 (the paper profile's CPU default) keep the protection:
    within 1/255 of the fp32 network on every pixel, budget exact; the ONNX file is an artifact."""
    ctx, subject, base, home, logs = setup
    cfg = dict(input_size=64, patch_size=8, hidden_size=64, depth=2, num_heads=4)
    spec = ",".join(f"{k}={v}" for k, v in cfg.items())
    path = tmp_path / "ASDS-eps-12_255.safetensors"
    from safetensors.torch import save_file

    save_file(dict(rid_net.random_reference_state_dict(cfg, seed=5)), str(path))
    images = subject.train + [np.ascontiguousarray(subject.train[0][:48, :40])]  # a non-square size too
    runs = {}
    for engine in ("torch", "torch-int8", "onnxruntime-int8"):
        plugin = RID({"checkpoint": str(path), "config": spec, "eps": 6, "engine": engine, "batch_size": 2}, "tiny")
        runs[engine] = plugin.protect(subject.__class__(**{**subject.__dict__, "train": images}), base, ctx)
        assert ctx.notes["defense"]["engine"] == engine
    for engine in ("torch-int8", "onnxruntime-int8"):
        assert max(linf(a, b) for a, b in zip(runs[engine], runs["torch"])) <= 1, engine
        assert max(linf(a, c) for a, c in zip(runs[engine], images)) <= 6
    assert any(linf(a, c) > 0 for a, c in zip(runs["onnxruntime-int8"], images))  # it did perturb
    onnx_dir = home / "a" / "rid_onnx"
    assert len(list(onnx_dir.iterdir())) == 1
    from defenses import rid as rid_module

    rid_module._LOADED.clear()  # a new process: the exported file is reused, not re-exported
    RID({"checkpoint": str(path), "config": spec, "eps": 6, "engine": "onnxruntime-int8"}, "tiny").protect(subject, base, ctx)
    assert len(list(onnx_dir.iterdir())) == 1 and any("rid_onnx: cached" in m for m in logs)


def test_missing_checkpoints_are_one_line_errors(monkeypatch, tmp_path):
    with pytest.raises(BenchError) as exc:
        RID({"checkpoint": str(tmp_path / "ASDS-eps-12_255.bin")}, "tiny")
    assert "\n" not in str(exc.value) and "pass checkpoint=" in str(exc.value)
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    plugin = RID({"checkpoint": "nobody/no-repo/ASDS-eps-12_255.bin"}, "tiny")
    with pytest.raises(BenchError) as exc:
        plugin.network(None, None)
    assert "\n" not in str(exc.value) and "pass checkpoint=" in str(exc.value)
    with pytest.raises(BenchError, match="paper profile needs checkpoint"):
        RID({}, "paper").network(None, None)
    with pytest.raises(BenchError, match="config"):
        RID({"checkpoint": "", "config": "depth"}, "tiny")


def test_bench_train_reaches_rid_through_its_train_hook(cli, tmp_path):
    """`bench train rid` runs the plugin's own train hook (the core names no method); a defense
    without one is a one-line error naming the ones that have it."""
    out = tmp_path / "rid.safetensors"
    res = cli("train", "rid", "--base", "zoo:tiny-sd-face", "--set", "train_steps=2", "--set", "ensemble=1",
              "--set", "reg_method=advdm", "--out", str(out), "--home", str(tmp_path / "h"), "-q")
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0 and "rid generator:" in res.stderr
    res = cli("train", "advdm", "--home", str(tmp_path / "h"))
    assert res.returncode == 2 and "defense 'advdm' has nothing to train; trainable: ['rid']" in res.stderr
