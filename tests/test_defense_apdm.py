"""APDM on the tiny profile with two real identities: target n000050 (protected,
attacked on clean set_B, held out set_C) and non-target rid_103 (attacked on its
second third, held out its last third).

What is asserted: the protected model is a loadable diffusers folder in which only
the UNet changed; the DPO objective moved the model in its direction (the subject's
images got harder to denoise under the instance prompt, relative to the paired
images); and after DreamBooth the non-target identity personalizes about as well on
the protected model as on the base model (no "broken model" win).
What is measured and printed but NOT asserted: whether target personalization is
worse on the protected model. In the tiny world it is only marginally so (docs/apdm.md
has the numbers); asserting it would pass or fail by accident."""

import time

import pytest
import torch

from attacks.dreambooth import DreamBooth
from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.errors import BenchError
from bench.models import load_sd, resolve
from bench.plugin import ModelRef, Recipe
from defenses.apdm import APDM

PROMPT = "a photo of sks person"
# DreamBooth's seed-to-seed spread of this held-out loss on the base model measured 0.5% (target)
# and 1.0% (non-target) over seeds 0-2 (docs/apdm.md); 3x the larger spread:
CONTROL_TOLERANCE = 0.03


def held_out_loss(parts, images, n=8):
    """Denoising loss on images under the instance prompt at fixed, evenly spread timesteps
    and fixed noise: the same draws for every model, so differences are paired."""
    g = torch.Generator().manual_seed(1234)
    x = sd.to_tensor(images)
    ts = torch.linspace(100, 900, n).long()
    with torch.no_grad():
        cond = sd.encode_prompts(parts, [PROMPT])
        return float(torch.stack([sd.denoising_loss(parts, x, cond, g, timesteps=t.repeat(len(images))) for t in ts]).mean())


@pytest.fixture(scope="module")
def world(faces, shared_zoo, tmp_path_factory):
    home = tmp_path_factory.mktemp("apdm")
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(home / "a"), home=home, quiet=True, log=lambda m: None)
    target = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 64)
    control = data.make_subject(data.load_raw(data.load_card("celebahq-flat"), str(faces), "rid_103"), 64)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    defense = APDM({}, "tiny")
    started = time.time()
    defense.protect_model(target, base, ctx, home / "protected")
    seconds = time.time() - started
    protected = ModelRef(path=home / "protected", source="defense:test-apdm", revision="test")
    return dict(ctx=ctx, home=home, target=target, control=control, base=base, protected=protected,
                defense=defense, seconds=seconds, notes=ctx.notes.pop("defense"))


def test_protected_model_is_a_diffusers_folder_with_only_the_unet_changed(world):
    out = world["protected"].path
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file() and (out / "model_index.json").is_file()
    base, prot = load_sd(world["base"]), load_sd(world["protected"])  # the attack loads it exactly like this
    for part in ("vae", "text_encoder"):
        a, b = base[part].state_dict(), prot[part].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    changed = [k for k, v in base["unet"].state_dict().items() if not torch.equal(v, prot["unet"].state_dict()[k])]
    assert len(changed) > 0.5 * len(base["unet"].state_dict())
    notes = world["notes"]
    assert notes["updates"] == 6 and notes["inner_steps"] == 30 and notes["paired_images"] == len(world["target"].train)
    print(f"\nAPDM tiny protect_model: {world['seconds']:.1f} s")


def test_dpo_makes_the_subject_harder_to_denoise_than_its_paired_images(world):
    base, prot = load_sd(world["base"]), load_sd(world["protected"])
    subject = world["target"].train
    paired = world["defense"].paired_images(world["base"], world["ctx"], len(subject))  # cached: the images APDM used
    d_subject = held_out_loss(prot, subject) - held_out_loss(base, subject)
    d_paired = held_out_loss(prot, paired) - held_out_loss(base, paired)
    print(f"\nloss change vs base: subject {d_subject:+.4f}, paired {d_paired:+.4f}")
    assert d_subject > 0 and d_subject > 1.5 * d_paired, (d_subject, d_paired)


def test_two_identities_after_dreambooth(world):
    """Both models personalized (tiny DreamBooth) on each identity's clean training images,
    scored on that identity's held-out images."""
    ctx, home = world["ctx"], world["home"]
    loss = {}
    for model_name in ("base", "protected"):
        for who, held in (("target", world["target"].reference[8:]), ("control", world["control"].reference[8:])):
            subject = world[who]
            attack = DreamBooth({}, "tiny")
            out = home / f"db-{model_name}-{who}"
            attack.personalize(subject.train, world[model_name], Recipe(), ctx, out)
            loss[model_name, who] = held_out_loss(attack.load_personalized(out, world[model_name], ctx), held)
    rel = {who: loss["protected", who] / loss["base", who] - 1 for who in ("target", "control")}
    print("\nheld-out loss after DreamBooth  base / protected / relative")
    for who in ("target", "control"):
        print(f"  {who:8s} {loss['base', who]:.4f} / {loss['protected', who]:.4f} / {rel[who]:+.2%}")
    assert abs(rel["control"]) < CONTROL_TOLERANCE, rel


def test_bad_parameters_are_one_line_errors(tmp_path, world):
    with pytest.raises(BenchError, match="beta"):
        APDM({"beta": 0}, "tiny")
    with pytest.raises(BenchError, match="num_class_images"):
        APDM({"num_class_images": 0}, "tiny")
    (tmp_path / "few").mkdir()
    world["target"].train[0].tofile(tmp_path / "few" / "not-an-image.bin")
    with pytest.raises(BenchError):
        APDM({"paired_dir": str(tmp_path / "few")}, "tiny").paired_images(world["base"], world["ctx"], 4)
