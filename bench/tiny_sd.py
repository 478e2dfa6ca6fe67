"""The tiny SD's architecture and the pieces every tiny model is built from: the configs, a
locally written CLIP tokenizer, seeded components, the diffusers layout, and loading weights
that ship with the repository. Shared by the zoo (bench/zoo.py) and the models it builds
(bench/zoo_face, bench/zoo_sdxl), which therefore import this module and not each other."""

from __future__ import annotations

import json
from pathlib import Path

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


def sd_parts(cfg: dict, tok_dir: Path, seed: int):
    """The SD family's components from `cfg`, seeded: (unet, vae, text_encoder, tokenizer,
    scheduler), with the locally written tokenizer in `tok_dir`."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

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
    return unet, vae, text_encoder, tokenizer, scheduler


def save_sd(out_dir: Path, unet, vae, text_encoder, tokenizer, scheduler):
    """Write the components in diffusers layout (the folder `from_pretrained` reads)."""
    from diffusers import StableDiffusionPipeline

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
    return pipe


def load_shipped(name: str, path: Path, sha256: str, parts, scaling_factor: float | None = None) -> None:
    """Load weights that ship with the repository into `parts` = (unet, vae, text_encoder):
    the file's SHA-256 must match its card, and every tensor must fit the configured
    architecture (no missing, no extra), so a swapped or damaged file is an error, not a model."""
    from safetensors.torch import load_file

    from .artifacts import sha256_file
    from .errors import BenchError

    if not path.is_file():
        raise BenchError(f"zoo model {name}: {path} is missing from this checkout")
    got = sha256_file(path)
    if got != sha256:
        raise BenchError(f"zoo model {name}: {path.name} has sha256 {got[:12]}..., its card says {sha256[:12]}...")
    tensors = load_file(str(path))
    for prefix, module in zip(("unet.", "vae.", "text_encoder."), parts):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BenchError(f"zoo model {name}: {prefix[:-1]} weights do not fit the config "
                             f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    if scaling_factor is not None:
        parts[1].register_to_config(scaling_factor=float(scaling_factor))
    for m in parts:
        m.eval()
