"""`tiny-sd-face`: the tiny profile's default base model. The zoo's tiny SD (the very configs
of `tiny-sd`: SD 2.x-shaped UNet, 4-channel VAE, CLIP text encoder and tokenizer) pre-trained
on 12,000 synthetic faces from `gan-face-generate` plus non-face pictures, so that its samples
for "a photo of a person" are faces a detector finds and DreamBooth can teach it one person.

Training takes about half an hour on one CPU core (bench/zoo_face/train.py, the recipe and the
seed), so the weights ship beside the script as `tiny-sd-face.safetensors` (fp32, ~7 MB) with
their SHA-256 and training record in `tiny-sd-face.json`. Building this zoo model only verifies
the file's hash, loads it into the configured architecture (strict: every tensor, no extra)
and saves the diffusers folder that `from_pretrained` reads, in a few seconds.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "tiny-sd-face.safetensors"
CARD = HERE / "tiny-sd-face.json"


def card() -> dict:
    """The shipped weights' record: hash, seed, recipe, what they were trained on."""
    return json.loads(CARD.read_text())


def config() -> dict:
    """What the zoo revision hashes: the architecture and the shipped weights' hash."""
    from bench.tiny_sd import TINY_SD

    arch = {k: v for k, v in TINY_SD.items() if k != "pretrain"}
    return {**arch, "weights_sha256": card()["sha256"], "trained_on": card()["trained_on"]}


def build_parts(seed: int = 0):
    """The untrained components (for train.py) - same configs and seeding as tiny-sd."""
    from bench.tiny_sd import TINY_SD, sd_parts

    with tempfile.TemporaryDirectory() as tmp:
        return sd_parts(TINY_SD, Path(tmp) / "tokenizer", seed)


def build(out_dir: Path, seed: int = 0):
    """Verify the shipped weights, load them strictly, write the diffusers folder."""
    import torch

    from bench.tiny_sd import TINY_SD, load_shipped, save_sd, sd_parts

    unet, vae, text_encoder, tokenizer, scheduler = sd_parts(TINY_SD, out_dir / "tokenizer", seed)
    load_shipped("tiny-sd-face", WEIGHTS, card()["sha256"], (unet, vae, text_encoder), card()["scaling_factor"])
    with torch.no_grad():
        return save_sd(out_dir, unet, vae, text_encoder, tokenizer, scheduler)
