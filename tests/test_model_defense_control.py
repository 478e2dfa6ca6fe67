"""Model-level defenses get a non-target ("control") identity in every cell: the
attack personalizes the protected model AND the base model on the other identity's
clean images, so a model that is merely broken cannot pass as a perfect defense."""

import textwrap

import pytest

from bench.errors import BenchError
from bench.protocol import CellConfig
from bench.registry import Registry
from bench.runner import Runner

SMALL = ["attack.steps=1", "attack.num_class_images=0", "attack.prior_weight=0", "generation.images_per_prompt=1",
         "generation.steps=2", "metrics=brisque[libsvm]"]

PLUGINS = textwrap.dedent('''
    import shutil
    from bench.models import load_sd
    from bench.plugin import ModelDefense

    class CopyBase(ModelDefense):
        name = "copy-base"
        summary = "returns the base model unchanged (test plugin)"

        def protect_model(self, subject, base, ctx, out_dir):
            shutil.copytree(base.path, out_dir)

    class Breaker(ModelDefense):
        name = "breaker"
        summary = "zeroes the UNet output layer: 'protects' every identity (test plugin)"

        def protect_model(self, subject, base, ctx, out_dir):
            shutil.copytree(base.path, out_dir)
            unet = load_sd(base)["unet"]
            unet.conv_out.weight.data.zero_()
            unet.conv_out.bias.data.zero_()
            shutil.rmtree(out_dir / "unet")
            unet.save_pretrained(out_dir / "unet", safe_serialization=True)
''')


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "model_defenses.py"
    path.write_text(PLUGINS)
    reg = Registry()
    reg.add_file(path)
    reg.files = [str(path)]  # stage workers rebuild the registry from these files
    return reg


def _cell(reg, defense, *extra):
    return CellConfig.build({"defense": defense, "attack": "db"}, overrides=[*SMALL, *extra])


def test_control_identity_uses_protected_and_base_models(registry, tmp_path):
    runner = Runner(home=tmp_path / "h", registry=registry, quiet=True, plugin_files=registry.files)
    plan = runner.plan([_cell(registry, "copy-base"), _cell(registry, "breaker")])
    for cell in plan.cells:
        assert cell.identity == "synth-000" and cell.control.identity == "synth-001"  # the sample card's first two
        assert cell.control.protected.personalized.inputs["base"] == {"defense_model": cell.defense.key}
        assert "source" in cell.control.base.personalized.inputs["base"]
    # the base-model control branch does not depend on the defense: shared by both cells
    assert plan.cells[0].control.base.generated.key == plan.cells[1].control.base.generated.key
    copy, broken = runner.run_many([_cell(registry, "copy-base"), _cell(registry, "breaker")])
    for rec in (copy, broken):
        assert rec["protocol"]["dataset"]["control_identity"] == "synth-001"
        assert rec["control"]["base"]["metrics"]["brisque[libsvm]"]["status"] == "ok"

    def value(rec, side):
        return rec["control"][side]["metrics"]["brisque[libsvm]"]["value"]

    assert value(copy, "protected") == pytest.approx(value(copy, "base"), abs=1e-6)  # unchanged model: same control numbers
    assert value(broken, "protected") != pytest.approx(value(broken, "base"), abs=1e-3)  # broken model: visible in the control
    assert value(broken, "base") == value(copy, "base")


def test_model_level_defense_needs_a_second_identity(registry, faces, tmp_path):
    runner = Runner(home=tmp_path / "h", registry=registry, quiet=True, plugin_files=registry.files)
    one = ["dataset.card=celebahq-flat", f"dataset.root={faces}", "dataset.identity=rid_103"]  # rid_103: the only flat folder
    with pytest.raises(BenchError, match="needs a second .non-target. identity"):
        runner.plan([_cell(registry, "copy-base", *one)])
    with pytest.raises(BenchError, match="must differ"):
        runner.plan([_cell(registry, "copy-base", *one, "dataset.control_identity=rid_103")])
    assert runner.plan([_cell(registry, "none", *one)]).cells[0].control is None  # image-level defenses: no control
