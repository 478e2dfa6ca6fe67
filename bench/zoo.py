"""The tiny model zoo: tiny versions of the SD 1.x/2.x components, built from
configs with a fixed seed, saved in diffusers layout, and then loaded through the
very same `from_pretrained` code path the paper profile uses for real weights.

The weights are random (seeded), so the tiny world measures how the machinery
behaves, not what a trained SD would generate. Sizes are chosen so a DreamBooth
step at 64 px takes well under a second on 2 CPU cores."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from .artifacts import stable_hash

ZOO_VERSION = "1"

# SD 2.x-like: linear projections in the transformer blocks, CLIP text encoder,
# VAE with 4 latent channels and scaling factor as SD's. Reduced widths/depths.
TINY_SD = {
    "unet": dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        norm_num_groups=16,
    ),
    "vae": dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=64,
        scaling_factor=0.18215,
    ),
    "text_encoder": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="gelu",
    ),
    # SD's training noise schedule (scheduler_config.json of SD 1.x/2.x).
    "scheduler": dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        prediction_type="epsilon",
    ),
}

ZOO = {"tiny-sd": TINY_SD}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# A few merges so that the protocol's words are single tokens, as in real CLIP.
_WORDS = ["a", "photo", "of", "sks", "person", "dslr", "portrait", "with", "dog", "the", "in", "<new1>"]


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer whose vocab.json/merges.txt are written locally: the
    byte alphabet (+ end-of-word forms), merges that spell the protocol's words."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab: list[str] = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    for word in _WORDS:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            a, b = symbols[0], symbols[1]
            merges.append(f"{a} {b}")
            merged = a + b
            if merged not in vocab:
                vocab.append(merged)
            symbols = [merged] + symbols[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    seen: dict[str, int] = {}
    for tok in vocab:
        seen.setdefault(tok, len(seen))
    merges = list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps(seen, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        )
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
    )


def zoo_revision(name: str) -> str:
    return f"zoo{ZOO_VERSION}-{stable_hash(ZOO[name], 10)}"


def build(name: str, out_dir: Path, seed: int = 0) -> None:
    """Build the tiny model `name` from its config with a fixed seed and save it."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .models import quiet_hf

    quiet_hf()
    cfg = ZOO[name]
    tok_dir = out_dir / "tokenizer"
    write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg["unet"])
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**cfg["vae"])
    torch.manual_seed(seed + 2)
    text_cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **cfg["text_encoder"],
    )
    text_encoder = CLIPTextModel(text_cfg)
    scheduler = DDPMScheduler(**cfg["scheduler"])
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "ZOO.json").write_text(json.dumps({"name": name, "revision": zoo_revision(name), "seed": seed}))


def ensure(name: str, root: Path) -> Path:
    """Path of the built zoo model, building it once (atomically) if missing."""
    from .errors import BenchError

    if name not in ZOO:
        raise BenchError(f"unknown zoo model {name!r}; the zoo has: {', '.join(ZOO)}")
    final = root / f"{name}-{zoo_revision(name)}"
    if (final / "ZOO.json").is_file():
        return final
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    try:
        build(name, tmp)
        root.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:  # built concurrently by another process
            if not (final / "ZOO.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
