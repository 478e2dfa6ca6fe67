"""RID, the Real-time Identity Defender (Guo et al., arXiv 2412.09844; code
Guohanzhong/RID): one forward pass of a DiT perturbation network per image.

Budget semantics. The released checkpoints ``ASDS-eps-{6,8,12}_255.bin`` end in
``tanh * eps/255`` added to the image in [-1, 1] space (Guohanzhong/RID infer.py:
``DiT(scale=12/255)``, ``clean + noise``), so ``eps-12_255`` moves pixels by at most
12/255 * 127.5 = 6 levels. Users set ``eps`` in 0-255 PIXEL levels (default 6 = the
released eps-12_255 checkpoint); a checkpoint whose name carries a budget must agree.

Weights. ``checkpoint`` = a local ``.bin`` (torch.load weights_only) / ``.safetensors``
file, or a hub spec ``repo_id/filename`` (huggingface_hub.hf_hub_download, which
honours HF_HUB_OFFLINE). Without a checkpoint (tiny profile) the defense trains a
small RID on the tiny profile with defenses/rid_train.py (Adv-SDS + ASPL regression,
Eq. 9-14) once, as the artifact ``rid_generator``, and every cell reuses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.params import Needs, Param
from bench.plugin import ImageDefense

from . import rid_net
from .rid_train import RIDTrainConfig, cached_generator, check_config

PAPER = "Guo et al. 2024 (arXiv 2412.09844)"
INFER = "Guohanzhong/RID infer.py"
SPEED = "benchmarks/rid_speed.py (docs/rid.md)"

_ARCH_KEYS = {"input_size": int, "patch_size": int, "in_channels": int, "hidden_size": int, "depth": int,
              "num_heads": int, "mlp_ratio": float}
_LOADED: dict[tuple, Any] = {}  # (path, mtime, eps_255, config, engine, device) -> network, per process
ENGINES = ("torch", "torch-int8", "onnxruntime-int8")


def parse_config(spec: str) -> dict[str, Any]:
    """'input_size=64,patch_size=8,...' -> architecture overrides of released_config()."""
    out: dict[str, Any] = {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in _ARCH_KEYS:
            raise BenchError(f"defense.rid.config: {part!r} is not KEY=VALUE with KEY in {sorted(_ARCH_KEYS)}")
        try:
            out[key] = _ARCH_KEYS[key](val.strip())
        except ValueError:
            raise BenchError(f"defense.rid.config: {key} must be {_ARCH_KEYS[key].__name__}, got {val.strip()!r}") from None
    return out


def _is_local(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or Path(spec).expanduser().exists() or spec.count("/") < 2


def resolve_checkpoint(spec: str) -> Path:
    """A local file, or 'owner/repo/filename' from the Hugging Face hub; one-line BenchError otherwise."""
    if _is_local(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise BenchError(f"defense.rid.checkpoint: no file {spec}; pass checkpoint=<path to ASDS-eps-12_255.bin or a .safetensors> "
                             "or a hub spec owner/repo/filename")
        return path
    repo_id, filename = "/".join(spec.split("/")[:2]), "/".join(spec.split("/")[2:])
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # offline, missing repo/file, network: one line, what to pass
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise BenchError(f"defense.rid.checkpoint: cannot get {filename} from hub repo {repo_id} ({reason}); "
                         "pass checkpoint=<local ASDS-eps-12_255.bin or .safetensors path>") from None


class RID(ImageDefense):
    name = "rid"
    links = {"paper": "https://arxiv.org/abs/2412.09844", "code": "https://github.com/Guohanzhong/RID"}
    aliases = ("real-time-identity-defender",)
    summary = "Real-time Identity Defender: a DiT maps each image to its perturbation in one forward pass."
    version = "1"
    params = [
        Param("checkpoint", str, "", source=f"{INFER}: ASDS-eps-12_255.bin (released weights; not downloadable here)",
              help="local .bin/.safetensors or hub owner/repo/filename; '' = train a tiny RID (tiny profile only)"),
        Param("eps", float, 6.0, source=f"{INFER}: DiT(scale=12/255) added in [-1,1] = 6 pixel levels (methods.md, Units)",
              help="L-inf budget in 0-255 pixel levels (= eps_255/2 of a checkpoint named eps-<eps_255>_255)",
              gt=0, le=127.5, unit="px/255"),
        Param("config", str, "", source="libs/DiT.py defaults 512/16/1152/14/8 (rid_net.released_config)",
              help="architecture overrides for the checkpoint, e.g. input_size=64,patch_size=8,hidden_size=32,depth=1,num_heads=2"),
        Param("batch_size", int, 4, source=f"{INFER}: one image per forward; batching only changes speed", help="images per forward", ge=1),
        Param("engine", str, "torch", paper="onnxruntime-int8", choices=ENGINES,
              source=f"{SPEED}: on CPU, onnxruntime int8 dynamic (2.05 s/512px) < torch int8 per-channel block-Linear "
                     "(2.27 s) < torch fp32 (3.51 s), all within 1/255 of fp32; tiny: torch fp32",
              help="CPU inference path: torch (fp32), torch-int8 (dynamic int8 block Linear), onnxruntime-int8 "
                   "(exported once per checkpoint, cached); CUDA always runs torch"),
        # -- the tiny generator trained when no checkpoint is given (defenses/rid_train.py)
        Param("train_steps", int, 120, source="tiny profile: ~1 min on 2 CPU cores (paper: 70k images, see docs/rid.md)",
              help="training steps of the tiny RID", ge=1),
        Param("ensemble", int, 2, source=f"{PAPER} Eq. 13-14 (N=3: SD 1.4/1.5/2.1); tiny: the zoo model twice, different (t, noise) streams",
              help="N surrogates for RID-Ensemble when `surrogates` is empty", ge=1),
        Param("surrogates", list, (), source=f"{PAPER} Eq. 14: SD v1.4, v1.5, v2.1",
              help="extra base models (hub ids, folders, zoo:NAME) for RID-Ensemble training"),
        Param("reg_weight", float, 3.0, source=f"{PAPER} after Eq. 11: lambda = 3", help="lambda of the L1 regression", ge=0),
        Param("reg_method", str, "aspl", choices=("aspl", "advdm"),
              source=f"{PAPER} 'Training details': Anti-DB (ASPL) perturbations for 10% of the images",
              help="image-wise perturbations the regression targets"),
        Param("weighting", str, "reference", choices=("reference", "constant"),
              source="Guohanzhong/RID train_sd_ensemble_dmd.py: w(t) = 1 - alphas_cumprod[t]; paper text: constant w",
              help="Adv-SDS weighting w(t)"),
    ]
    needs = Needs(weights=("RID checkpoint ASDS-eps-*.bin (paper profile)", "base model (SD) for the tiny training"))

    def budget(self) -> float:
        return self.p.eps

    @classmethod
    def train(cls, base_id: str, home: Path, sets: list[str], out: Path | None, device: str, quiet: bool, log=print) -> Path:
        """`bench train rid`: the generator, trained (or reused) as a run without a checkpoint would."""
        from .rid_train import cli_train

        return cli_train(cls, base_id, home, sets, out, device, quiet, log)

    def check(self) -> None:
        parse_config(self.p.config)  # a bad config string is a one-line error here
        spec = self.p.checkpoint.strip()
        if not spec:
            check_config(self.train_config())
            return
        if _is_local(spec):
            resolve_checkpoint(spec)
        named = rid_net.eps_from_checkpoint_name(spec)
        if named is not None and abs(rid_net.pixel_budget(named) - self.p.eps) > 1e-6:
            raise BenchError(f"defense.rid: {Path(spec).name} moves pixels by {rid_net.pixel_budget(named):g} levels "
                             f"(eps {named:g}/255 in [-1,1] space) but eps={self.p.eps:g}; set eps={rid_net.pixel_budget(named):g}")

    def train_config(self) -> RIDTrainConfig:
        p = self.p
        return RIDTrainConfig(eps_px=p.eps, steps=p.train_steps, ensemble=p.ensemble, surrogates=[str(s) for s in p.surrogates],
                              reg_weight=p.reg_weight, reg_method=p.reg_method, weighting=p.weighting)

    def network(self, base, ctx):
        """The perturbation network: the given checkpoint, or the cached tiny generator."""
        import torch

        p = self.p
        if p.checkpoint.strip():
            path = resolve_checkpoint(p.checkpoint.strip())
            eps_255, cfg = 2.0 * p.eps, parse_config(p.config)
            ctx.notes["defense"] = {"checkpoint": str(path), "eps_255": eps_255}
        else:
            if self.profile != "tiny":  # raised here, not in check(): `bench list`/schema checks build paper defaults
                raise BenchError("defense.rid: the paper profile needs checkpoint=<path to ASDS-eps-12_255.bin or hub owner/repo/filename>")
            path, meta = cached_generator(base, ctx, self.train_config())
            tc = self.train_config()
            eps_255, cfg = 2.0 * tc.eps_px, {k: v for k, v in tc.net_kwargs().items()}
            ctx.notes["defense"] = {"generator": str(path.parent.name), "train_seconds": meta.get("seconds"),
                                    "reg_method": meta.get("reg_method"), "n_surrogates": meta.get("n_surrogates")}
        engine = "torch" if str(ctx.device).startswith("cuda") else p.engine
        ctx.notes["defense"]["engine"] = engine
        key = (str(path), path.stat().st_mtime_ns, eps_255, tuple(sorted(cfg.items())), engine, str(ctx.device))
        if key not in _LOADED:
            try:
                net = rid_net.load_checkpoint(path, eps_255=eps_255, config=cfg, device=ctx.device)
            except rid_net.RIDCheckpointError as exc:
                raise BenchError(f"defense.rid: {str(exc)[:300]}") from None
            if engine == "torch-int8":
                from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

                spec = {n: per_channel_dynamic_qconfig for n, m in net.named_modules()
                        if isinstance(m, torch.nn.Linear) and n.startswith("blocks.") and "adaLN" not in n}
                net = quantize_dynamic(net, spec, dtype=torch.qint8, inplace=False)
            elif engine == "onnxruntime-int8":
                from . import rid_onnx

                weights = {"checkpoint": str(path), "bytes": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
                net = rid_onnx.load(net, {**weights, "eps_255": eps_255, "config": cfg}, ctx, torch.get_num_threads())
            _LOADED.clear()  # hold one network at a time (the released one is ~1.4 GB)
            _LOADED[key] = net
        return _LOADED[key]

    def protect(self, subject, base, ctx):
        net = self.network(base, ctx)
        return rid_net.protect(net, [im.copy() for im in subject.train], batch_size=self.p.batch_size)
