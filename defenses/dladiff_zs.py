"""DLADiff layer 2 (against zero-shot methods), Jia et al., DLADiff, Sec. 4.2, Eq. 10-11
and Algorithm 2: PGD on L_id = 1 - sum_i CosSim(IE_i(aligned protected face),
IE_i(aligned clean face)) over several identity encoders, with random noise on the
alignment matrix, the perturbation mapped back to the image by the inverse transform.

How it is done here (and why):
- Landmarks/alignment come from the CLEAN image (Alg. 2 line 4: face_alignment(x)).
  An image without a detected face is skipped (its layer-2 perturbation stays zero)
  and counted in the notes: at 64 px the detector usually finds nothing.
- delta_zs lives on the face chip of the first encoder (the paper optimises it on the
  aligned face) and is warped back into the image with the inverse of that encoder's
  alignment (bilinear, zeros outside the chip). The warp-back happens INSIDE every PGD
  step (the paper maps back once at the end): what is optimised is then the image that
  is saved, and every encoder can re-align it with its own (jittered) matrix. Bilinear
  weights are convex, so |warped delta| <= eta_zs holds in the image too.
- Jitter (Alg. 2 lines 5-7): M' = M + sigma * N(0, I), added to the image->chip matrix in
  normalised coordinates (affine_grid's [-1, 1] frame), so sigma does not depend on
  the image or chip size. The paper only says "slight random noise".
- Update (Eq. 11): sign of the gradient, the L-inf PGD of Madry et al. that Sec. 4
  cites; Alg. 2 writes delta + sigma * grad.
- Stop (Alg. 2 line 3): per image, once every encoder's cosine similarity is <= the
  threshold; `steps` caps the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import BenchError

from .adversarial import px_to_model


# ---------------------------------------------------------------- encoders
@dataclass
class IdentityEncoder:
    """One identity encoder as layer 2 sees it.

    matrix(image uint8 HxWx3) -> 2x3 float (image pixel -> chip pixel, pixel centres at
    integer coordinates, the cv2.warpAffine / dlib convention) or None when no face;
    embed(chips (N, 3, S, S) RGB in [0, 1]) -> (N, D) L2-normalised, differentiable."""

    name: str
    chip_size: int
    matrix: Callable[[np.ndarray], np.ndarray | None]
    embed: Callable[[torch.Tensor], torch.Tensor]


def _dlib(device: str) -> IdentityEncoder:
    """dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1) as a
    differentiable torch port (metrics/dlib_torch.py), on dlib's own 150 px chip
    (get_face_chip_details from the 5-point shape predictor). The face box comes from
    MTCNN, as in the `dlib` backend of the identity metrics (metrics/face_offline.py),
    so the defense aligns faces exactly as the ISM it is scored with."""
    try:
        from metrics import dlib_torch, face_offline
    except ImportError as exc:
        raise BenchError(f"defense.dladiff: zs encoder 'dlib' unavailable: {exc}") from None
    ok, reason = face_offline.available()
    if not ok:
        raise BenchError(f"defense.dladiff: zs encoder 'dlib' unavailable: {reason}")
    net = dlib_torch.load(device)  # raises BenchError naming the missing file

    def embed(chips: torch.Tensor) -> torch.Tensor:
        return F.normalize(net(chips * 255.0), dim=-1)  # the port takes RGB in [0, 255]

    def matrix(image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        if min(h, w) < max(12, face_offline.DEFAULT_MIN_FACE_SIZE):
            return None  # below MTCNN's smallest pyramid level: no face, as face_offline says
        boxes, _ = face_offline.load_mtcnn(face_offline.DEFAULT_MIN_FACE_SIZE).detect(image[None])
        if boxes[0] is None or len(boxes[0]) == 0:
            return None
        x1, y1, x2, y2 = (float(v) for v in boxes[0][0])  # largest face (select_largest=True)
        box = (max(0.0, x1), max(0.0, y1), min(w - 1.0, x2), min(h - 1.0, y2))  # clipped as face_offline._embed
        found = dlib_torch.align_matrix(image, box=box, size=dlib_torch.CHIP_SIZE)
        return None if found is None else np.asarray(found[0], dtype=np.float64)

    return IdentityEncoder("dlib", dlib_torch.CHIP_SIZE, matrix, embed)


ENCODERS: dict[str, Callable[[str], IdentityEncoder]] = {"dlib": _dlib}


def load_encoders(names: list[str], device: str) -> list[IdentityEncoder]:
    return [ENCODERS[n](device) for n in names]


# ------------------------------------------------------------------ warps
def _pix_to_norm(h: int, w: int) -> torch.Tensor:
    """Pixel coordinates (centres at integers) -> affine_grid's frame (align_corners=False)."""
    return torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _full(m) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(m, dtype=np.float64)).reshape(2, 3)
    return torch.cat([m, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])


def normalised(m, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """A pixel-space src->dst matrix (2x3) as a 3x3 matrix between normalised frames."""
    return _pix_to_norm(*dst_hw) @ _full(m) @ torch.linalg.inv(_pix_to_norm(*src_hw))


def warp(img: torch.Tensor, src_to_dst_norm: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Resample img (1, C, H, W) into the destination frame of a normalised src->dst
    matrix (3x3): bilinear, zeros outside. Differentiable in img."""
    theta = torch.linalg.inv(src_to_dst_norm)[:2].to(img.dtype).unsqueeze(0)  # affine_grid maps dst -> src
    grid = F.affine_grid(theta, [img.shape[0], img.shape[1], *out_hw], align_corners=False)
    return F.grid_sample(img, grid.to(img.device), mode="bilinear", padding_mode="zeros", align_corners=False)


def jittered(m_norm: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    if sigma <= 0:
        return m_norm
    noise = torch.zeros(3, 3, dtype=torch.float64)
    noise[:2] = torch.randn(2, 3, generator=generator, dtype=torch.float64) * sigma
    return m_norm + noise


# -------------------------------------------------------------------- PGD
def protect_face(
    x_prot: torch.Tensor,
    x_clean01: torch.Tensor,
    mats: list[torch.Tensor],
    encoders: list[IdentityEncoder],
    eps_px: float,
    alpha_px: float,
    steps: int,
    threshold: float,
    jitter: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, dict]:
    """Algorithm 2 for one image. x_prot: (1, 3, H, W) in [-1, 1] (the layer-1 output);
    x_clean01: the clean image in [0, 1]; mats: each encoder's normalised image->chip
    matrix. Returns the image-space delta_zs ([-1, 1] units, |.| <= eps) and a summary."""
    hw = tuple(x_prot.shape[-2:])
    eps, alpha = px_to_model(eps_px), px_to_model(alpha_px)
    with torch.no_grad():
        targets = [enc.embed(warp(x_clean01, m, (enc.chip_size,) * 2)) for enc, m in zip(encoders, mats)]
    s0 = encoders[0].chip_size
    back = torch.linalg.inv(mats[0])  # chip -> image (normalised): the inverse alignment

    def image_delta(d_chip: torch.Tensor) -> torch.Tensor:
        return warp(d_chip, back, hw)

    def sims(d_chip: torch.Tensor, jit: float) -> list[torch.Tensor]:
        x01 = ((x_prot + image_delta(d_chip)).clamp(-1, 1) + 1) / 2
        out = []
        for enc, m, tgt in zip(encoders, mats, targets):
            chip = warp(x01, jittered(m, jit, generator), (enc.chip_size,) * 2)
            out.append((enc.embed(chip) * tgt).sum(-1).mean())
        return out

    delta = torch.zeros(1, 3, s0, s0, dtype=x_prot.dtype, device=x_prot.device)
    used, trace = 0, []
    for _ in range(steps):
        delta.requires_grad_(True)
        cos = sims(delta, jitter)
        trace.append(round(float(sum(c.detach() for c in cos)), 5))
        if max(float(c.detach()) for c in cos) <= threshold:  # Alg. 2 line 3: stop below ths
            delta = delta.detach()
            break
        loss = 1 - sum(cos)  # Eq. 10
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = (delta + alpha * grad.sign()).clamp(-eps, eps)  # Eq. 11 (sign step), L-inf clip
        used += 1
    delta = delta.detach()
    with torch.no_grad():
        final = [round(float(c), 5) for c in sims(delta, 0.0)]
        d_img = image_delta(delta)
    return d_img, {"steps": used, "cos_after": final, "sum_cos_trace": trace}


def protect_images(
    protected: list[np.ndarray],
    clean: list[np.ndarray],
    encoders: list[IdentityEncoder],
    eps_px: float,
    alpha_px: float,
    steps: int,
    threshold: float,
    jitter: float,
    generator: torch.Generator | None,
    device: str = "cpu",
    advance: Callable[[], None] = lambda: None,
) -> tuple[list[np.ndarray], dict]:
    """Layer 2 over a set: uint8 layer-1 outputs -> uint8 images within eps_px of them
    (PNG levels). Images without a face on every encoder's detector are returned as is."""
    from bench import sd

    from .adversarial import to_images

    out, per_image, skipped = [], [], 0
    for img, ref in zip(protected, clean):
        h, w = img.shape[:2]
        raw = [enc.matrix(ref) for enc in encoders]
        if any(m is None for m in raw):
            skipped += 1
            out.append(img.copy())
            per_image.append(None)
            advance()
            continue
        mats = [normalised(m, (h, w), (enc.chip_size,) * 2) for m, enc in zip(raw, encoders)]
        x = sd.to_tensor([img], device)
        x_clean01 = (sd.to_tensor([ref], device) + 1) / 2
        d_img, info = protect_face(x, x_clean01, mats, encoders, eps_px, alpha_px, steps, threshold, jitter, generator)
        out += to_images([img], x + d_img, eps_px)
        per_image.append(info)
        advance()
    return out, {"skipped_no_face": skipped, "per_image": per_image}
