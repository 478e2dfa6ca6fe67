"""DLADiff layer 1 (against fine-tuning): Dual-Surrogate Models (DSUR) + Alternating
Dynamic Fine-Tuning (ADFT), Jia et al., DLADiff, Sec. 4.1 and Algorithm 1.

- Static surrogate UNet_s: the base UNet DreamBooth-tuned on clean images of the
  identity (UNet only, no prior term: Eq. 7, Alg. 1 lines 1-9). Cached as an artifact
  (stage `dladiff_static`) so the Table 5 ablations and reruns reuse it.
- Dynamic surrogate UNet_d: starts from the base weights; every epoch
  (1) PGD ascent on the attention loss L_att (Eq. 8): squared L2 between the cross-
      and self-attention maps of UNet_s on the clean image and UNet_d on the
      perturbed image, same (t, noise) for both (Alg. 1 lines 11-24);
  (2) PGD ascent on UNet_d's conditional denoising loss (Alg. 1 lines 25-31);
  (3) Adam steps of UNet_d on the perturbed images (Alg. 1 lines 32-40).

Attention maps are read through a diffusers attention processor
(`AttentionRecorder`) that runs diffusers' own AttnProcessor and keeps each
layer's softmax probabilities while recording is on.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from typing import Any, Callable

import numpy as np
import torch

from bench import sd

from .adversarial import Surrogate, TrainConfig, autocast, pgd


# ---------------------------------------------------------- attention maps
class _Tap:
    """Stands in for an `Attention` module inside AttnProcessor: every attribute is the
    module's own, except get_attention_scores, whose result is also appended to `sink`."""

    def __init__(self, attn, sink: list[torch.Tensor]):
        self._attn, self._sink = attn, sink

    def __getattr__(self, name: str):
        return getattr(self._attn, name)

    def get_attention_scores(self, query, key, attention_mask=None):
        probs = self._attn.get_attention_scores(query, key, attention_mask)
        self._sink.append(probs)
        return probs


class AttentionRecorder:
    """A diffusers attention processor: the output is exactly AttnProcessor's (it runs it);
    the attention probabilities (batch*heads, queries, keys) go to maps["cross"] when the
    layer attends to the text (encoder_hidden_states given) and to maps["self"] otherwise."""

    def __init__(self, maps: dict[str, list[torch.Tensor]]):
        from diffusers.models.attention_processor import AttnProcessor

        self.maps, self.inner = maps, AttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        sink = self.maps["self" if encoder_hidden_states is None else "cross"]
        return self.inner(_Tap(attn, sink), hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


@contextlib.contextmanager
def recording(unet):
    """Install AttentionRecorder on every attention layer of `unet`; yields the maps dict
    (clear it between forwards). The previous processors (SDPA by default) come back on exit."""
    before = unet.attn_processors
    maps: dict[str, list[torch.Tensor]] = {"cross": [], "self": []}
    unet.set_attn_processor(AttentionRecorder(maps))
    try:
        yield maps
    finally:
        unet.set_attn_processor(before)


def attention_distance(ref: dict[str, list[torch.Tensor]], adv: dict[str, list[torch.Tensor]], batch: int) -> torch.Tensor:
    """Eq. 8: ||Mc_s - Mc_d||_2^2 + ||Ms_s - Ms_d||_2^2, summed over every attention layer
    (the paper does not restrict the layers), per image (divided by the batch size)."""
    total = None
    for kind in ("cross", "self"):
        if len(ref[kind]) != len(adv[kind]):
            raise RuntimeError(f"static and dynamic UNets recorded different {kind}-attention layers")
        for a, b in zip(ref[kind], adv[kind]):
            term = (a.float() - b.float()).pow(2).sum()
            total = term if total is None else total + term
    if total is None:
        raise RuntimeError("the UNet has no attention layers to record")
    return total / batch


def attention_loss(unet_s, unet_d, parts, x_clean, x_adv, cond, generator, maps_s, maps_d) -> torch.Tensor:
    """One Monte-Carlo draw of L_att (Alg. 1 lines 12-21): z0 = Enc(x), z0' = Enc(x + delta),
    the same t ~ randint(1, 999) and noise for both; UNet_s sees the clean latents (no
    gradient), UNet_d the perturbed ones."""
    sched = parts["scheduler"]
    with torch.no_grad():
        z0 = sd.encode_images(parts, x_clean, generator)
    z0_adv = sd.encode_images(parts, x_adv, generator)
    noise = torch.randn(z0.shape, generator=generator).to(z0.device, z0.dtype)
    t = torch.randint(1, sched.config.num_train_timesteps, (z0.shape[0],), generator=generator).to(z0.device)
    c = cond.expand(z0.shape[0], -1, -1)
    maps_s["cross"].clear(), maps_s["self"].clear(), maps_d["cross"].clear(), maps_d["self"].clear()
    with torch.no_grad():
        unet_s(sched.add_noise(z0, noise, t), t, c)
    unet_d(sched.add_noise(z0_adv, noise, t), t, c)
    return attention_distance(maps_s, maps_d, z0.shape[0])


# ------------------------------------------------------- static surrogate
def static_unet(base, parts: dict[str, Any], surrogate_images: list[np.ndarray], cfg: TrainConfig, steps: int, ctx,
                seed_offset: int = 707) -> tuple[Any, dict[str, Any]]:
    """UNet_s (Eq. 7): `steps` Adam steps of the base UNet on the clean identity images,
    no prior term, text encoder frozen. Built once per (base model, images, settings) as
    a `dladiff_static` artifact (safetensors) and loaded back from it."""
    from diffusers import UNet2DConditionModel

    digest = hashlib.sha256(b"".join(np.ascontiguousarray(im).tobytes() for im in surrogate_images)).hexdigest()[:16]
    inputs = {"base": str(base.source), "revision": base.revision, "images": digest, "n": len(surrogate_images),
              "shape": list(surrogate_images[0].shape), "steps": steps, "lr": cfg.lr, "prompt": cfg.instance_prompt,
              "batch": cfg.batch_size, "seed": ctx.seed, "mixed_precision": cfg.mixed_precision, "version": 1}

    def build(out):
        local = dict(parts)
        local["unet"] = copy.deepcopy(parts["unet"])
        sur = Surrogate(local, cfg, None, ctx.device)
        with ctx.progress("dladiff static surrogate", steps) as advance:
            trace = sur.train(sd.to_tensor(surrogate_images, ctx.device), steps, ctx.generator(seed_offset),
                              on_step=lambda s, l: advance())
        local["unet"].save_pretrained(out / "unet", safe_serialization=True)
        return {"loss_trace": trace, "optimizer": sur.optimizer_name}

    art = ctx.cached("dladiff_static", inputs, build)
    unet = UNet2DConditionModel.from_pretrained(art.path / "unet").to(ctx.device)
    unet.requires_grad_(False)
    unet.eval()
    return unet, {"key": art.key, "loss_trace": art.meta.get("loss_trace", [])}


# ---------------------------------------------------------------- ADFT
def adft(
    dyn: Surrogate,
    unet_s,
    x: torch.Tensor,
    eps_px: float,
    alpha_px: float,
    epochs: int,
    att_steps: int,
    cond_steps: int,
    train_steps: int,
    generator: torch.Generator,
    advance: Callable[[], None] = lambda: None,
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Algorithm 1 lines 10-41: `epochs` x (att_steps PGD on L_att, cond_steps PGD on
    L_cond(UNet_d), train_steps Adam steps of UNet_d on x + delta). delta starts at 0 and
    each PGD call warm-starts from the current perturbation; the ball stays centred on x."""
    parts, mode = dyn.parts, dyn.cfg.mixed_precision
    with torch.no_grad(), autocast(dyn.device, mode):
        cond = sd.encode_prompts(parts, [dyn.cfg.instance_prompt])
    adv = x.clone()
    traces: dict[str, list[float]] = {"attention": [], "denoising": [], "dynamic_train": []}
    for _ in range(epochs):
        if att_steps:
            with recording(unet_s) as maps_s, recording(parts["unet"]) as maps_d:
                def att_fn(x_adv, step):
                    with autocast(dyn.device, mode):
                        return attention_loss(unet_s, parts["unet"], parts, x, x_adv, cond, generator, maps_s, maps_d)

                adv = pgd(x, att_fn, eps_px, alpha_px, att_steps, generator=generator, init=adv,
                          freeze=dyn.all_modules + [unet_s], on_step=lambda s, l: traces["attention"].append(round(l, 6)))
        if cond_steps:
            adv = dyn.attack(x, eps_px, alpha_px, cond_steps, generator, init=adv,
                             on_step=lambda s, l: traces["denoising"].append(round(l, 6)))
        traces["dynamic_train"] += dyn.train(adv, train_steps, generator)
        advance()
    return adv, traces
