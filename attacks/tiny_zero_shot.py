"""Tiny stand-ins for what IP-Adapter FaceID and InstantID load, contributed to the zoo
through the `bench.zoo` entry points (pyproject): an IdentityNet-shaped ControlNet for
tiny-sdxl and adapter checkpoints written in the authors' key layouts
(tencent-ailab/IP-Adapter ip_adapter/ip_adapter_faceid.py; instantX-research/InstantID
pipeline_stable_diffusion_xl_instantid.py), so that diffusers' own `load_ip_adapter` reads
them exactly as it reads the real files. Seeded random weights, no pre-training: each
builds in seconds. Their identity-embedding width is 128, the offline encoder's
(metrics/face_offline.py: dlib ResNet descriptors)."""

from __future__ import annotations

from pathlib import Path

from bench.zoo import TINY_SD, ZooModel
from bench.zoo_sdxl import TINY_SDXL, tiny_sdxl_unet

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


def build_tiny_instantid_controlnet(out_dir: Path, seed: int = 0):
    """IdentityNet shape: ControlNetModel.from_unet on tiny-sdxl's UNet (rebuilt from the
    same config and seed, so its weights equal the saved tiny-sdxl UNet's)."""
    import torch
    from diffusers import ControlNetModel

    cfg = TINY_INSTANTID_CONTROLNET
    net = ControlNetModel.from_unet(tiny_sdxl_unet(seed),
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
    return out_dir / cfg["weight_name"]


IPA_FACEID = ZooModel(TINY_IPA_FACEID, build_tiny_ipa_faceid)
INSTANTID_CONTROLNET = ZooModel(TINY_INSTANTID_CONTROLNET, build_tiny_instantid_controlnet)
INSTANTID = ZooModel(TINY_INSTANTID, build_tiny_instantid)
