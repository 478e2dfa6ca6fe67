"""RID's perturbation network (the "Real-time Identity Defender").

RID (Guo et al., arXiv 2412.09844; code: github.com/Guohanzhong/RID) maps a clean
image to a protective perturbation in ONE forward pass of a DiT-style transformer.
This module re-implements that network in plain torch (no timm at runtime) so that
the released checkpoints ``ASDS-eps-{6,8,12}_255.bin`` load key for key and shape
for shape with ``strict=True``.

Architecture (from the reference ``libs/DiT.py``, class ``DiT``)
-----------------------------------------------------------------
* ``x_embedder``: timm-style PatchEmbed, a ``Conv2d(in_channels, hidden, p, stride=p)``
  (key ``x_embedder.proj.{weight,bias}``), flattened to (N, T, hidden) tokens.
* ``pos_embed``: fixed 2-D sin-cos position embedding (MAE formula), registered as
  ``nn.Parameter(requires_grad=False)``, therefore PRESENT in the state dict with
  shape (1, T, hidden).
* ``t_embedder`` (sinusoidal-frequency MLP 256 -> hidden -> hidden) and
  ``y_embedder`` (``nn.Embedding(num_classes + 1, hidden)``; the +1 is DiT's CFG null
  class because ``class_dropout_prob=0.1 > 0``) are constructed and saved in the
  checkpoint but NEVER used in the forward pass: the reference comments out
  ``c = t_embedder(t) + y_embedder(y)`` and feeds ``c = zeros(N, hidden)``
  (the paper: "these components are replaced with zero vectors").  Because
  ``SiLU(0) = 0`` every adaLN modulation therefore equals its Linear bias.
* ``blocks.{i}``: DiT blocks with adaLN-Zero: ``norm1``/``norm2`` are LayerNorm
  without affine (eps 1e-6, no keys), timm ``Attention`` (``attn.qkv``,
  ``attn.proj``, qkv bias on), timm ``Mlp`` (``mlp.fc1``, ``mlp.fc2``) with
  ``GELU(approximate="tanh")``, ``adaLN_modulation = Sequential(SiLU, Linear(h, 6h))``
  (key ``adaLN_modulation.1``).
* ``final_layer``: LayerNorm (no affine) + adaLN (``final_layer.adaLN_modulation.1``,
  2h) + ``final_layer.linear`` to ``patch_size**2 * out_channels``;
  ``learn_sigma=False`` so ``out_channels == in_channels == 3``.
* unpatchify to (N, 3, H, W), then ``final_activation = tanh(x) * scale`` with
  ``scale = eps_255 / 255`` (``ScaledTanh``, no parameters).

Released configuration: input 512, patch 16, hidden 1152, depth 14, 8 heads, MLP
ratio 4 (the reference ``DiT`` defaults); 152 state-dict keys, ~343 M parameters.

Budget semantics of the released checkpoints (IMPORTANT)
--------------------------------------------------------
The network's input is the image in [-1, 1] (``Normalize([0.5], [0.5])``) and the
reference adds the output directly in that space::

    protected = clamp(x + tanh(.) * eps_255 / 255, -1, 1)   # x in [-1, 1]

One 0-255 pixel level is 2/255 in [-1, 1] units, so a checkpoint named
``eps-12_255`` moves pixels by at most 12/255 * 127.5 = **6 levels** (6/255 in
[0, 1] units), ``eps-8_255`` by 4 and ``eps-6_255`` by 3.  :func:`pixel_budget`
returns this real 0-255 budget (``eps_255 / 2``); :func:`protect` guarantees the
saved uint8 image respects ``floor(pixel_budget)`` exactly.

Provenance: the index holds RID's ``libs/DiT.py`` only as a ``.pyc``; the layout
above was read from a copy of that file (YichenShen0103/perturb ``libs/DiT.py``,
same defaults 512/16/1152/14/8) and cross-checked with RID's own ``infer.py``
(``DiT(scale=12/255)``, ``load_state_dict(..., strict=True)``, ``clean + noise``
then ``/2 + 0.5``, ``clamp(0, 1)``) and ``train_sd_ensemble_reg.py`` (saves the
whole ``state_dict()``).  Re-check against a real checkpoint when one is at hand.

Attention defaults to ``F.scaled_dot_product_attention`` (timm's fused path): on
the 2-core CPU benchmark (benchmarks/rid_speed.py) it matches the explicit
softmax attention to ~1e-5 pixel levels and is as fast or up to ~10% faster.

Reference inference resizes the short side to 512 and centre-crops; :func:`protect`
instead resizes the whole image to the network size, computes the perturbation,
and maps the perturbation back to the original size (bilinear), so images of any
size and aspect ratio keep their framing.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "RIDNet",
    "RIDCheckpointError",
    "released_config",
    "reference_state_dict_shapes",
    "random_reference_state_dict",
    "sincos_pos_embed_2d",
    "pixel_budget",
    "eps_from_checkpoint_name",
    "load_checkpoint",
    "protect",
    "RELEASED_EPS_255",
]

#: budgets (eps_255) of the released checkpoints ASDS-eps-{6,8,12}_255.bin
RELEASED_EPS_255 = (6, 8, 12)

# Reference constructor defaults that shape the (unused) condition embedders.
_NUM_CLASSES = 1000
_CLASS_DROPOUT_PROB = 0.1
_FREQ_EMBED = 256


# ----------------------------------------------------------------- configuration
def released_config() -> dict[str, Any]:
    """Architecture kwargs of the released RID checkpoints (``RIDNet(**released_config(), eps_255=...)``)."""
    return dict(
        input_size=512,
        patch_size=16,
        in_channels=3,
        hidden_size=1152,
        depth=14,
        num_heads=8,
        mlp_ratio=4.0,
    )


def pixel_budget(eps_255: float) -> float:
    """Real L-inf budget in 0-255 pixel levels of a checkpoint named ``eps-{eps_255}_255``.

    The perturbation ``tanh * eps_255/255`` is added in [-1, 1] image space, where
    one pixel level is 2/255, hence ``eps_255 / 2`` levels (12 -> 6).
    """
    return float(eps_255) / 2.0


def eps_from_checkpoint_name(path: str | Path) -> float | None:
    """Parse ``eps_255`` from a released checkpoint name (``ASDS-eps-12_255.bin`` -> 12.0)."""
    m = re.search(r"eps[-_]?(\d+(?:\.\d+)?)_255", Path(path).name)
    return float(m.group(1)) if m else None


def reference_state_dict_shapes(config: dict[str, Any] | None = None) -> "OrderedDict[str, tuple[int, ...]]":
    """Key -> shape of the reference ``DiT`` state dict, in the reference's order.

    Written from the reference source, independently of :class:`RIDNet`: the
    module's own parameter ``pos_embed`` first, then the children in registration
    order (x_embedder, t_embedder, y_embedder, blocks, final_layer).  LayerNorms
    have no affine parameters; Identity / Dropout / activation modules have no keys.
    """
    cfg = {**released_config(), **(config or {})}
    h = int(cfg["hidden_size"])
    p = int(cfg["patch_size"])
    c = int(cfg["in_channels"])
    n_tok = (int(cfg["input_size"]) // p) ** 2
    mlp_h = int(h * float(cfg["mlp_ratio"]))
    out_c = c  # learn_sigma=False in the reference

    shapes: "OrderedDict[str, tuple[int, ...]]" = OrderedDict()
    shapes["pos_embed"] = (1, n_tok, h)
    shapes["x_embedder.proj.weight"] = (h, c, p, p)
    shapes["x_embedder.proj.bias"] = (h,)
    shapes["t_embedder.mlp.0.weight"] = (h, _FREQ_EMBED)
    shapes["t_embedder.mlp.0.bias"] = (h,)
    shapes["t_embedder.mlp.2.weight"] = (h, h)
    shapes["t_embedder.mlp.2.bias"] = (h,)
    shapes["y_embedder.embedding_table.weight"] = (_NUM_CLASSES + int(_CLASS_DROPOUT_PROB > 0), h)
    for i in range(int(cfg["depth"])):
        b = f"blocks.{i}."
        shapes[b + "attn.qkv.weight"] = (3 * h, h)
        shapes[b + "attn.qkv.bias"] = (3 * h,)
        shapes[b + "attn.proj.weight"] = (h, h)
        shapes[b + "attn.proj.bias"] = (h,)
        shapes[b + "mlp.fc1.weight"] = (mlp_h, h)
        shapes[b + "mlp.fc1.bias"] = (mlp_h,)
        shapes[b + "mlp.fc2.weight"] = (h, mlp_h)
        shapes[b + "mlp.fc2.bias"] = (h,)
        shapes[b + "adaLN_modulation.1.weight"] = (6 * h, h)
        shapes[b + "adaLN_modulation.1.bias"] = (6 * h,)
    shapes["final_layer.linear.weight"] = (p * p * out_c, h)
    shapes["final_layer.linear.bias"] = (p * p * out_c,)
    shapes["final_layer.adaLN_modulation.1.weight"] = (2 * h, h)
    shapes["final_layer.adaLN_modulation.1.bias"] = (2 * h,)
    return shapes


def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE / DiT formula), shape (grid_size**2, embed_dim).

    Tokens are row-major (row = y, column = x).  The first half of the channels
    encodes the column (x) coordinate, the second half the row (y) coordinate;
    each half is ``[sin(pos * omega), cos(pos * omega)]`` with
    ``omega_k = 10000 ** (-k / (embed_dim / 4))``.  Computed in float64.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    coords = torch.arange(grid_size, dtype=torch.float64)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        ang = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)

    return torch.cat([one_axis(xs), one_axis(ys)], dim=1)


def random_reference_state_dict(
    config: dict[str, Any] | None = None,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
) -> "OrderedDict[str, torch.Tensor]":
    """A seeded random state dict in the reference key layout (for tests and benchmarks).

    Values are scaled so a forward pass is numerically "alive" (unlike the reference
    init, whose zeroed final layer outputs exactly 0): weights ~ N(0, 1/fan_in),
    biases ~ N(0, 0.02), adaLN biases (= the modulations, since the condition is 0)
    ~ N(0, 0.3) so gates/shifts/scales matter, ``pos_embed`` the sin-cos table as in
    the released checkpoints.  Pre-tanh outputs are then O(1).
    """
    cfg = {**released_config(), **(config or {})}
    gen = torch.Generator().manual_seed(int(seed))
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    grid = int(cfg["input_size"]) // int(cfg["patch_size"])
    for key, shape in reference_state_dict_shapes(cfg).items():
        if key == "pos_embed":
            t = sincos_pos_embed_2d(shape[-1], grid).to(dtype).unsqueeze(0)
        elif key.endswith("embedding_table.weight"):
            t = torch.randn(shape, generator=gen, dtype=dtype).mul_(0.02)
        elif key.endswith(".weight"):
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=gen, dtype=dtype).mul_(fan_in**-0.5)
        elif "adaLN_modulation" in key:
            t = torch.randn(shape, generator=gen, dtype=dtype).mul_(0.3)
        else:
            t = torch.randn(shape, generator=gen, dtype=dtype).mul_(0.02)
        out[key] = t
    return out


# ------------------------------------------------------------------ the blocks
def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """Image (N, C, S, S) -> tokens (N, (S/p)**2, hidden) by a stride-p convolution (timm layout)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"RIDNet expects {self.img_size[0]}x{self.img_size[1]} inputs, got {tuple(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Present only for checkpoint compatibility: the reference never calls it."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = _FREQ_EMBED):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        ang = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1))


class LabelEmbedder(nn.Module):
    """Present only for checkpoint compatibility: the reference never calls it."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)


class Attention(nn.Module):
    """Multi-head self-attention with timm's key layout (``qkv``, ``proj``).

    ``impl="sdpa"`` uses ``F.scaled_dot_product_attention`` (what timm's fused path
    calls); ``impl="math"`` is the explicit softmax(q k^T / sqrt(d)) v.
    """

    def __init__(self, dim: int, num_heads: int, impl: str = "sdpa"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.impl = impl
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.impl == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v)
        elif self.impl == "math":
            attn = (q * self.scale) @ k.transpose(-2, -1)
            y = attn.softmax(dim=-1) @ v
        else:
            raise ValueError(f"unknown attention impl {self.impl!r} (use 'sdpa' or 'math')")
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """timm Mlp layout (``fc1``, ``fc2``) with tanh-approximated GELU, as in DiT."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block (keys: attn.*, mlp.*, adaLN_modulation.1.*)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, attn_impl: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, impl=attn_impl)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sh_a, sc_a, g_a, sh_m, sc_m, g_m = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g_a.unsqueeze(1) * self.attn(_modulate(self.norm1(x), sh_a, sc_a))
        x = x + g_m.unsqueeze(1) * self.mlp(_modulate(self.norm2(x), sh_m, sc_m))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


# ------------------------------------------------------------------ the network
class RIDNet(nn.Module):
    """RID's DiT perturbation network; ``forward(x)`` maps images in [-1, 1] to a perturbation.

    Args:
        input_size: square input resolution (released: 512).
        patch_size: patch size (released: 16).
        in_channels: image channels (3); ``out_channels == in_channels`` (no learned sigma).
        hidden_size, depth, num_heads, mlp_ratio: transformer size (released 1152, 14, 8, 4.0).
        eps_255: budget as written in the checkpoint name; the output is
            ``tanh(.) * eps_255 / 255`` in [-1, 1] image units, i.e. at most
            ``pixel_budget(eps_255) = eps_255 / 2`` pixel levels.
        attention: ``"sdpa"`` (default, fused kernel) or ``"math"`` (explicit).
    """

    def __init__(
        self,
        input_size: int = 512,
        patch_size: int = 16,
        in_channels: int = 3,
        hidden_size: int = 1152,
        depth: int = 14,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        eps_255: float = 12.0,
        attention: str = "sdpa",
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of patch_size {patch_size}")
        self.config = dict(
            input_size=int(input_size),
            patch_size=int(patch_size),
            in_channels=int(in_channels),
            hidden_size=int(hidden_size),
            depth=int(depth),
            num_heads=int(num_heads),
            mlp_ratio=float(mlp_ratio),
        )
        self.input_size = int(input_size)
        self.patch_size = int(patch_size)
        self.in_channels = int(in_channels)
        self.out_channels = int(in_channels)
        self.eps_255 = float(eps_255)
        self.scale = self.eps_255 / 255.0

        # Registration order matters only for state-dict ordering; the own
        # parameter pos_embed is listed first by nn.Module.state_dict anyway.
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(_NUM_CLASSES, hidden_size, _CLASS_DROPOUT_PROB)
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(
            sincos_pos_embed_2d(hidden_size, grid).float().unsqueeze(0), requires_grad=False
        )
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden_size, num_heads, mlp_ratio, attention) for _ in range(depth)]
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        if not self.pos_embed.is_meta:
            self._init_like_reference()

    # The reference init (xavier linears, zeroed adaLN and output layers).  With it
    # a fresh network outputs exactly zero; real use always loads a checkpoint.
    @torch.no_grad()
    def _init_like_reference(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    @property
    def pixel_budget(self) -> float:
        return pixel_budget(self.eps_255)

    def set_attention(self, impl: str) -> "RIDNet":
        if impl not in ("sdpa", "math"):
            raise ValueError(f"unknown attention impl {impl!r} (use 'sdpa' or 'math')")
        for blk in self.blocks:
            blk.attn.impl = impl
        return self

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p*p*C) -> (N, C, H, W); each token's vector is laid out (p_row, p_col, C)."""
        n, t, _ = x.shape
        p, c = self.patch_size, self.out_channels
        g = int(round(math.sqrt(t)))
        if g * g != t:
            raise ValueError(f"{t} tokens do not form a square grid")
        x = x.reshape(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(n, c, g * p, g * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, S, S) image in [-1, 1] -> perturbation in [-eps/255, eps/255] (same units)."""
        x = self.x_embedder(x) + self.pos_embed
        c = torch.zeros(x.shape[0], x.shape[-1], device=x.device, dtype=x.dtype)  # the zero condition
        for blk in self.blocks:
            x = blk(x, c)
        x = self.unpatchify(self.final_layer(x, c))
        return torch.tanh(x) * self.scale

    def protect(self, images: Any, batch_size: int = 4) -> Any:
        return protect(self, images, batch_size=batch_size)


# ------------------------------------------------------------------ checkpoints
class RIDCheckpointError(RuntimeError):
    """A checkpoint does not match the RID reference layout."""


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise RIDCheckpointError(f"{path}: not a state dict of tensors")
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def _check_layout(sd: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], where: str) -> None:
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {expected[k]}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    if missing or unexpected or wrong:
        def show(items: list[str]) -> str:
            return ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {show(wrong)}")
        raise RIDCheckpointError(f"{where} does not match the RID network layout; " + "; ".join(parts))


def load_checkpoint(
    path: str | Path,
    eps_255: float | None = None,
    config: dict[str, Any] | None = None,
    *,
    device: str | torch.device = "cpu",
    attention: str = "sdpa",
) -> RIDNet:
    """Load a RID checkpoint (.bin/.pt via ``torch.load(weights_only=True)``, or .safetensors).

    ``eps_255`` defaults to the value in the file name (``ASDS-eps-12_255.bin`` -> 12);
    ``config`` defaults to :func:`released_config`.  The state dict must match the
    reference layout exactly (``strict=True``); otherwise :class:`RIDCheckpointError`
    names the missing / unexpected / mis-shaped keys.  Weights are cast to float32.
    The module is built on the meta device and the loaded tensors are assigned, so
    the ~1.4 GB of released weights are held once.
    """
    path = Path(path)
    if eps_255 is None:
        eps_255 = eps_from_checkpoint_name(path)
        if eps_255 is None:
            raise RIDCheckpointError(f"{path.name}: cannot read the budget from the name; pass eps_255=")
    cfg = {**released_config(), **(config or {})}
    sd = _read_state_dict(path)
    _check_layout(sd, reference_state_dict_shapes(cfg), str(path))
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    with torch.device("meta"):
        net = RIDNet(**cfg, eps_255=eps_255, attention=attention)
    result = net.load_state_dict(sd, strict=True, assign=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; kept for clarity
        raise RIDCheckpointError(f"{path}: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    net.pos_embed.requires_grad_(False)
    return net.to(device).eval()


# ------------------------------------------------------------------ protection
def _to_clean255(img: Any, kind: str) -> torch.Tensor:
    """One image -> (3, H, W) float32 tensor of exact integers 0..255."""
    if kind == "uint8_hwc":
        t = torch.as_tensor(np.asarray(img)) if not isinstance(img, torch.Tensor) else img
        if t.ndim != 3 or t.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (H, W, 3), got {tuple(t.shape)}")
        return t.permute(2, 0, 1).float()
    t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"float images must be (3, H, W) in [0, 1], got {tuple(t.shape)}")
    return torch.round(t.detach().float().cpu().clamp(0, 1) * 255.0)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # Bilinear (antialiased when shrinking) weights are non-negative and sum to 1,
    # so the resized perturbation stays inside the network's bound.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def protect(net: nn.Module, images: Any, batch_size: int = 4) -> Any:
    """Protect images with a RID network; returns uint8 images within ``floor(pixel_budget)``.

    ``images`` may be: a uint8 (H, W, 3) array/tensor, a uint8 (N, H, W, 3) batch,
    a float (3, H, W) or (N, 3, H, W) tensor in [0, 1], or a list of any of the
    single-image forms (sizes may differ).  The output has the same container and
    layout as the input, with dtype uint8 (float inputs are first quantised to
    uint8 and the budget is measured against that).

    Per image: to [-1, 1]; resize to the network input (bilinear); perturbation =
    ``net(x)``; resize the perturbation back to the original size (bilinear); add in
    [-1, 1] space and clamp (the reference's ``clean + noise``, then ``/2 + 0.5``,
    ``clamp(0, 1)``); round to 8 bits; clip the integer change to
    ``floor(eps_255 / 2)`` levels so the saved PNG respects the budget exactly.
    """
    eps_255 = float(getattr(net, "eps_255"))
    size = int(getattr(net, "input_size"))
    levels = math.floor(pixel_budget(eps_255) + 1e-6)
    try:
        param = next(net.parameters())
        device, dtype = param.device, (param.dtype if param.is_floating_point() else torch.float32)
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32

    # -- normalise the input container
    is_list = isinstance(images, (list, tuple))
    if is_list and not images:
        return []
    items: Sequence[Any] = list(images) if is_list else [images]
    first = items[0]
    is_numpy = isinstance(first, np.ndarray)
    t0 = torch.as_tensor(first) if is_numpy else first
    if not isinstance(t0, torch.Tensor):
        raise TypeError(f"unsupported image type {type(first).__name__}")
    kind = "uint8_hwc" if t0.dtype == torch.uint8 else "float_chw"
    batched = (not is_list) and t0.ndim == 4
    if batched:
        items = [items[0][i] for i in range(items[0].shape[0])]

    cleans = [_to_clean255(im, kind) for im in items]
    outs: list[torch.Tensor] = []
    for start in range(0, len(cleans), batch_size):
        chunk = cleans[start : start + batch_size]
        xs = [(c / 127.5 - 1.0) for c in chunk]
        net_in = torch.cat([_resize(x[None], (size, size)) for x in xs]).to(device=device, dtype=dtype)
        pert = net(net_in).float().cpu()
        for x, c, p in zip(xs, chunk, pert):
            p_full = _resize(p[None], tuple(x.shape[-2:]))[0]
            adv = torch.clamp(x + p_full, -1.0, 1.0)
            adv255 = torch.round((adv + 1.0) * 127.5)
            delta = torch.clamp(adv255 - c, -levels, levels)
            outs.append(torch.clamp(c + delta, 0, 255).to(torch.uint8))

    # -- back to the input container / layout
    if kind == "uint8_hwc":
        outs = [o.permute(1, 2, 0).contiguous() for o in outs]
    if batched:
        res: Any = torch.stack(outs)
        return res.numpy() if is_numpy else res
    if is_list:
        return [o.numpy() if isinstance(im, np.ndarray) else o for o, im in zip(outs, images)]
    return outs[0].numpy() if is_numpy else outs[0]
