"""CLIP-IQAC (MetaCloak): CLIP zero-shot quality with the class label, in [-1, 1].

Per image: p = softmax(100 * cos(image, text_k)) over the two prompts
"a good photo of <class>" and "a bad photo of <class>"; score = p_good - p_bad
(liuyixin-louis/MetaCloak robust_facecloak/eval_score.py CLIP_IQAC_get_score, OpenAI
CLIP ViT-B/32, class "face" for persons; DiffShortcut reuses it, App. A.2). The fixed
100 is CLIP's trained logit scale; MetaCloak writes it out, so do we.

Through transformers: the backend (in the id) is the CLIPModel to load - a hub id or
a local folder; default openai/clip-vit-base-patch32, the transformers port of the
same ViT-B/32 weights. Loaded with local_files_only=True: a model that is not on disk
is "unavailable", never downloaded and never replaced by another CLIP.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from bench.params import Needs, Param
from bench.plugin import Image, Metric, MetricResult

_LOCK = threading.RLock()
_MODELS: dict[str, Any] = {}
_STATUS: dict[str, tuple[bool, str]] = {}
LOGIT_SCALE = 100.0


def _load(model_id: str) -> tuple[Any, Any]:
    with _LOCK:
        if model_id not in _MODELS:
            from transformers import CLIPModel, CLIPProcessor

            model = CLIPModel.from_pretrained(model_id, local_files_only=True).eval()
            proc = CLIPProcessor.from_pretrained(model_id, local_files_only=True)
            _MODELS[model_id] = (model, proc)
        return _MODELS[model_id]


def clip_iqac_scores(images: list[np.ndarray], model_id: str, class_name: str, batch_size: int = 16) -> list[float]:
    import torch

    model, proc = _load(model_id)
    prompts = [f"a good photo of {class_name}", f"a bad photo of {class_name}"]
    out: list[float] = []
    with _LOCK, torch.no_grad():
        tok = proc(text=prompts, return_tensors="pt", padding=True, truncation=True)
        t = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        t = getattr(t, "pooler_output", t)
        t = t / t.norm(dim=-1, keepdim=True)
        for s in range(0, len(images), batch_size):
            batch = [np.ascontiguousarray(im[..., :3]) for im in images[s : s + batch_size]]
            pix = proc(images=batch, return_tensors="pt")["pixel_values"]
            v = model.get_image_features(pixel_values=pix)
            v = getattr(v, "pooler_output", v)
            v = v / v.norm(dim=-1, keepdim=True)
            p = (LOGIT_SCALE * v @ t.T).softmax(dim=-1)
            out += (p[:, 0] - p[:, 1]).double().tolist()
    return out


class CLIPIQAC(Metric):
    name = "clip-iqac"
    aliases = ("clip_iqac",)
    summary = "CLIP-IQAC (MetaCloak): p('a good photo of <class>') - p('a bad photo of <class>'), in [-1, 1]"
    target = "generation"
    higher_is_better = True
    params = [
        Param(
            "backend",
            str,
            "openai/clip-vit-base-patch32",
            source="liuyixin-louis/MetaCloak robust_facecloak/eval_score.py: clip.load('ViT-B/32')",
            help="CLIPModel hub id (must be in the local HF cache) or local folder",
        ),
        Param(
            "class_name",
            str,
            "face",
            source="MetaCloak eval_score.py get_score: type_name 'person' -> 'face'",
            help="the <class> in the two prompts",
        ),
    ]
    needs = Needs(weights=("a transformers CLIPModel (default openai/clip-vit-base-patch32) on disk",))

    def available(self) -> tuple[bool, str]:
        mid = self.p.backend
        with _LOCK:
            if mid not in _STATUS:
                try:
                    _load(mid)
                    _STATUS[mid] = (True, "")
                except Exception as exc:  # noqa: BLE001 - not on disk / not a CLIP model
                    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                    _STATUS[mid] = (
                        False,
                        f"CLIP model {mid!r} not on disk (local_files_only; {msg[:160]}); pass a local folder as "
                        "backend or pre-populate the HF cache",
                    )
            return _STATUS[mid]

    def compute(self, images: list[Image], references: list[Image], ctx: Any) -> MetricResult:
        ok, reason = self.available()
        if not ok:
            return MetricResult.unavailable(reason)
        if not images:
            return MetricResult.unavailable("no images")
        per = clip_iqac_scores(list(images), self.p.backend, self.p.class_name)
        return MetricResult(
            value=float(np.mean(per)),
            per_image=per,
            extra={"n_images": len(per), "class_name": self.p.class_name},
        )
