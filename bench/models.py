"""Model sources: a hub id with a pinned revision, a local path, mirrors tried in
order, or a tiny zoo model. Everything resolves to a local diffusers folder that
is then loaded with `from_pretrained` - the same code path for both profiles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import zoo
from .errors import BenchError
from .plugin import ModelRef
from .hf_logging import quiet_hf  # noqa: F401 (re-exported)
from .profiles import KNOWN_MIRRORS


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or os.environ.get(
        "BENCH_OFFLINE", ""
    ).lower() in ("1", "true", "yes")


def resolve(source: dict[str, Any], zoo_root: Path) -> ModelRef:
    """`source` = resolved protocol's base_model: {id, revision, path, mirrors}."""
    path, model_id, revision = source.get("path"), source.get("id"), source.get("revision")
    if path:
        p = Path(path).expanduser()
        if not (p / "model_index.json").is_file() and not (p / "unet").is_dir():
            raise BenchError(f"base_model.path {p}: not a diffusers model folder (no model_index.json)")
        return ModelRef(path=p, source=str(p), revision=revision, weights=folder_hashes(p))
    if not model_id:
        raise BenchError("no base model: set base_model.id (hub id) or base_model.path (local folder)")
    if model_id.startswith("zoo:"):
        name = model_id[4:]
        folder = zoo.ensure(name, zoo_root)  # verifies the weights against the hashes they were built with
        return ModelRef(path=folder, source=model_id, revision=zoo.zoo_revision(name), weights=zoo.recorded_hashes(folder))
    candidates = [model_id] + list(source.get("mirrors") or []) + KNOWN_MIRRORS.get(model_id, [])
    errors = []
    for repo in dict.fromkeys(candidates):
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(
                repo,
                revision=revision if repo == model_id else None,
                local_files_only=offline(),
                allow_patterns=["*.json", "*.txt", "*.safetensors", "tokenizer*/*", "*.model"],
            )
            return ModelRef(path=Path(local), source=repo, revision=revision, weights=folder_hashes(Path(local)))
        except Exception as exc:  # network refused, repo gone, offline cache miss
            errors.append(f"{repo}: {exc.__class__.__name__}")
    raise BenchError(
        f"weights for base model {model_id!r} are not available ({'; '.join(errors)}); "
        "download them on a connected machine and pass --set base_model.path=/path/to/diffusers/folder"
    )


_HASHES: dict[tuple, dict[str, str]] = {}


def folder_hashes(folder: Path) -> dict[str, str]:
    """zoo.weight_hashes, computed once per process for an unchanged folder (sizes and mtimes)."""
    files = sorted(f for f in Path(folder).rglob("*") if f.is_file() and f.suffix in zoo.WEIGHT_SUFFIXES)
    key = (str(Path(folder).resolve()), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _HASHES:
        _HASHES[key] = zoo.weight_hashes(Path(folder))
    return _HASHES[key]


def load_sd(ref: ModelRef, device: str = "cpu", dtype=None) -> dict[str, Any]:
    """Load SD 1.x/2.x components from a diffusers folder (hub snapshot, mirror or zoo)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet_hf()
    dtype = dtype or torch.float32
    try:
        parts = {
            "tokenizer": CLIPTokenizer.from_pretrained(ref.path, subfolder="tokenizer"),
            "text_encoder": CLIPTextModel.from_pretrained(ref.path, subfolder="text_encoder", torch_dtype=dtype),
            "vae": AutoencoderKL.from_pretrained(ref.path, subfolder="vae", torch_dtype=dtype),
            "unet": UNet2DConditionModel.from_pretrained(ref.path, subfolder="unet", torch_dtype=dtype),
            "scheduler": DDPMScheduler.from_pretrained(ref.path, subfolder="scheduler"),
        }
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot load the base model from {ref.path}: {str(exc).splitlines()[0]}") from None
    for key in ("text_encoder", "vae", "unet"):
        parts[key].to(device)
        parts[key].requires_grad_(False)
        parts[key].eval()
    return parts
