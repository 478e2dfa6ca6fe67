"""MetaCloak (Liu et al., CVPR 2024): perturbations learned against a meta-learned
pool of surrogates, robust to transformations.

1. Pool: fine-tune a DreamBooth surrogate `total_train_steps` steps on the clean
   images to protect, keeping a snapshot before step 0 and before every step s
   with (s + 1) % interval == 0 (6 snapshots at the paper settings).
2. Repeat `total_trail_num` times, for every snapshot: load it, then
   interval // advance_steps times: look ahead `unroll_steps` surrogate steps on
   the current perturbed images (on a clone), run `pgd_steps` PGD steps against
   the unrolled clone maximising the denoising error under EOT (Gaussian blur
   k=7, sigma ~ U(0.1, 2); horizontal flip p=0.5), then advance the surrogate
   `advance_steps` steps on the perturbed images.

Reference: liuyixin-louis/MetaCloak, robust_facecloak/attacks/algs/metacloak.py,
attacks/worker/robust_pgd_worker.py, script/methods_config.sh and
script/sub/gen/metacloak.sh. Differences from the released code: docs/defenses.md."""

from __future__ import annotations

import contextlib

from bench import sd
from bench.errors import BenchError
from bench.params import Needs, Param
from bench.plugin import ImageDefense

from .adversarial import EOT, GaussianBlur, HFlip, gpu_params, load_surrogate, surrogate_params, to_images

CFG = "MetaCloak script/methods_config.sh"
GEN = "MetaCloak script/sub/gen/metacloak.sh"


class MetaCloak(ImageDefense):
    name = "metacloak"
    links = {"paper": "https://arxiv.org/abs/2311.13127", "code": "https://github.com/liuyixin-louis/MetaCloak"}
    aliases = ("meta-cloak",)
    summary = "PGD against a meta-learned pool of DreamBooth surrogates, EOT over blur + flip."
    version = "1"
    params = [
        Param("eps", float, 11.0, source="MetaCloak script/gen_and_eval.sh: r=11 (0-255 units; released PNGs measure 11)",
              help="L-inf budget", gt=0, le=255, unit="px/255"),
        Param("alpha", float, 1.1, source="MetaCloak script/gen_and_eval.sh: step_size = r/10 = 1.1 (0-255 units)",
              help="PGD step size", gt=0, unit="px/255"),
        Param("pgd_steps", int, 6, source=GEN + ": --defense_pgd_step_num=6", help="PGD steps per defense step", ge=1),
        Param("total_train_steps", int, 1000, tiny=10, source=CFG + ": total_train_steps=1000; tiny: 10", help="pool fine-tuning steps", ge=1),
        Param("interval", int, 200, tiny=5, source=CFG + ": interval=200; tiny: 5", help="snapshot interval (and defense steps per snapshot x advance_steps)", ge=1),
        Param("advance_steps", int, 2, source=CFG + ": advance_steps=2", help="surrogate steps after each perturbation update", ge=1),
        Param("total_trail_num", int, 4, tiny=1, source=CFG + ": total_trail_num=4; tiny: 1", help="passes over the pool", ge=1),
        Param("unroll_steps", int, 1, source=CFG + ": unroll_steps=1 (the released metacloak.py parses it but never uses it; 0 reproduces the released flow)",
              help="look-ahead surrogate steps before each PGD call", ge=0),
        Param("eot_samples", int, 1, source=GEN + ": --defense_sample_num=1", help="EOT draws (each with its own (t, noise)) per PGD step", ge=1),
        Param("blur_kernel", int, 7, source="MetaCloak script/gen_and_eval.sh: gauK=7 (train_mode=gau)", help="EOT Gaussian blur kernel (0: no blur)", ge=0),
        Param("blur_sigma_max", float, 2.0, source="torchvision.transforms.GaussianBlur default sigma=(0.1, 2.0)", help="blur sigma ~ U(0.1, this)", gt=0.1),
        Param("hflip", bool, True, source=GEN + ": --transform_hflip (RandomHorizontalFlip p=0.5)", help="EOT horizontal flip"),
        *surrogate_params(GEN, 5e-7, 2e-4, "shuffled"),
        *gpu_params(GEN + " (--mixed_precision=fp16)", "fp16"),
    ]
    needs = Needs(weights=("base model (SD)",), gpu_memory_gb={"paper": 24.0},
                  notes="pool snapshots (UNet + text encoder, float32) are kept in host memory; see docs/defenses.md")

    def budget(self) -> float:
        return self.p.eps

    def check(self) -> None:
        if self.p.blur_kernel and self.p.blur_kernel % 2 == 0:
            raise BenchError(f"defense.metacloak.blur_kernel must be odd (or 0 for no blur), got {self.p.blur_kernel}")
        if self.p.interval < self.p.advance_steps:
            raise BenchError("defense.metacloak.interval must be >= advance_steps (interval // advance_steps defense steps per snapshot)")

    def eot(self) -> EOT:
        ts = []
        if self.p.blur_kernel:
            ts.append(GaussianBlur(self.p.blur_kernel, (0.1, self.p.blur_sigma_max)))
        if self.p.hflip:
            ts.append(HFlip(0.5))
        return EOT(ts)

    def protect(self, subject, base, ctx):
        p = self.p
        sur = load_surrogate(p, base, ctx)
        g = ctx.generator(505)
        x = sd.to_tensor(subject.train, ctx.device)
        eot = self.eot()

        # 1. the pool: snapshots along a DreamBooth run on the clean images
        keep = [s for s in range(p.total_train_steps) if s == 0 or (s + 1) % p.interval == 0]
        keep_set, pool = set(keep), []

        def snap(s: int) -> None:
            if s in keep_set:  # host memory: 6 x (UNet + text encoder) at paper settings
                pool.append([{k: v.cpu() for k, v in m.items()} for m in sur.snapshot()])

        with ctx.progress("metacloak pool", p.total_train_steps) as advance:
            pool_trace = sur.train(x, p.total_train_steps, g, on_step=lambda s, l: advance(), before_step=snap)

        # 2. meta-learned perturbation over the pool
        per_snapshot = p.interval // p.advance_steps
        adv = x.clone()
        trace: list[float] = []
        with ctx.progress("metacloak defense", p.total_trail_num * len(pool) * per_snapshot) as advance:
            for _ in range(p.total_trail_num):
                for state in pool:
                    sur.restore(state)
                    for _ in range(per_snapshot):
                        with sur.clone() if p.unroll_steps else contextlib.nullcontext():
                            sur.train(adv, p.unroll_steps, g)  # look ahead on the current perturbation
                            losses: list[float] = []
                            adv = sur.attack(x, p.eps, p.alpha, p.pgd_steps, g, init=adv, mc_samples=p.eot_samples, eot=eot,
                                             on_step=lambda s, l: losses.append(l))
                        trace.append(round(sum(losses) / len(losses), 5))  # mean EOT loss of this defense step
                        sur.train(adv, p.advance_steps, g)
                        advance()
        ctx.notes["defense"] = {"pool_snapshots_at_step": keep, "pool_loss_trace": pool_trace, "loss_trace": trace,
                                "optimizer": sur.optimizer_name}
        return to_images(subject.train, adv, p.eps)

