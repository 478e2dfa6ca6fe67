"""Tiny models for the zero-shot attacks (IP-Adapter FaceID, InstantID): an SDXL-shaped
base, an IdentityNet-shaped ControlNet and adapter checkpoints in the authors' key
layouts, registered into bench.zoo.ZOO and built by bench.zoo.build like tiny-sd."""

from __future__ import annotations

import json
from pathlib import Path

from .zoo import TINY_SD, ZOO, write_tokenizer, zoo_revision

# ------------------------------------------------------------------ zero-shot attacks' tiny models
# Tiny stand-ins for what IP-Adapter FaceID and InstantID load: an SDXL-shaped base, an
# IdentityNet-shaped ControlNet, and adapter checkpoints written in the authors' key layouts
# (tencent-ailab/IP-Adapter ip_adapter/ip_adapter_faceid.py; instantX-research/InstantID
# pipeline_stable_diffusion_xl_instantid.py) so that diffusers' own `load_ip_adapter`
# reads them exactly as it reads the real files. Seeded random weights, no pre-training:
# each builds in seconds. Their identity-embedding width is 128, the offline encoder's
# (metrics/face_offline.py: dlib ResNet descriptors).

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
# The tiny VAE downsamples x4 (SD's x8), so the ControlNet's condition encoder has two
# stride-2 stages instead of three. Zero convolutions get seeded random weights: a trained
# IdentityNet's are non-zero, and zero ones would make the tiny ControlNet ignore both the
# keypoint image and the face tokens.
TINY_INSTANTID_CONTROLNET = {"base": "tiny-sdxl", "base_unet": TINY_SDXL["unet"],
                             "conditioning_embedding_out_channels": (16, 32, 32), "zero_conv_std": 0.1,
                             "cond_init": "he-normal"}
# IP-Adapter FaceID for tiny-sd: MLPProjModel (id -> 2 id -> tokens x cross dim, LayerNorm),
# 4 tokens, LoRA on every attention processor (ip_adapter_faceid.py: lora_rank=128, num_tokens=4).
TINY_IPA_FACEID = {"unet": TINY_SD["unet"], "id_dim": 128, "num_tokens": 4, "lora_rank": 4,
                   "weight_name": "ip-adapter-faceid_tiny.safetensors"}
# InstantID's ip-adapter for tiny-sdxl: Resampler (InstantID: dim 1280, depth 4, dim_head 64,
# heads 20, 16 queries, ff_mult 4) reduced to dim 64 / 1 head; depth 4 and dim_head 64 kept
# because diffusers' converter assumes them.
TINY_INSTANTID = {"unet": TINY_SDXL["unet"], "id_dim": 128, "num_tokens": 16, "dim": 64, "depth": 4,
                  "dim_head": 64, "ff_mult": 4, "weight_name": "ip-adapter.safetensors"}

ZOO.update({
    "tiny-sdxl": TINY_SDXL,
    "tiny-instantid-controlnet": TINY_INSTANTID_CONTROLNET,
    "tiny-ipa-faceid": TINY_IPA_FACEID,
    "tiny-instantid": TINY_INSTANTID,
})


def _write_marker(name: str, out_dir: Path, seed: int) -> None:
    (out_dir / "ZOO.json").write_text(json.dumps({"name": name, "revision": zoo_revision(name), "seed": seed}))


def _tiny_sdxl_unet(seed: int):
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
    unet = _tiny_sdxl_unet(seed)
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
    _write_marker("tiny-sdxl", out_dir, seed)
    return pipe


def build_tiny_instantid_controlnet(out_dir: Path, seed: int = 0):
    """IdentityNet shape: ControlNetModel.from_unet on tiny-sdxl's UNet (rebuilt from the
    same config and seed, so its weights equal the saved tiny-sdxl UNet's)."""
    import torch
    from diffusers import ControlNetModel

    cfg = TINY_INSTANTID_CONTROLNET
    net = ControlNetModel.from_unet(_tiny_sdxl_unet(seed),
                                    conditioning_embedding_out_channels=tuple(cfg["conditioning_embedding_out_channels"]))
    g = torch.Generator().manual_seed(seed + 10)
    ce = net.controlnet_cond_embedding
    with torch.no_grad():
        # He-normal condition encoder (std sqrt(2 / fan_in)): with PyTorch's default init the
        # sparse keypoint drawing would shrink through its 6 SiLU convs to almost nothing.
        for conv in [ce.conv_in, *ce.blocks, ce.conv_out]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / conv.weight[0].numel()) ** 0.5)
            conv.bias.zero_()
        for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * cfg["zero_conv_std"])
    net.eval().save_pretrained(out_dir, safe_serialization=True)
    _write_marker("tiny-instantid-controlnet", out_dir, seed)
    return net


def _attn_layout(unet_cfg: dict) -> list[tuple[str, int, int | None]]:
    """(processor name, hidden size, cross-attention dim or None) in `unet.attn_processors`
    order: the index of a processor there is its key prefix in an IP-Adapter checkpoint."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**unet_cfg)
    out = []
    for name in unet.attn_processors:
        attn = unet.get_submodule(name[: -len(".processor")])
        cross = None if name.endswith("attn1.processor") else attn.to_k.in_features
        out.append((name, attn.to_q.in_features, cross))
    return out


def _save_adapter(out_dir: Path, weight_name: str, image_proj: dict, ip_adapter: dict) -> None:
    """Flattened `image_proj.*` / `ip_adapter.*` keys: the .safetensors form diffusers'
    `load_ip_adapter` reads (and IP-Adapter's own loaders)."""
    from safetensors.torch import save_file

    flat = {f"image_proj.{k}": v.contiguous() for k, v in image_proj.items()}
    flat.update({f"ip_adapter.{k}": v.contiguous() for k, v in ip_adapter.items()})
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(flat, out_dir / weight_name)


def build_tiny_ipa_faceid(out_dir: Path, seed: int = 0):
    """IP-Adapter FaceID checkpoint for tiny-sd's UNet (ip_adapter_faceid.py key layout):
    image_proj.proj.0/proj.2/norm (MLPProjModel); ip_adapter.<i>.to_{q,k,v,out}_lora.{down,up}
    for every attention processor i and ip_adapter.<i>.to_{k,v}_ip for the cross-attention ones."""
    import torch

    cfg = TINY_IPA_FACEID
    d, n, r = cfg["id_dim"], cfg["num_tokens"], cfg["lora_rank"]
    cross_dim = cfg["unet"]["cross_attention_dim"]
    torch.manual_seed(seed + 20)
    proj = torch.nn.Sequential(torch.nn.Linear(d, 2 * d), torch.nn.GELU(), torch.nn.Linear(2 * d, cross_dim * n))
    norm = torch.nn.LayerNorm(cross_dim)
    image_proj = {**{f"proj.{k}": v for k, v in proj.state_dict().items()}, **{f"norm.{k}": v for k, v in norm.state_dict().items()}}
    g = torch.Generator().manual_seed(seed + 21)
    ip = {}
    for i, (_, hidden, cross) in enumerate(_attn_layout(cfg["unet"])):
        for part, fan_in in (("to_q", hidden), ("to_k", cross or hidden), ("to_v", cross or hidden), ("to_out", hidden)):
            ip[f"{i}.{part}_lora.down.weight"] = torch.randn(r, fan_in, generator=g) / fan_in**0.5
            ip[f"{i}.{part}_lora.up.weight"] = torch.randn(hidden, r, generator=g) * 0.05
        if cross is not None:
            for part in ("to_k_ip", "to_v_ip"):
                ip[f"{i}.{part}.weight"] = torch.randn(hidden, cross, generator=g) / cross**0.5
    _save_adapter(out_dir, cfg["weight_name"], image_proj, ip)
    _write_marker("tiny-ipa-faceid", out_dir, seed)
    return out_dir / cfg["weight_name"]


def build_tiny_instantid(out_dir: Path, seed: int = 0):
    """InstantID ip-adapter for tiny-sdxl: image_proj = IP-Adapter's Resampler (latents, proj_in,
    layers.<l>.0.{norm1,norm2,to_q,to_kv,to_out}, layers.<l>.1.{0,1,3}, proj_out, norm_out);
    ip_adapter.<i>.to_{k,v}_ip for every cross-attention processor i (no LoRA)."""
    import torch

    cfg = TINY_INSTANTID
    dim, d, n, dh, ff = cfg["dim"], cfg["id_dim"], cfg["num_tokens"], cfg["dim_head"], cfg["ff_mult"]
    cross_dim = cfg["unet"]["cross_attention_dim"]
    heads = dim // dh
    inner = dh * heads
    g = torch.Generator().manual_seed(seed + 30)

    def lin(o, i):
        return torch.randn(o, i, generator=g) / i**0.5

    proj = {"latents": torch.randn(1, n, dim, generator=g) / dim**0.5, "proj_in.weight": lin(dim, d),
            "proj_in.bias": torch.zeros(dim), "proj_out.weight": lin(cross_dim, dim), "proj_out.bias": torch.zeros(cross_dim),
            "norm_out.weight": torch.ones(cross_dim), "norm_out.bias": torch.zeros(cross_dim)}
    for layer in range(cfg["depth"]):
        a, f = f"layers.{layer}.0", f"layers.{layer}.1"
        proj.update({f"{a}.norm1.weight": torch.ones(dim), f"{a}.norm1.bias": torch.zeros(dim),
                     f"{a}.norm2.weight": torch.ones(dim), f"{a}.norm2.bias": torch.zeros(dim),
                     f"{a}.to_q.weight": lin(inner, dim), f"{a}.to_kv.weight": lin(2 * inner, dim),
                     f"{a}.to_out.weight": lin(dim, inner),
                     f"{f}.0.weight": torch.ones(dim), f"{f}.0.bias": torch.zeros(dim),
                     f"{f}.1.weight": lin(dim * ff, dim), f"{f}.3.weight": lin(dim, dim * ff)})
    ip = {}
    for i, (_, hidden, cross) in enumerate(_attn_layout(cfg["unet"])):
        if cross is not None:
            ip[f"{i}.to_k_ip.weight"] = lin(hidden, cross)
            ip[f"{i}.to_v_ip.weight"] = lin(hidden, cross)
    _save_adapter(out_dir, cfg["weight_name"], proj, ip)
    _write_marker("tiny-instantid", out_dir, seed)
    return out_dir / cfg["weight_name"]


EXTRA_BUILDERS = {
    "tiny-sdxl": build_tiny_sdxl,
    "tiny-instantid-controlnet": build_tiny_instantid_controlnet,
    "tiny-ipa-faceid": build_tiny_ipa_faceid,
    "tiny-instantid": build_tiny_instantid,
}
