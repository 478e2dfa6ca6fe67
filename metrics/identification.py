"""Identification: are the generated faces THIS person, rather than someone on the card?

ISM alone cannot say: in the tiny world every face's descriptor is close to every identity's
mean (face-world-facts.md: ISM sat at 0.89-0.94 defended or not). This metric compares each
generated face with the mean reference descriptor of EVERY identity on the card (the gallery):

- identification rate (the value): the fraction of generated images whose face is nearest to
  the subject's mean after calibration; an image without a face counts as not identified.
- calibration: the raw nearest-mean rule is biased towards "hub" identities (the base model's
  own samples were nearest to one identity in 20 of 32 cases, face-world-facts.md). Each
  identity's cosine is centred by its mean over the control samples (the unpersonalised
  model's images of the same prompts and seeds) before the argmax.
- control_rate: the same rate for the control samples (chance is 1/identities).
- ism_subject / ism_others: mean cosine of the generated faces to the subject's mean and to the
  other identities' means (Anti-DreamBooth's ISM definition, per identity); gap = their
  difference, card_gap = the same-vs-different gap of the card's own photos (leave-one-out
  means), gap_ratio = gap / card_gap (1: as separable as real photos of the person).
- control_ism_subject: the control samples' ISM to the subject, to read beside ism_subject.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.plugin import Metric, MetricResult
from bench.stats import unit

from .identity import _NEEDS, BACKEND_PARAM, WEIGHTS_DIR_PARAM
from . import face_backends


def card_gap(embeddings: dict[str, np.ndarray]) -> dict[str, float]:
    """Same-vs-different gap of the card's photos: each photo against its own identity's
    leave-one-out mean and against every other identity's mean."""
    means = {k: unit(e.mean(0)) for k, e in embeddings.items()}
    same, diff = [], []
    for k, e in embeddings.items():
        for i in range(len(e)):
            if len(e) > 1:
                same.append(float(e[i] @ unit(np.delete(e, i, 0).mean(0))))
            diff += [float(e[i] @ m) for j, m in means.items() if j != k]
    s, d = float(np.mean(same)) if same else float("nan"), float(np.mean(diff)) if diff else float("nan")
    return {"card_same": s, "card_different": d, "card_gap": s - d}


class Identification(Metric):
    name = "idr"
    aliases = ("identification",)
    summary = "fraction of generated faces identified as the subject among the card's identities (control-calibrated)"
    higher_is_better = True  # for the attacker; a defense wants it low
    uses_gallery = True
    version = "1"
    params = [BACKEND_PARAM, WEIGHTS_DIR_PARAM]
    needs = _NEEDS

    @property
    def backend(self):
        return face_backends.get_backend(self.p.backend, self.p.get("weights_dir", ""))

    def available(self) -> tuple[bool, str]:
        return self.backend.available()

    def _embed(self, images) -> list[np.ndarray | None]:
        return [None if f is None else np.asarray(f.embedding, float) for f in self.backend.detect_and_embed(list(images))]

    def compute(self, images, references, ctx: Any) -> MetricResult:
        gallery = getattr(ctx, "gallery", None) or {}
        subject = getattr(ctx, "subject", None)
        if len(gallery) < 2 or subject not in gallery:
            return MetricResult.unavailable("identification needs a card with at least two identities (the gallery)")
        if not images:
            return MetricResult.unavailable("no generated images")
        emb = {}
        for ident, refs in gallery.items():
            found = [e for e in self._embed(refs) if e is not None]
            if not found:
                return MetricResult.unavailable(f"no face detected in the references of {ident!r}")
            emb[ident] = np.stack(found)
        names = list(emb)
        means = np.stack([unit(emb[k].mean(0)) for k in names])
        s_idx = names.index(subject)
        control = [e for e in self._embed(ctx.control_images or []) if e is not None]
        centre = np.stack(control) @ means.T if control else None
        offset = centre.mean(0) if centre is not None else np.zeros(len(names))
        faces = self._embed(images)
        per: list[float | None] = []
        sims = []
        for e in faces:
            if e is None:
                per.append(0.0)
                continue
            s = means @ e
            sims.append(s)
            per.append(1.0 if int(np.argmax(s - offset)) == s_idx else 0.0)
        extra: dict[str, Any] = {
            "identities": len(names), "chance": 1.0 / len(names), "n_images": len(images), "n_faces": len(sims),
            "calibrated": centre is not None, "n_control_faces": len(control),
            **card_gap(emb),
        }
        if centre is not None:
            extra["control_rate"] = float(np.mean(np.argmax(centre - offset, axis=1) == s_idx))
            extra["control_ism_subject"] = float(centre[:, s_idx].mean())
            extra["control_ism_others"] = float(np.delete(centre, s_idx, axis=1).mean())
        if sims:
            S = np.stack(sims)
            extra["ism_subject"] = float(S[:, s_idx].mean())
            extra["ism_others"] = float(np.delete(S, s_idx, axis=1).mean())
            extra["gap"] = extra["ism_subject"] - extra["ism_others"]
            extra["rate_among_faces"] = float(sum(v for v, e in zip(per, faces) if e is not None) / len(sims))
            if extra["card_gap"] > 0:
                extra["gap_ratio"] = extra["gap"] / extra["card_gap"]
        return MetricResult(value=float(np.mean(per)), per_image=per, extra=extra)
