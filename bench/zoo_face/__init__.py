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

import hashlib
import json
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "tiny-sd-face.safetensors"
CARD = HERE / "tiny-sd-face.json"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card() -> dict:
    """The shipped weights' record: hash, seed, recipe, what they were trained on."""
    return json.loads(CARD.read_text())


def config() -> dict:
    """What the zoo revision hashes: the architecture and the shipped weights' hash."""
    from bench.zoo import TINY_SD

    arch = {k: v for k, v in TINY_SD.items() if k != "pretrain"}
    return {**arch, "weights_sha256": card()["sha256"], "trained_on": card()["trained_on"]}


def build_parts(seed: int = 0):
    """The untrained components (for train.py) - same configs and seeding as tiny-sd."""
    from bench.zoo import TINY_SD, sd_parts

    with tempfile.TemporaryDirectory() as tmp:
        return sd_parts(TINY_SD, Path(tmp) / "tokenizer", seed)


def build(out_dir: Path, seed: int = 0):
    """Verify the shipped weights, load them strictly, write the diffusers folder."""
    import torch
    from safetensors.torch import load_file

    from bench.errors import BenchError
    from bench.zoo import TINY_SD, save_sd, sd_parts

    expected = card()["sha256"]
    if not WEIGHTS.is_file():
        raise BenchError(f"zoo model tiny-sd-face: {WEIGHTS} is missing from this checkout")
    got = sha256(WEIGHTS)
    if got != expected:
        raise BenchError(f"zoo model tiny-sd-face: {WEIGHTS.name} has sha256 {got[:12]}..., its card says {expected[:12]}...")
    tensors = load_file(str(WEIGHTS))
    unet, vae, text_encoder, tokenizer, scheduler = sd_parts(TINY_SD, out_dir / "tokenizer", seed)
    for prefix, module in (("unet.", unet), ("vae.", vae), ("text_encoder.", text_encoder)):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BenchError(f"zoo model tiny-sd-face: {prefix[:-1]} weights do not fit the config "
                             f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    vae.register_to_config(scaling_factor=float(card()["scaling_factor"]))
    for m in (unet, vae, text_encoder):
        m.eval()
    with torch.no_grad():
        return save_sd(out_dir, unet, vae, text_encoder, tokenizer, scheduler)
