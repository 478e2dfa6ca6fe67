"""tiny-sdxl: an SDXL-shaped base (two CLIP text encoders, "text_time" added conditioning),
built from its config with seeded weights and saved in diffusers layout. No pre-training:
it builds in seconds. The zero-shot attacks' adapters and ControlNet for it are plugin zoo
models (attacks/tiny_zero_shot.py)."""

from __future__ import annotations

from pathlib import Path

from .tiny_sd import TINY_SD, write_tokenizer

# SDXL-like: two CLIP text encoders whose hidden states are concatenated (32 + 32 = the
# UNet's cross-attention width 64), the second with a projection giving the pooled
# embedding; "text_time" added conditioning of 6 size/crop ids x 8 + pooled 32 = 80.
TINY_SDXL = {
    "unet": dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 1),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=80,
        norm_num_groups=16,
    ),
    "vae": {k: v for k, v in TINY_SD["vae"].items()},
    "text_encoder": dict(TINY_SD["text_encoder"]),
    "text_encoder_2": dict(TINY_SD["text_encoder"]),
    # SDXL base's scheduler_config.json (EulerDiscreteScheduler, same betas as SD).
    "scheduler": dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    ),
}


def tiny_sdxl_unet(seed: int):
    """tiny-sdxl's UNet as built (seeded): ControlNets derived from it start from its weights."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_SDXL["unet"])


def build_tiny_sdxl(out_dir: Path, seed: int = 0):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    cfg = TINY_SDXL
    toks = []
    for sub in ("tokenizer", "tokenizer_2"):
        write_tokenizer(out_dir / sub)
        toks.append(CLIPTokenizer.from_pretrained(out_dir / sub))
    unet = tiny_sdxl_unet(seed)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**cfg["vae"])
    encoders = []
    for i, (key, cls) in enumerate((("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection))):
        torch.manual_seed(seed + 2 + i)
        tok = toks[i]
        encoders.append(cls(CLIPTextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                           pad_token_id=tok.pad_token_id, **cfg[key])))
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(), text_encoder=encoders[0].eval(), text_encoder_2=encoders[1].eval(), tokenizer=toks[0],
        tokenizer_2=toks[1], unet=unet.eval(), scheduler=EulerDiscreteScheduler(**cfg["scheduler"]),
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return pipe
