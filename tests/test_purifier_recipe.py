"""A real tiny cell with the purifier chain codeformer-sr (SR only) + jpeg: each link is its
own artifact with its measurements, and DiffShortcut's negative-token recipe reaches the
DreamBooth prompts and the sampler (checked in the attack's recorded protocol)."""

from bench.protocol import CellConfig
from bench.runner import Runner

TOKEN = "bhj noisy pattern"  # DiffShortcut train_dreambooth.py --inputNegTok_Str default


def test_negative_token_recipe_reaches_the_attack_through_a_chain(faces, tmp_path):
    cfg = CellConfig.model_validate({
        "profile": "tiny",
        "dataset": {"card": "anti-db", "root": str(faces), "identity": "n000050"},
        "defense": "none",
        "purifier": [{"name": "codeformer-sr", "params": {"restore": "none"}}, {"name": "jpeg"}],
        "attack": {"name": "dreambooth", "params": {"steps": 2, "num_class_images": 1, "class_steps": 2}},
        "generation": {"images_per_prompt": 1, "steps": 2},
        "metrics": [],
    })
    record = Runner(home=tmp_path, quiet=True, log=lambda m: None).run(cfg)

    links = record["stages"]["purifier"]
    assert [link["name"] for link in links] == ["codeformer-sr", "jpeg"]
    assert links[0]["artifact"] != links[1]["artifact"]
    for link in links:
        assert link["seconds_per_image"] > 0 and link["vs_input"]["psnr"] > 10 and link["vs_clean"]["psnr"] > 10
    # the SR-only pipeline is named as such in the record (no CodeFormer ran)
    assert links[0]["notes"]["codeformer"] is False and "Real-ESRGAN" in links[0]["notes"]["pipeline"]
    assert "CodeFormer" not in links[0]["notes"]["pipeline"]

    recipe = record["recipe"]
    assert recipe == {
        "instance_suffix": f", {TOKEN}", "class_suffix": f", without {TOKEN}",
        "sample_suffix": f", without {TOKEN}", "negative_prompt": "noisy, lowres, artifact, pattern",
    }
    notes = record["stages"]["personalize"]["notes"]
    assert notes["instance_prompt"] == f"a photo of sks person, {TOKEN}"
    assert notes["class_prompt"] == f"a photo of person, without {TOKEN}"
    prompts = [g["prompt"] for g in record["stages"]["generate"]["images"]]
    assert prompts and all(p.endswith(f", without {TOKEN}") for p in prompts)
