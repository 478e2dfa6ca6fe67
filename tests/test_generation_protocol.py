"""One generation protocol for every attack: named prompt sets (training prompts +
novel scenes), identifier substitution, per-prompt metric breakdown, batched class
images with per-image seeds, and the papers' DreamBooth presets."""

import numpy as np
import pytest

from attacks.dreambooth import DreamBooth
from bench import sd
from bench.errors import BenchError
from bench.models import load_sd, resolve
from bench.plugin import Generation
from bench.profiles import PROMPT_SETS
from bench.protocol import CellConfig
from bench.runner import Runner


def test_prompt_sets_resolve_and_identifiers_substitute(tmp_path):
    runner = Runner(home=tmp_path / "h", quiet=True)
    proto = runner.plan([CellConfig.build({}, ["generation.prompt_set=all"])]).cells[0].proto
    assert proto["generation"]["prompt_set"] == "all"
    assert "sks person with a dog" in proto["generation"]["prompts"] and "a photo of sks person" in proto["generation"]["prompts"]
    explicit = runner.plan([CellConfig.build({}, ["generation.prompts=[sks person in a car]"])]).cells[0].proto
    assert explicit["generation"]["prompt_set"] == "custom" and explicit["generation"]["prompts"] == ["sks person in a car"]
    with pytest.raises(BenchError, match="unknown prompt set 'novle'"):
        runner.plan([CellConfig.build({}, ["generation.prompt_set=novle"])])
    gen = Generation(prompts=PROMPT_SETS["novel"][:2], images_per_prompt=2, steps=1, guidance_scale=1.0, sampler="ddim",
                     negative_prompt="", seed=3, resolution=64)
    jobs = gen.jobs(", suffix", identifier="<new1>")
    assert [p for p, _ in jobs] == ["<new1> person with a dog, suffix"] * 2 + ["<new1> person on the beach, suffix"] * 2
    assert [s for _, s in jobs] == [3 * 100003, 3 * 100003 + 1] * 2  # same noise for every prompt


def test_metrics_break_down_by_prompt(tmp_path):
    overrides = ["attack.steps=1", "attack.prior_weight=0", "attack.num_class_images=0", "generation.steps=2",
                 "generation.images_per_prompt=1", "generation.prompts=[a photo of sks person, sks person with a dog]",
                 "metrics=brisque[libsvm]"]
    rec = Runner(home=tmp_path / "h", quiet=True).run(CellConfig.build({}, overrides))
    m = rec["metrics"]["brisque[libsvm]"]
    assert set(m["extra"]["by_prompt"]) == {"a photo of sks person", "sks person with a dog"}
    assert sorted(m["extra"]["by_prompt"].values()) == pytest.approx(sorted(m["per_image"]))
    assert [im["prompt"] for im in rec["stages"]["generate"]["images"]] == ["a photo of sks person", "sks person with a dog"]


def test_batched_generation_keeps_each_seeds_noise(shared_zoo):
    pipe = sd.pipeline(load_sd(resolve({"id": "zoo:tiny-sd"}, shared_zoo)), "dpm-solver")
    args = (["a photo of person"] * 3, [5, 6, 7], 3, 7.5, "", 64)
    single = sd.generate(pipe, *args, batch_size=1)
    batched = sd.generate(pipe, *args, batch_size=3)
    for a, b in zip(single, batched):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # same noise; only float summation order differs
    assert np.abs(single[0].astype(int) - single[1].astype(int)).max() > 10


def test_dreambooth_presets_cite_the_papers_and_yield_to_explicit_values():
    dl = DreamBooth({"preset": "dladiff"}, "paper")
    assert (dl.p.lr, dl.p.steps, dl.p.batch_size) == (5e-6, 400, 4)
    assert DreamBooth({"preset": "apdm"}, "paper").p.steps == 800
    assert DreamBooth({"preset": "anti-db"}, "paper").p.lr == 5e-7
    assert DreamBooth({"preset": "dladiff", "steps": 10}, "paper").p.steps == 10
    again = DreamBooth(dict(dl.p), "paper")  # a stage worker re-creates the plugin from the resolved params
    assert dict(again.p) == dict(dl.p)
    with pytest.raises(BenchError, match="preset"):
        DreamBooth({"preset": "dreamboth"}, "paper")


def test_attack_artifacts_are_shared_by_cells_with_the_same_inputs(tmp_path):
    runner = Runner(home=tmp_path / "h", quiet=True)
    cells = [CellConfig.build({"attack": a}, [f"metrics={m}"]) for a in ("db", "lora-ti") for m in ("brisque[libsvm]", "fdfr[dlib]")]
    plan = runner.plan(cells)
    db1, db2, lo1, lo2 = plan.cells
    assert db1.personalized.key == db2.personalized.key and db1.generated.key == db2.generated.key
    assert lo1.personalized.key == lo2.personalized.key and lo1.personalized.key != db1.personalized.key
    assert sum(1 for kind, _ in plan.stages if kind == "personalized") == 2


def test_half_precision_only_engages_on_cuda():
    import torch

    from attacks.instantid import InstantID
    from attacks.ipa_faceid import IPAdapterFaceID

    assert sd.inference_dtype("fp16", "cpu") is torch.float32  # CPU kernels are fp32: never silently half on CPU
    assert sd.inference_dtype("bf16", "cuda:0") is torch.bfloat16 and sd.inference_dtype("fp16", "cuda") is torch.float16
    assert IPAdapterFaceID({}, "paper").p.dtype == "fp16" and InstantID({}, "tiny").p.dtype == "fp32"
    with pytest.raises(BenchError, match="dtype"):
        IPAdapterFaceID({"dtype": "int4"}, "paper")
