"""LoRA+TI on the tiny profile: the adapters saved in diffusers' formats lower the
denoising loss on the subject's images once loaded back through diffusers' loaders,
reproduce generations seed for seed, and bad parameters are one-line errors."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from attacks.lora_ti import LORA_FILE, TI_FILE, LoraTI
from bench import data, sd
from bench.artifacts import ArtifactStore
from bench.context import Context
from bench.errors import BenchError
from bench.models import load_sd, resolve
from bench.plugin import Generation, Recipe
from bench.protocol import CellConfig
from bench.runner import Runner


def _ctx(tmp_path):
    return Context(profile="tiny", seed=0, resolution=64, store=ArtifactStore(tmp_path / "a"), home=tmp_path, quiet=True, log=lambda m: None)


def test_lora_ti_learns_subject_and_reloads(faces, shared_zoo, tmp_path):
    ctx = _ctx(tmp_path)
    subject = data.make_subject(data.load_raw(data.load_card("anti-db"), str(faces), "n000050"), 64)
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    attack = LoraTI({}, "tiny")  # tiny defaults: 40 steps, prior preservation with 4 class images
    attack.personalize(subject.train, base, Recipe(), ctx, tmp_path / "model")
    notes = ctx.notes["attack"]
    assert notes["instance_prompt"] == "photo of a <new1> person" and notes["class_images"] == 4

    # the files are diffusers' formats: LoRA (rank 32) on q/k/v/out of self- and cross-attention, one token row
    lora = load_file(str(tmp_path / "model" / LORA_FILE))
    downs = {k: v for k, v in lora.items() if k.endswith("lora.down.weight")}
    assert {k.split(".")[-5] + "." + k.split(".")[-4] for k in downs} >= {"attn1.to_q", "attn2.to_k", "attn2.to_v", "to_out.0"}
    assert all(v.shape[0] == 32 for v in downs.values())
    emb = load_file(str(tmp_path / "model" / TI_FILE))
    assert list(emb) == ["<new1>"] and emb["<new1>"].shape == (1, 32)
    base_parts = load_sd(base)
    person = base_parts["text_encoder"].get_input_embeddings().weight[base_parts["tokenizer"].convert_tokens_to_ids("person</w>")]
    assert not torch.allclose(emb["<new1>"][0], person)  # the token moved away from its initializer

    def loss(parts, prompt):
        g = torch.Generator().manual_seed(7)  # the same (t, noise) draws before and after
        x = sd.to_tensor(subject.train)
        with torch.no_grad():
            cond = sd.encode_prompts(parts, [prompt])
            return float(torch.stack([sd.denoising_loss(parts, x, cond, g) for _ in range(16)]).mean())

    # Before training the LoRA B matrices are zero and <new1> is person's embedding, so the untrained
    # model conditions exactly like the base model on "photo of a person person".
    before = loss(base_parts, "photo of a person person")
    trained = attack.load_personalized(tmp_path / "model", base, ctx)  # from the saved files, diffusers' loaders
    assert trained["tokenizer"].tokenize("photo of a <new1> person")[3] == "<new1>"
    after = loss(trained, "photo of a <new1> person")
    assert after < 0.97 * before, (before, after)

    gen = Generation(prompts=["a photo of sks person"], images_per_prompt=2, steps=3, guidance_scale=7.5,
                     sampler="dpm-solver", negative_prompt="", seed=0, resolution=64)
    first = attack.generate(tmp_path / "model", base, gen, Recipe(), ctx)
    assert ctx.notes["attack"]["identifier"] == "<new1>" and ctx.notes["attack"]["sampler"] == "dpm-solver"
    second = LoraTI({}, "tiny").generate(tmp_path / "model", base, gen, Recipe(), ctx)
    assert [g.prompt for g in first] == ["a photo of <new1> person"] * 2
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second))
    assert not np.array_equal(first[0].image, first[1].image)  # different seeds differ
    plain = sd.generate(sd.pipeline(load_sd(base), "dpm-solver"), [first[0].prompt], [first[0].seed], 3, 7.5, "", 64)[0]
    assert np.abs(plain.astype(int) - first[0].image.astype(int)).mean() > 1  # the adapters change the output


def test_bad_parameters_are_one_line_errors(shared_zoo, tmp_path):
    with pytest.raises(BenchError, match="rank must be >= 1"):
        LoraTI({"rank": 0}, "tiny")
    with pytest.raises(BenchError, match="must contain the token"):
        LoraTI({"instance_prompt": "a photo of sks person"}, "tiny")
    base = resolve({"id": "zoo:tiny-sd"}, shared_zoo)
    with pytest.raises(BenchError, match="initializer_token 'ktn' is 3 tokens"):
        LoraTI({"initializer_token": "ktn"}, "tiny").personalize([], base, Recipe(), _ctx(tmp_path), tmp_path / "m")
    with pytest.raises(BenchError, match="lacks pytorch_lora_weights.safetensors"):
        LoraTI({}, "tiny").load_personalized(tmp_path, base, _ctx(tmp_path))


def test_lora_ti_runs_as_a_cell(tmp_path):
    cfg = CellConfig.build({
        "attack": {"name": "lora", "params": {"steps": 3, "prior_weight": 0}},  # the alias resolves
        "generation": {"prompts": ["a photo of sks person"], "images_per_prompt": 1, "steps": 2},
        "metrics": ["brisque[libsvm]"],
    })
    rec = Runner(home=tmp_path / "h", quiet=True).run(cfg)
    assert rec["protocol"]["attack"]["name"] == "lora-ti"
    assert [im["prompt"] for im in rec["stages"]["generate"]["images"]] == ["a photo of <new1> person"]
    notes = rec["stages"]["personalize"]["notes"]
    assert notes["token"] == "<new1>" and len(notes["loss_trace"]) == 3 and notes["class_images"] == 0
    assert rec["stages"]["generate"]["notes"]["identifier"] == "<new1>"
    assert rec["metrics"]["brisque[libsvm]"]["status"] == "ok"
