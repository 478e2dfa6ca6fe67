"""`bench check plugin` for attacks and model-level defenses: a built-in attack passes,
and each broken plugin below fails on exactly the check that describes its fault."""

import pytest

from bench.kit import check_plugin
from bench.registry import Registry
from conftest import run_cli

PLUGINS = '''
import shutil

import numpy as np
from safetensors.torch import load_file, save_file

from bench.plugin import Attack, GeneratedImage, ModelDefense


class NoiseAttack(Attack):
    """Draws each image from its job's seed: conforms."""
    name = "seeded-noise"
    summary = "test: noise images, one per job"
    version = "1"
    params = []

    def personalize(self, images, base, recipe, ctx, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)

    def generate(self, personalized, base, gen, recipe, ctx):
        draw = lambda prompt, seed: np.random.default_rng(seed).integers(0, 256, (gen.resolution, gen.resolution, 3), dtype=np.uint8)
        return gen.run(ctx, draw)


class UnseededAttack(NoiseAttack):
    name = "unseeded-noise"

    def generate(self, personalized, base, gen, recipe, ctx):
        return gen.run(ctx, lambda p, s: np.random.randint(0, 256, (gen.resolution, gen.resolution, 3), dtype=np.uint8))


class OneImageAttack(NoiseAttack):
    name = "one-image"

    def generate(self, personalized, base, gen, recipe, ctx):
        return super().generate(personalized, base, gen, recipe, ctx)[:1]


def _copy_with_unet(base, out_dir, scale):
    shutil.copytree(base.path, out_dir, dirs_exist_ok=True)
    f = out_dir / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(f)
    save_file({k: v * scale if k == "conv_in.weight" else v for k, v in weights.items()}, f)


class ScaleModel(ModelDefense):
    name = "scale-unet"
    summary = "test: scales the UNet's first convolution"
    version = "1"
    params = []

    def protect_model(self, subject, base, ctx, out_dir):
        _copy_with_unet(base, out_dir, 1.01)


class SameModel(ScaleModel):
    name = "same-model"

    def protect_model(self, subject, base, ctx, out_dir):
        _copy_with_unet(base, out_dir, 1.0)


class RandomScaleModel(ScaleModel):
    name = "random-scale"

    def protect_model(self, subject, base, ctx, out_dir):
        _copy_with_unet(base, out_dir, 1.0 + float(np.random.rand()))


class NoUnetModel(ScaleModel):
    name = "no-unet"

    def protect_model(self, subject, base, ctx, out_dir):
        shutil.copytree(base.path, out_dir, ignore=shutil.ignore_patterns("unet"))
'''


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    path = tmp_path_factory.mktemp("kit") / "kit_plugins.py"
    path.write_text(PLUGINS)
    reg = Registry()
    reg.add_file(path)
    return reg, path


def failed(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.ok}


def test_attack_checks(registry):
    reg, path = registry
    assert check_plugin("attack", "seeded-noise", registry=reg).passed
    assert list(failed(check_plugin("attack", "unseeded-noise", registry=reg))) == ["deterministic under a seed"]
    wrong = failed(check_plugin("attack", "one-image", registry=reg))
    assert list(wrong) == ["generation protocol"] and "the protocol asks" in wrong["generation protocol"]
    res = run_cli("check", "plugin", "unseeded-noise", "--kind", "attack", "--plugin", str(path))
    assert res.returncode == 1 and "same seed gave different images" in res.stdout


def test_builtin_dreambooth_passes_the_attack_checks():
    report = check_plugin("attack", "dreambooth", params={"steps": 20})  # a short attack: the checks are about the contract
    assert report.passed, report.text()


def test_check_parameters_reach_the_plugin_and_bad_ones_are_one_line_errors(cli):
    bad = cli("check", "plugin", "jpeg", "--kind", "purifier", "--set", "quality=0")
    assert bad.returncode == 2 and "quality" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    malformed = cli("check", "plugin", "jpeg", "--kind", "purifier", "--set", "quality")
    assert malformed.returncode == 2 and "KEY=VALUE" in malformed.stderr


def test_model_defense_checks(registry):
    reg, _ = registry
    assert check_plugin("defense", "scale-unet", registry=reg).passed
    assert list(failed(check_plugin("defense", "same-model", registry=reg))) == ["changes the model"]
    assert list(failed(check_plugin("defense", "random-scale", registry=reg))) == ["deterministic under a seed"]
    broken = failed(check_plugin("defense", "no-unet", registry=reg))
    assert list(broken) == ["writes a loadable diffusers model"], broken
