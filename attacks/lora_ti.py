"""LoRA + textual inversion (RID's default personalization, seed 000 "Personalization
methods"; code Guohanzhong/RID, tuning-based-personalization/train_sd_lora_dreambooth_token.py
with config/sd_lora.py): low-rank adapters on every UNet attention projection and one new
token `<new1>` trained jointly with the DreamBooth loss (prior preservation on). The result
is saved in the formats diffusers loads back (`load_lora_weights`, `load_textual_inversion`)
and generation goes through those loaders, so the artifact is what a real attacker would
share and reuse."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from bench import sd
from bench.class_images import class_images
from bench.errors import BenchError
from bench.models import load_sd
from bench.params import Needs, Param
from bench.plugin import Attack

from .training import autocast, optimizer, prior_preserving_loss

RID = "RID tuning-based-personalization/config/sd_lora.py (Guohanzhong/RID; methods.md \"RID's personalization configs\")"
RID_TRAIN = "RID tuning-based-personalization/train_sd_lora_dreambooth_token.py"
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default weight name for load_lora_weights
TI_FILE = "learned_embeds.safetensors"  # diffusers textual_inversion.py's file name
META_FILE = "lora_ti.json"
# RID wraps every attention processor (self- and cross-attention) in LoRAAttnProcessor, which
# adds a LoRALinearLayer to to_q, to_k, to_v and to_out[0] (RID_TRAIN, unet_lora_attn_procs).
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


class LoraTI(Attack):
    name = "lora-ti"
    links = {"paper": "https://arxiv.org/abs/2106.09685 + https://arxiv.org/abs/2208.01618", "code": "https://github.com/Guohanzhong/RID"}
    aliases = ("lora",)
    summary = "LoRA on the UNet attention + a textual-inversion token <new1>, trained jointly (RID's setup)."
    version = "1"
    params = [
        Param("steps", int, 221, tiny=40, source=RID + ": max_train_steps 221; tiny: 40", ge=1),
        Param("lr", float, 3e-4, tiny=2e-3, source=RID + ": learning_rate 3e-4 (constant, LoRA and token alike); "
              "tiny: 2e-3 so 40 steps move a 64 px model", gt=0),
        Param("rank", int, 32, source=RID + ": lora_rank 32", ge=1),
        Param("lora_alpha", float, None, source=RID_TRAIN + ": LoRAAttnProcessor without network_alpha, i.e. "
              "scale 1 = alpha equal to rank", gt=0, help="None: equal to rank (LoRA scale alpha/rank = 1)"),
        Param("batch_size", int, 1, source=RID + ": train_batch_size 1", ge=1),
        Param("token", str, "<new1>", source=RID + ": modifier_token <new1>"),
        Param("initializer_token", str, "ktn", tiny="person",
              source=RID + ": initializer_token ktn+pll+ucd (the first serves the one token); tiny: 'person', "
              "a single token of the zoo tokenizer (ktn is three there)",
              help="the token row starts as this word's embedding; must be one token"),
        Param("instance_prompt", str, "photo of a <new1> person", source=RID + ": instance_prompt",
              help="must contain `token`"),
        Param("class_prompt", str, "photo of a person", source=RID + ": class_prompt"),
        Param("prior_weight", float, 1.0, source=RID + ": with_prior_preservation True, prior_loss_weight 1.0", ge=0,
              help="0 turns prior preservation off"),
        Param("num_class_images", int, 100, tiny=4, source=RID + ": num_class_images 100; tiny: 4", ge=0),
        Param("class_steps", int, 50, tiny=5, source=RID_TRAIN + ": class images from StableDiffusionPipeline's "
              "default 50 steps; tiny: 5", ge=1),
        Param("max_grad_norm", float, 1.0, source=RID + ": max_grad_norm 1", gt=0),
        Param("mixed_precision", str, "no", paper="bf16", choices=("no", "bf16", "fp16"),
              source=RID + ": mixed precision (fp16 there); bf16 needs no loss scaling. CUDA only"),
        Param("gradient_checkpointing", bool, False, source=RID + ": gradient_checkpointing False",
              help="trade compute for memory (GPU users)"),
        Param("use_8bit_adam", bool, False, source="diffusers train_dreambooth_lora.py --use_8bit_adam",
              help="bitsandbytes AdamW8bit when installed"),
    ]
    needs = Needs(weights=("base model (SD)",), gpu_memory_gb={"paper": 12.0})

    def check(self) -> None:
        if self.p.token not in self.p.instance_prompt.split():
            raise BenchError(f"attack.lora-ti: instance_prompt {self.p.instance_prompt!r} must contain the token {self.p.token!r}")

    # ------------------------------------------------------------ training
    def class_images(self, base, ctx) -> list[np.ndarray]:
        """Prior-preservation images, cached per base model + prompt + count (shared artifact)."""
        if self.p.prior_weight == 0:
            return []
        return class_images(base, ctx, self.p.class_prompt, self.p.num_class_images, self.p.class_steps)

    def add_token(self, parts: dict) -> int:
        """Add the placeholder token and start its embedding row from the initializer word
        (textual inversion, Gal et al. 2023, as RID_TRAIN does). Returns its id."""
        tok, te = parts["tokenizer"], parts["text_encoder"]
        init_ids = tok.encode(self.p.initializer_token, add_special_tokens=False)
        if len(init_ids) != 1:
            raise BenchError(f"attack.lora-ti: initializer_token {self.p.initializer_token!r} is {len(init_ids)} tokens "
                             "for this tokenizer; pass a single-token word (e.g. person)")
        if tok.add_tokens(self.p.token) == 0:
            raise BenchError(f"attack.lora-ti: the tokenizer already has {self.p.token!r}; pass another token")
        token_id = tok.convert_tokens_to_ids(self.p.token)
        te.resize_token_embeddings(len(tok), mean_resizing=False)  # the new row is overwritten just below
        emb = te.get_input_embeddings().weight
        emb.data[token_id] = emb.data[init_ids[0]].clone()
        return token_id

    def add_lora(self, unet, ctx) -> None:
        """peft LoRA on the attention projections; 'gaussian' init = A ~ N(0, 1/rank), B = 0,
        the init of RID's LoRALinearLayer (so the adapted UNet starts as the base UNet)."""
        import torch
        from peft import LoraConfig

        alpha = self.p.lora_alpha if self.p.lora_alpha is not None else self.p.rank
        config = LoraConfig(r=self.p.rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(TARGETS))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed + 303)  # the A matrices' init is part of the seed's outcome
            unet.add_adapter(config)

    def personalize(self, images, base, recipe, ctx, out_dir):
        import torch

        instance_prompt = self.p.instance_prompt + recipe.instance_suffix
        class_prompt = self.p.class_prompt + recipe.class_suffix
        parts = load_sd(base, ctx.device)
        unet, te = parts["unet"], parts["text_encoder"]
        token_id = self.add_token(parts)  # checks the initializer before any compute
        self.add_lora(unet, ctx)
        class_imgs = self.class_images(base, ctx)
        emb = te.get_input_embeddings().weight
        emb.requires_grad_(True)
        original = emb.detach().clone()
        if self.p.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            (getattr(te, "activation_checkpointing_enable", None) or te.gradient_checkpointing_enable)()  # renamed in transformers 5
        lora_params = [p for p in unet.parameters() if p.requires_grad]
        params = lora_params + [emb]
        opt = optimizer(params, self.p.lr, self.p.use_8bit_adam)  # AdamW defaults = RID's betas/eps/decay 1e-2
        scaler = torch.amp.GradScaler("cuda") if self.p.mixed_precision == "fp16" and ctx.device.startswith("cuda") else None
        x_inst = sd.to_tensor(images, ctx.device)
        x_cls = sd.to_tensor(class_imgs, ctx.device) if class_imgs else None
        g = ctx.generator(404)
        losses = []
        with ctx.progress("lora-ti", self.p.steps) as advance:
            for _ in range(self.p.steps):
                with autocast(ctx.device, self.p.mixed_precision):
                    loss = prior_preserving_loss(parts, x_inst, x_cls, instance_prompt, class_prompt, self.p.batch_size,
                                                 self.p.prior_weight, g)
                opt.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler:
                    scaler.unscale_(opt)
                _keep_row(emb.grad, token_id, emb.grad.new_zeros(()))  # only the new token learns (RID_TRAIN zeroes the other rows' grads)
                torch.nn.utils.clip_grad_norm_(params, self.p.max_grad_norm)
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                with torch.no_grad():  # AdamW's decoupled weight decay would still shrink the other rows
                    _keep_row(emb, token_id, original)
                losses.append(round(float(loss.detach()), 5))
                advance()
        self.save(unet, emb.detach()[token_id], out_dir)
        ctx.notes["attack"] = {
            "instance_prompt": instance_prompt, "class_prompt": class_prompt, "class_images": len(class_imgs),
            "token": self.p.token, "lora_parameters": sum(p.numel() for p in lora_params),
            "loss_first": losses[0], "loss_last": losses[-1], "loss_trace": losses,
        }

    def save(self, unet, token_embedding, out_dir: Path) -> None:
        """LoRA via diffusers' save_lora_weights (peft state dict in diffusers naming, with
        the LoraConfig as metadata so alpha round-trips); the token as {token: (1, dim)},
        the layout of diffusers' textual_inversion.py."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        lora = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        StableDiffusionPipeline.save_lora_weights(
            out_dir, unet_lora_layers=lora, weight_name=LORA_FILE, safe_serialization=True,
            unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
        )
        save_file({self.p.token: token_embedding.float().reshape(1, -1).contiguous().cpu()}, str(out_dir / TI_FILE))
        (out_dir / META_FILE).write_text(json.dumps({"token": self.p.token, "rank": self.p.rank,
                                                     "lora_alpha": unet.peft_config["default"].lora_alpha}))

    # ----------------------------------------------------------- generation
    def load_personalized(self, personalized: Path, base, ctx) -> dict:
        """Base model + the saved adapters, loaded through diffusers' own loaders
        (load_lora_weights, load_textual_inversion), never from in-memory modules."""
        missing = [f for f in (LORA_FILE, TI_FILE, META_FILE) if not (personalized / f).is_file()]
        if missing:
            raise BenchError(f"attack.lora-ti: {personalized} lacks {', '.join(missing)}; rerun personalize")
        token = json.loads((personalized / META_FILE).read_text())["token"]
        parts = load_sd(base, ctx.device)
        pipe = sd.pipeline(parts, "ddim")  # only a holder for the loader mixins; they adapt parts in place
        with _quiet_diffusers():
            pipe.load_lora_weights(str(personalized), weight_name=LORA_FILE)
            pipe.load_textual_inversion(str(personalized / TI_FILE), token=token)
        parts.update(unet=pipe.unet, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, token=token)
        return parts

    def generate(self, personalized, base, gen, recipe, ctx):
        parts = self.load_personalized(personalized, base, ctx)
        pipe = sd.pipeline(parts, gen.sampler)
        negative = ", ".join(x for x in (gen.negative_prompt, recipe.negative_prompt) if x)
        ctx.notes["attack"] = {"negative_prompt": negative, "sampler": gen.sampler, "steps": gen.steps,
                               "guidance_scale": gen.guidance_scale, "identifier": parts["token"]}
        return gen.run(ctx, lambda prompt, seed: sd.generate(pipe, [prompt], [seed], gen.steps, gen.guidance_scale, negative,
                                                             gen.resolution)[0], recipe.sample_suffix, parts["token"])


def _keep_row(matrix, row: int, others) -> None:
    """Set every row of `matrix` but `row` from `others` (a same-shaped tensor or a scalar),
    in place and without a boolean-indexed copy of a 49k x 1024 embedding per step."""
    kept = matrix[row].clone()
    matrix.copy_(others.expand_as(matrix) if others.dim() == 0 else others)
    matrix[row] = kept


@contextlib.contextmanager
def _quiet_diffusers():
    """The loaders log at INFO/WARNING level (e.g. 'no text encoder LoRA'); keep runs quiet."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
