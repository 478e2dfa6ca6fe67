"""Training helpers shared by the fine-tuning attacks (DreamBooth, LoRA+TI): one
prior-preserving training loss, the optimizer with the optional 8-bit Adam, and mixed
precision that only engages on CUDA."""

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


def prior_preserving_loss(parts: dict, x_inst, x_cls, instance_prompt: str, class_prompt: str, batch_size: int,
                          prior_weight: float, g):
    """DreamBooth's objective on a random batch: instance images with the instance prompt,
    plus (when class images exist) as many class images with the class prompt, weighted."""
    import torch

    from bench import sd

    idx = torch.randint(0, len(x_inst), (batch_size,), generator=g)
    inst_cond = sd.encode_prompts(parts, [instance_prompt] * len(idx))
    cls_batch = cls_cond = None
    if x_cls is not None:
        cidx = torch.randint(0, len(x_cls), (batch_size,), generator=g)
        cls_batch = x_cls[cidx]
        cls_cond = sd.encode_prompts(parts, [class_prompt] * len(cidx))
    return sd.dreambooth_loss(parts, x_inst[idx], inst_cond, cls_batch, cls_cond, prior_weight, g)
