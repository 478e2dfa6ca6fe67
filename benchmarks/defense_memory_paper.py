"""Host memory of one PGD step of the image defenses at paper architecture size.

Run:  python benchmarks/defense_memory_paper.py [--res 256,512] [--batch 1] [--threads 2]

SD 2.1-base weights are not downloadable here, so the UNet, VAE and text encoder
are built from hand-written configs that match SD 2.1-base's published
config.json files (random weights; memory does not depend on the values). Each
measurement runs in a fresh process and reports the peak resident set size
(psutil, sampled every 2 ms), split into weights (after building the models) and
the step itself:

  pgd      one PGD step as Anti-DreamBooth / ASPL / MetaCloak run it: VAE
           encoder + UNet forward at the given resolution, gradient w.r.t. the
           image only (weights frozen), text encoder without gradient.
  pgd-ckpt the same with gradient checkpointing (UNet + VAE).
  unet     the UNet's share alone (forward + backward to its latent input): what
           a surrogate training step adds as activations besides its optimizer.

The surrogate's training step (UNet + text encoder with AdamW) is not measured
on this machine: float32 weights + gradients + two Adam moments alone are
16 bytes x 1.21 G parameters = 19.3 GB; docs/defenses.md gives the estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# stabilityai/stable-diffusion-2-1-base unet/config.json
SD21_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32,
    act_fn="silu", flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, mid_block_scale_factor=1, norm_eps=1e-5,
)
# vae/config.json (shared by SD 1.x and 2.x)
SD21_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=512,
    scaling_factor=0.18215, act_fn="silu",
)
# text_encoder/config.json (OpenCLIP ViT-H/14 text tower, 23 layers as SD 2.x uses it)
SD21_TEXT = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)


class PeakRSS:
    """Background sampler of this process's resident set size (every 2 ms)."""

    def __enter__(self):
        import psutil

        self.proc, self.stop = psutil.Process(), threading.Event()
        self.start = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def build(device: str = "cpu"):
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD21_UNET).to(device).eval().requires_grad_(False)
    vae = AutoencoderKL(**SD21_VAE).to(device).eval().requires_grad_(False)
    te = CLIPTextModel(CLIPTextConfig(**SD21_TEXT)).to(device).eval().requires_grad_(False)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, prediction_type="epsilon")
    return {"unet": unet, "vae": vae, "text_encoder": te, "scheduler": sched}


def child(mode: str, res: int, batch: int, threads: int) -> dict:
    import psutil
    import torch

    from defenses.adversarial import apply_memory_options, denoising_objective, pgd

    torch.set_num_threads(threads)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    parts = build()
    apply_memory_options(parts, gradient_checkpointing=(mode == "pgd-ckpt"), sdpa=True)
    counts = {k: sum(p.numel() for p in parts[k].parameters()) for k in ("unet", "vae", "text_encoder")}
    rss_weights = proc.memory_info().rss
    g = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 3, res, res), generator=g) * 2 - 1
    ids = torch.randint(0, 49408, (1, 77), generator=g)
    with torch.no_grad():
        cond = parts["text_encoder"](ids)[0]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if mode == "unet":  # the UNet's share: forward + backward to its latent input only
            lat = torch.randn((batch, 4, res // 8, res // 8), generator=g, requires_grad=True)
            t = torch.randint(0, 1000, (batch,), generator=g)
            out = parts["unet"](lat, t, cond.expand(batch, -1, -1)).sample
            torch.autograd.grad(out.square().mean(), lat)
        else:
            pgd(x, lambda xa, s: denoising_objective(parts, xa, cond, g), 6.0, 1.0, 1, generator=g)
        seconds = time.perf_counter() - t0
    gib = 2**30
    return {"mode": mode, "res": res, "batch": batch, "params": counts, "weights_gib": (rss_weights - rss0) / gib,
            "step_peak_gib": (mem.peak - mem.start) / gib, "process_peak_gib": (mem.peak - rss0) / gib, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", default="256,512")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--modes", default="pgd,pgd-ckpt")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, res = args.child.split(":")
        print("RESULT " + json.dumps(child(mode, int(res), args.batch, args.threads)))
        return
    rows = []
    for res in [int(r) for r in args.res.split(",")]:
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--child", f"{mode}:{res}", "--batch", str(args.batch), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{mode} @ {res}: failed\n{proc.stderr[-1500:]}", file=sys.stderr)
                continue
            rows.append(json.loads(line[0][7:]))
            print(f"  {mode} @ {res}px: done in {rows[-1]['seconds']:.0f} s", file=sys.stderr)
    if rows:
        c = rows[0]["params"]
        print(f"\nSD 2.1-base-sized models, random weights: UNet {c['unet'] / 1e6:.1f} M, VAE {c['vae'] / 1e6:.1f} M, "
              f"text encoder {c['text_encoder'] / 1e6:.1f} M parameters (float32)\n")
    print(f"{'mode':<9} {'px':>4} {'batch':>5} {'weights GiB':>11} {'PGD step +GiB':>13} {'total GiB':>9} {'s/step':>7}")
    for r in rows:
        print(f"{r['mode']:<9} {r['res']:>4} {r['batch']:>5} {r['weights_gib']:>11.2f} {r['step_peak_gib']:>13.2f} "
              f"{r['process_peak_gib']:>9.2f} {r['seconds']:>7.1f}")


if __name__ == "__main__":
    main()
