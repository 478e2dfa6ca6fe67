"""Training helpers shared by the fine-tuning attacks (DreamBooth, LoRA+TI): the
optimizer with the optional 8-bit Adam, and mixed precision that only engages on CUDA."""

from __future__ import annotations

import contextlib


def optimizer(params, lr: float, eight_bit: bool):
    import torch

    if eight_bit:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=lr)
        except ImportError:
            pass  # recorded as plain AdamW by the environment section; bitsandbytes is optional
    return torch.optim.AdamW(params, lr=lr)


def autocast(device: str, mode: str):
    import torch

    if mode == "no" or not device.startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if mode == "bf16" else torch.float16)
