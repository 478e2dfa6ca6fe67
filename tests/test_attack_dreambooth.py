"""DreamBooth on the tiny profile: training lowers the denoising loss on the
subject's images, class images are shared, and saved models reproduce generations."""

import numpy as np
import torch

from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.models import load_sd, resolve
from bench.plugin import Generation, Recipe
from attacks.dreambooth import DreamBooth


def test_dreambooth_learns_subject_and_reloads(faces, shared_zoo, tmp_path):
    ctx = Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(tmp_path / "a"), home=tmp_path, quiet=True, log=lambda m: None)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 64)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    # prior preservation on (the tiny preset has it off): the class images are what is shared below
    params = {"steps": 40, "batch_size": 1, "prior_weight": 1.0, "num_class_images": 4}
    attack = DreamBooth(params, "tiny")
    recipe = Recipe(instance_suffix=", bhj noisy pattern", negative_prompt="noisy")
    attack.personalize(subject.train, base, recipe, ctx, tmp_path / "model")
    assert ctx.notes["attack"]["instance_prompt"] == "a photo of sks person, bhj noisy pattern"

    def loss(parts):
        g = torch.Generator().manual_seed(7)
        x = sd.to_tensor(subject.train)
        with torch.no_grad():
            cond = sd.encode_prompts(parts, ["a photo of sks person, bhj noisy pattern"])
            return float(torch.stack([sd.denoising_loss(parts, x, cond, g) for _ in range(16)]).mean())

    before = loss(load_sd(base))
    after = loss(attack.load_personalized(tmp_path / "model", base, ctx))
    assert after < before, (before, after)

    # class images are a shared artifact: a second attack reuses them
    assert len(list((tmp_path / "a" / "class_images").iterdir())) == 1
    attack.class_images(base, ctx)
    assert len(list((tmp_path / "a" / "class_images").iterdir())) == 1

    gen = Generation(prompts=["a photo of sks person"], images_per_prompt=2, steps=3, guidance_scale=7.5,
                     sampler="dpm-solver", negative_prompt="", seed=0, resolution=64)
    first = attack.generate(tmp_path / "model", base, gen, recipe, ctx)
    second = DreamBooth(params, "tiny").generate(tmp_path / "model", base, gen, recipe, ctx)
    assert [g.prompt for g in first] == ["a photo of sks person"] * 2
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second))
    assert not np.array_equal(first[0].image, first[1].image)  # different seeds differ
