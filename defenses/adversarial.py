"""Shared adversarial machinery for optimisation-based defenses.

Budgets come in 0-255 pixel units and are converted once here: the models see
images in [-1, 1], where one pixel level is 2/255, so eps_px pixel levels are
eps_px / 127.5 in model space (methods.md, "Units")."""

from __future__ import annotations

from typing import Callable

import torch


def px_to_model(v: float) -> float:
    """0-255 pixel units -> [-1, 1] model-space units."""
    return v / 127.5


def pgd(
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, int], torch.Tensor],
    eps_px: float,
    alpha_px: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """Sign-gradient ascent on loss_fn(x_adv, step), projected onto the L-inf ball of
    radius eps around x (and onto the valid image range). x is in [-1, 1]."""
    eps, alpha = px_to_model(eps_px), px_to_model(alpha_px)
    delta = torch.zeros_like(x)
    if random_start:
        delta = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * eps
    x_adv = (x + delta).clamp(-1, 1).detach()
    for step in range(steps):
        x_adv.requires_grad_(True)
        loss = loss_fn(x_adv, step)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(-1, 1)
        x_adv = x_adv.detach()
        if on_step:
            on_step(step, float(loss.detach()))
    return x_adv
