"""Shared adversarial machinery for the optimisation-based defenses (AdvDM,
Anti-DreamBooth FSMG / ASPL / E-ASPL, MetaCloak). Each method file keeps only
what makes the method different; everything here is tested once
(tests/test_defenses_image.py).

Units. Budgets come in 0-255 pixel units and are converted once here: the
models see images in [-1, 1], where one pixel level is 2/255, so eps_px pixel
levels are eps_px / 127.5 in model space (methods.md, "Units").

Contents
- `pgd`: sign-gradient ascent, L-inf projection, random or warm start, with the
  model weights frozen while it runs (the references leave requires_grad on, so
  autograd keeps what weight gradients would need; we do not).
- `EOT`, `GaussianBlur`, `HFlip`: differentiable random transformations drawn
  afresh at every PGD step (expectation over transformations).
- `denoising_objective` (+ `target_shift`): the LDM loss at a random (t, noise),
  minus the target-shift term of the targeted variants; `expectation` averages
  it over Monte-Carlo (t, noise) draws and EOT draws.
- `Surrogate`: a DreamBooth-style surrogate (UNet + optionally the text encoder,
  prior preservation on the shared class images) with snapshot / restore for
  the clone-train-restore loops. Master weights stay float32; mixed precision is
  autocast only (the references store bfloat16 weights, see docs/defenses.md).
- GPU options (autocast, gradient checkpointing, SDPA, 8-bit AdamW) and the
  parameter groups the plugins share.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bench import sd
from bench.errors import BenchError
from bench.params import Param


# ------------------------------------------------------------------ units
def px_to_model(v: float) -> float:
    """0-255 pixel units -> [-1, 1] model-space units."""
    return v / 127.5


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the L-inf ball of radius eps (model units) around x, then onto [-1, 1]."""
    return (x + (x_adv - x).clamp(-eps, eps)).clamp(-1, 1)


# -------------------------------------------------------------------- PGD
@contextlib.contextmanager
def frozen(*modules: torch.nn.Module):
    """requires_grad off for every parameter while inside; the old flags come back after."""
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def pgd(
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, int], torch.Tensor],
    eps_px: float,
    alpha_px: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
    init: torch.Tensor | None = None,
    freeze: Sequence[torch.nn.Module] = (),
    start: int = 0,
    on_state: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Sign-gradient ascent on loss_fn(x_adv, step), projected onto the L-inf ball of
    radius eps around the clean x (and onto [-1, 1]). x is in [-1, 1].

    init: warm start (ASPL / MetaCloak continue from the previous perturbation; the
    ball stays centred on the clean x). freeze: modules whose weights need no
    gradient during the attack. start / on_state(steps_done, x_adv): resume a killed run
    from a saved x_adv (passed as init) and save progress (Context.save_progress)."""
    eps, alpha = px_to_model(eps_px), px_to_model(alpha_px)
    x = x.detach()
    if init is not None:
        x_adv = project(init.detach().to(x), x, eps)
    else:
        delta = torch.zeros_like(x)
        if random_start:
            delta = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * eps
        x_adv = project(x + delta, x, eps)
    x_adv = x_adv.detach()
    with frozen(*freeze):
        for step in range(start, steps):
            x_adv.requires_grad_(True)
            loss = loss_fn(x_adv, step)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = project(x_adv + alpha * grad.sign(), x, eps)
            x_adv = x_adv.detach()
            if on_step:
                on_step(step, float(loss.detach()))
            if on_state:
                on_state(step + 1, x_adv)
    return x_adv


# -------------------------------------------------------------------- EOT
Transform = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


class GaussianBlur:
    """torchvision.transforms.GaussianBlur semantics (MetaCloak's EOT): a k x k Gaussian,
    sigma ~ U(sigma_min, sigma_max) per draw (torchvision's default range 0.1-2.0),
    reflect padding; applied with probability p."""

    def __init__(self, kernel_size: int = 7, sigma: tuple[float, float] = (0.1, 2.0), p: float = 1.0):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise BenchError(f"Gaussian blur kernel must be odd and >= 1, got {kernel_size}")
        self.kernel_size, self.sigma, self.p = kernel_size, sigma, p

    def sample(self, generator: torch.Generator | None = None) -> Transform:
        if self.p < 1.0 and _uniform(generator) >= self.p:
            return _identity
        lo, hi = self.sigma
        s = lo + (hi - lo) * _uniform(generator)
        k = self.kernel_size
        from torchvision.transforms.v2.functional import gaussian_blur

        return lambda x: gaussian_blur(x, [k, k], [s, s])


class HFlip:
    """Horizontal flip with probability p (torchvision.transforms.RandomHorizontalFlip)."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def sample(self, generator: torch.Generator | None = None) -> Transform:
        return (lambda x: torch.flip(x, dims=(-1,))) if _uniform(generator) < self.p else _identity


class EOT:
    """A list of random differentiable transforms, composed in order; `sample` draws one
    realisation (one draw per call for the whole batch, as torchvision's Compose on a
    batch tensor does in MetaCloak's robust_pgd_worker.py)."""

    def __init__(self, transforms: Iterable[Any]):
        self.transforms = list(transforms)

    def sample(self, generator: torch.Generator | None = None) -> Transform:
        fns = [t.sample(generator) for t in self.transforms]

        def apply(x: torch.Tensor) -> torch.Tensor:
            for fn in fns:
                x = fn(x)
            return x

        return apply


# -------------------------------------------------------------- objectives
def denoising_objective(
    parts: dict[str, Any],
    x: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator | None = None,
    target_latents: torch.Tensor | None = None,
    target_weight: float = 1.0,
) -> torch.Tensor:
    """||eps - eps_theta(z_t, t, c)||^2 at a random (t, noise), minus target_weight x the
    target-shift term when target latents are given. Random draws in the same order as
    bench.sd.denoising_loss, so the untargeted value equals it for the same generator."""
    unet, sched = parts["unet"], parts["scheduler"]
    latents = sd.encode_images(parts, x, generator)
    noise = torch.randn(latents.shape, generator=generator, device="cpu").to(latents.device, latents.dtype)
    t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=generator).to(latents.device)
    noisy = sched.add_noise(latents, noise, t)
    if cond.shape[0] != latents.shape[0]:
        cond = cond.expand(latents.shape[0], -1, -1)
    pred = unet(noisy, t, cond).sample
    target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(latents, noise, t)
    loss = F.mse_loss(pred.float(), target.float())
    if target_latents is not None and target_weight:
        loss = loss - target_weight * target_shift(sched, pred, t, noisy, noise, target_latents, generator)
    return loss


def target_shift(sched, pred, t, noisy, noise, target_latents, generator=None) -> torch.Tensor:
    """Anti-DreamBooth's target-shift term (attacks/aspl.py, pgd_attack): MSE between the
    predicted x_{t-1} (one DDPM step from the prediction) and the target image's latents
    noised to t-1 with the same noise. t-1 is clamped at 0 (the reference indexes t = -1,
    i.e. the last timestep, when t = 0)."""
    prev = torch.cat(
        [sched.step(pred[i : i + 1], int(t[i]), noisy[i : i + 1], generator=generator).prev_sample for i in range(len(pred))]
    )
    tl = target_latents.to(prev.device, prev.dtype)
    if tl.shape[0] != prev.shape[0]:
        tl = tl.expand(prev.shape[0], -1, -1, -1)
    goal = sched.add_noise(tl, noise.to(tl.dtype), (t - 1).clamp(min=0))
    return F.mse_loss(prev.float(), goal.float())


def expectation(
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    samples: int = 1,
    eot: EOT | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean of loss_of(T(x)) over `samples` draws; each draw samples a fresh transform T
    (when eot is given) and, inside loss_of, a fresh (t, noise)."""
    vals = []
    for _ in range(samples):
        xt = eot.sample(generator)(x) if eot is not None else x
        vals.append(loss_of(xt))
    return torch.stack(vals).mean()


# -------------------------------------------------------------- targets
def target_pattern(size: int) -> np.ndarray:
    """Built-in synthetic target for the targeted variants: a high-contrast checkerboard
    crossed with concentric rings (the reference's data/target.jpg is not shipped here;
    pass its path as `target` to use it)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    checker = ((np.floor(xx * 8) + np.floor(yy * 8)) % 2).astype(np.float64)
    rings = (np.sin(2 * np.pi * 6 * np.hypot(xx - 0.5, yy - 0.5)) > 0).astype(np.float64)
    img = np.stack([checker, rings, 1.0 - checker * rings], axis=-1)
    return (img * 255).astype(np.uint8)


def check_target(spec: str) -> None:
    """'' (untargeted), 'pattern' (built-in) or an image file; checked before any compute."""
    if spec and spec != "pattern" and not Path(spec).expanduser().is_file():
        raise BenchError(f"target {spec!r}: not an image file; use '' (untargeted), 'pattern' or a path to an image")


def target_image(spec: str, resolution: int) -> np.ndarray | None:
    """The target as uint8 RGB at the working resolution (PIL resize as the reference does)."""
    if not spec:
        return None
    if spec == "pattern":
        return target_pattern(resolution)
    from PIL import Image

    from bench.images import load_image

    img = load_image(Path(spec).expanduser())
    return np.asarray(Image.fromarray(img).resize((resolution, resolution), Image.BICUBIC))


def to_images(clean: list[np.ndarray], x_adv: torch.Tensor, eps_px: float) -> list[np.ndarray]:
    """[-1, 1] tensor -> uint8 images whose integer distance to clean is <= floor(eps)."""
    from bench.images import quantize_perturbed

    adv01 = ((x_adv.detach().float().cpu() + 1) / 2).permute(0, 2, 3, 1).numpy().astype(np.float64)
    return [quantize_perturbed(c, a, eps_px) for c, a in zip(clean, adv01)]


# ------------------------------------------------------------ GPU options
def autocast(device: str, mode: str):
    """bf16/fp16 autocast on CUDA; a no-op on CPU or with mode 'no'."""
    if mode == "no" or not str(device).startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if mode == "bf16" else torch.float16)


def apply_memory_options(parts: dict[str, Any], gradient_checkpointing: bool, sdpa: bool) -> None:
    """Gradient checkpointing (UNet, VAE, text encoder: less activation memory, same
    results, also on CPU) and the attention kernel (SDPA = diffusers' default; False =
    eager attention)."""
    if gradient_checkpointing:
        parts["unet"].enable_gradient_checkpointing()
        parts["vae"].enable_gradient_checkpointing()
        te = parts["text_encoder"]
        # transformers 5 renamed gradient_checkpointing_enable
        enable = getattr(te, "activation_checkpointing_enable", None) or te.gradient_checkpointing_enable
        enable()
    if not sdpa:
        from diffusers.models.attention_processor import AttnProcessor

        parts["unet"].set_attn_processor(AttnProcessor())
        parts["vae"].set_attn_processor(AttnProcessor())


def make_optimizer(params, lr: float, weight_decay: float, eight_bit: bool, device: str):
    """AdamW with the references' settings (betas 0.9/0.999, eps 1e-8); bitsandbytes'
    AdamW8bit when asked for, installed and on CUDA. Returns (optimizer, name)."""
    kw = dict(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    if eight_bit and str(device).startswith("cuda"):
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, **kw), "AdamW8bit"
        except ImportError:
            pass
    return torch.optim.AdamW(params, **kw), "AdamW"


# -------------------------------------------------------------- surrogate
@dataclass
class TrainConfig:
    """How a surrogate is fine-tuned (DreamBooth with prior preservation).

    order 'cyclic': step s uses instance (s*b + j) mod N and class image (s*b + j) mod M,
    restarting at 0 on every call (Anti-DreamBooth attacks/aspl.py train_one_epoch).
    order 'shuffled': the same indices taken from a random permutation of
    range(max(N, M)) (a shuffled DataLoader, diffusers train_dreambooth.py)."""

    lr: float
    instance_prompt: str = "a photo of sks person"
    class_prompt: str = "a photo of person"
    prior_weight: float = 1.0
    train_text_encoder: bool = True
    batch_size: int = 1
    order: str = "cyclic"
    max_grad_norm: float = 1.0
    weight_decay: float = 1e-2
    mixed_precision: str = "no"
    use_8bit_adam: bool = False


class Surrogate:
    """A trainable copy of the base model's UNet (+ text encoder) in float32, with the
    frozen VAE, tokenizer and noise schedule of the same base model."""

    def __init__(self, parts: dict[str, Any], cfg: TrainConfig, class_images: torch.Tensor | None, device: str = "cpu"):
        self.parts, self.cfg, self.device = parts, cfg, device
        self.class_x = class_images if class_images is not None and len(class_images) and cfg.prior_weight > 0 else None
        self.modules: list[torch.nn.Module] = [parts["unet"]] + ([parts["text_encoder"]] if cfg.train_text_encoder else [])
        self.optimizer_name = ""

    @classmethod
    def load(cls, base, cfg: TrainConfig, class_images: list[np.ndarray], device: str = "cpu",
             gradient_checkpointing: bool = False, sdpa: bool = True) -> "Surrogate":
        from bench.models import load_sd

        parts = load_sd(base, device)  # float32 master weights, requires_grad off
        apply_memory_options(parts, gradient_checkpointing, sdpa)
        cls_x = sd.to_tensor(class_images, device) if class_images else None
        return cls(parts, cfg, cls_x, device)

    @property
    def all_modules(self) -> list[torch.nn.Module]:
        return [self.parts["unet"], self.parts["text_encoder"], self.parts["vae"]]

    # ----------------------------------------------------- clone / restore
    def snapshot(self) -> list[dict[str, torch.Tensor]]:
        """A detached copy of the trainable weights (the references deep-copy the model)."""
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.modules]

    def restore(self, snap: list[dict[str, torch.Tensor]]) -> None:
        for m, state in zip(self.modules, snap):
            m.load_state_dict(state)

    @contextlib.contextmanager
    def clone(self):
        """Train / attack a clone: the weights are restored on exit."""
        snap = self.snapshot()
        try:
            yield self
        finally:
            self.restore(snap)

    # ------------------------------------------------------------- training
    def _indices(self, steps: int, n: int, generator) -> list[list[int]]:
        b = self.cfg.batch_size
        length = max(n, len(self.class_x) if self.class_x is not None else 0)
        flat: list[int] = []
        while len(flat) < steps * b:
            if self.cfg.order == "shuffled":
                flat += torch.randperm(length, generator=generator).tolist()
            else:
                flat += list(range(length))
        return [flat[s * b : (s + 1) * b] for s in range(steps)]

    def train(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None,
              on_step: Callable[[int, float], None] | None = None,
              before_step: Callable[[int], None] | None = None) -> list[float]:
        """`steps` DreamBooth steps on instance images x ([-1, 1]) with a fresh optimizer, as
        every reference does per call. before_step(s) runs before step s (MetaCloak takes
        its pool snapshots there). Returns the loss trace."""
        cfg, parts = self.cfg, self.parts
        if steps <= 0:
            return []
        for m in self.modules:
            m.requires_grad_(True)
            m.train()
        params = [p for m in self.modules for p in m.parameters()]
        opt, self.optimizer_name = make_optimizer(params, cfg.lr, cfg.weight_decay, cfg.use_8bit_adam, self.device)
        scaler = torch.amp.GradScaler("cuda") if cfg.mixed_precision == "fp16" and str(self.device).startswith("cuda") else None
        fixed_inst = fixed_cls = None
        if not cfg.train_text_encoder:
            with torch.no_grad():
                fixed_inst = sd.encode_prompts(parts, [cfg.instance_prompt])
                fixed_cls = sd.encode_prompts(parts, [cfg.class_prompt])
        n, losses = len(x), []
        for s, idx in enumerate(self._indices(steps, n, generator)):
            if before_step:
                before_step(s)
            inst = x[[i % n for i in idx]]
            cls_batch = self.class_x[[i % len(self.class_x) for i in idx]] if self.class_x is not None else None
            with autocast(self.device, cfg.mixed_precision):
                ic = fixed_inst if fixed_inst is not None else sd.encode_prompts(parts, [cfg.instance_prompt])
                cc = None
                if cls_batch is not None:
                    cc = fixed_cls if fixed_cls is not None else sd.encode_prompts(parts, [cfg.class_prompt])
                loss = sd.dreambooth_loss(parts, inst, ic, cls_batch, cc, cfg.prior_weight, generator)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            losses.append(round(float(loss.detach()), 5))
            if on_step:
                on_step(s, losses[-1])
        opt.zero_grad(set_to_none=True)
        for m in self.modules:
            m.requires_grad_(False)
            m.eval()
        return losses

    # --------------------------------------------------------------- attack
    def encode_target(self, image: np.ndarray | None, generator=None) -> torch.Tensor | None:
        """Target image -> scaled latents (one sample of the posterior, as the reference)."""
        if image is None:
            return None
        with torch.no_grad():
            return sd.encode_images(self.parts, sd.to_tensor([image], self.device), generator)

    def attack(
        self,
        x: torch.Tensor,
        eps_px: float,
        alpha_px: float,
        steps: int,
        generator: torch.Generator | None = None,
        init: torch.Tensor | None = None,
        mc_samples: int = 1,
        eot: EOT | None = None,
        target_latents: torch.Tensor | None = None,
        target_weight: float = 1.0,
        random_start: bool = False,
        on_step: Callable[[int, float], None] | None = None,
    ) -> torch.Tensor:
        """PGD on the denoising objective of this surrogate (instance prompt), all images in
        one batch, weights frozen, expectation over mc (t, noise) draws and EOT draws."""
        with torch.no_grad(), autocast(self.device, self.cfg.mixed_precision):
            cond = sd.encode_prompts(self.parts, [self.cfg.instance_prompt])

        def loss_fn(x_adv: torch.Tensor, step: int) -> torch.Tensor:
            with autocast(self.device, self.cfg.mixed_precision):
                return expectation(
                    lambda xt: denoising_objective(self.parts, xt, cond, generator, target_latents, target_weight),
                    x_adv, mc_samples, eot, generator,
                )

        return pgd(x, loss_fn, eps_px, alpha_px, steps, random_start, generator, on_step, init, freeze=self.all_modules)

    def to(self, device: str) -> "Surrogate":
        """Move the models (E-ASPL parks the inactive surrogates on the CPU when on CUDA)."""
        for key in ("unet", "text_encoder", "vae"):
            self.parts[key].to(device)
        return self


# ------------------------------------------------------- shared parameters
def surrogate_params(src: str, lr_paper: float, lr_tiny: float, order: str) -> list[Param]:
    """DreamBooth-surrogate parameters shared by anti-db, aspl and metacloak (`src` names
    the reference that sets the paper defaults)."""
    return [
        Param("lr", float, lr_paper, tiny=lr_tiny, source=f"{src}: --learning_rate={lr_paper:g}; tiny: {lr_tiny:g} so few steps move a tiny model",
              help="surrogate AdamW learning rate", gt=0),
        Param("train_text_encoder", bool, True, source=f"{src}: --train_text_encoder", help="fine-tune the text encoder with the UNet"),
        Param("instance_prompt", str, "a photo of sks person", source=f"{src}: --instance_prompt", help="instance prompt (surrogate training and PGD)"),
        Param("class_prompt", str, "a photo of person", source=f"{src}: --class_prompt", help="class prompt (prior preservation)"),
        Param("prior_weight", float, 1.0, source=f"{src}: --prior_loss_weight=1.0", help="prior-preservation loss weight (0: off)", ge=0),
        Param("num_class_images", int, 200, tiny=4, source=f"{src}: --num_class_images=200; tiny: 4 (shared with the dreambooth attack)",
              help="class images for prior preservation", ge=0),
        Param("class_steps", int, 50, tiny=5, source="diffusers pipeline default of 50 sampling steps; tiny: 5 (shared with the dreambooth attack)",
              help="sampler steps per class image", ge=1),
        Param("order", str, order, choices=("cyclic", "shuffled"), source=f"{src} (see TrainConfig)",
              help="which instance/class images each surrogate step uses"),
        Param("max_grad_norm", float, 1.0, source=f"{src}: clip_grad_norm_(..., 1.0)", help="gradient clipping", gt=0),
    ]


def gpu_params(src: str, mixed_paper: str) -> list[Param]:
    """Options a GPU user needs; on CPU autocast and 8-bit Adam are no-ops."""
    return [
        Param("mixed_precision", str, "no", paper=mixed_paper, choices=("no", "bf16", "fp16"),
              source=f"{src}: mixed precision {mixed_paper}; autocast on CUDA only, master weights stay float32",
              help="autocast dtype on CUDA (no-op on CPU)"),
        Param("gradient_checkpointing", bool, False,
              source="diffusers train_dreambooth.py --gradient_checkpointing (off in the references' scripts)",
              help="recompute activations in backward: less memory, same results"),
        Param("sdpa", bool, True,
              source="references: --enable_xformers_memory_efficient_attention; PyTorch SDPA is diffusers' built-in equivalent",
              help="scaled-dot-product attention (diffusers default); false = eager attention"),
        Param("use_8bit_adam", bool, False, source="diffusers train_dreambooth.py --use_8bit_adam (off in the references' scripts)",
              help="bitsandbytes AdamW8bit for the surrogate when installed and on CUDA"),
    ]


def target_params(src: str) -> list[Param]:
    return [
        Param("target", str, "", source=f"{src}: --target_image_path (targeted variant)",
              help="'' untargeted, 'pattern' built-in synthetic target, or an image path"),
        Param("target_weight", float, 1.0, source=f"{src}: loss - mse(x_t-1 pred, target x_t-1)", help="target-shift term weight", ge=0),
    ]


def train_config(p, batch_size: int = 1) -> TrainConfig:
    """TrainConfig from a plugin's resolved parameters (surrogate_params + gpu_params)."""
    return TrainConfig(
        lr=p.lr, instance_prompt=p.instance_prompt, class_prompt=p.class_prompt, prior_weight=p.prior_weight,
        train_text_encoder=p.train_text_encoder, batch_size=batch_size, order=p.order, max_grad_norm=p.max_grad_norm,
        mixed_precision=p.mixed_precision, use_8bit_adam=p.use_8bit_adam,
    )


def load_surrogate(p, base, ctx, batch_size: int = 1) -> Surrogate:
    """The base model as a surrogate, with the shared (cached) class images."""
    from bench.class_images import class_images

    cls = class_images(base, ctx, p.class_prompt, p.num_class_images, p.class_steps) if p.prior_weight > 0 else []
    return Surrogate.load(base, train_config(p, batch_size), cls, ctx.device, p.gradient_checkpointing, p.sdpa)
