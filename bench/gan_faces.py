"""Synthetic faces from the PyPI package `gan-face-generate` (1.1.1, MIT): a 64 px DCGAN
trained on Microsoft's synthetic DigiFace-1M faces, weights inside the wheel
(`gan_face_generate/weights.tar`, key `netG_state_dict`; `Generator(0, 3, 100, 64)` as in its
`inference.py`). It is the tiny world's source of unlimited faces offline.

Every face comes from one latent, and every latent from its own integer seed
(`torch.Generator().manual_seed(seed)`): the zoo's pre-training draws from
`PRETRAIN_SEEDS` and the synthetic identities from `IDENTITY_SEEDS`, two ranges that never
overlap, so no identity of the sample card was ever seen in pre-training.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

PACKAGE = "gan-face-generate==1.1.1"
NZ, NGF = 100, 64  # the package's inference.py: Generator(ngpu=0, nc=3, nz=100, ngf=64)
PRETRAIN_SEEDS = range(1_000_000, 2_000_000)  # pre-training faces of the face-trained zoo model
IDENTITY_SEEDS = range(0, 1_000_000)  # base latents and variations of the synthetic identities


def weights_path() -> Path | None:
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights.tar"
    return path if path.is_file() else None


@functools.cache
def generator():
    """The package's DCGAN generator in eval mode (BatchNorm uses its running statistics)."""
    import torch

    from .errors import BenchError

    path = weights_path()
    if path is None:
        raise BenchError(f"the synthetic face source needs `pip install --no-deps {PACKAGE}` (weights inside the wheel)")
    from gan_face_generate.models import Generator

    net = Generator(0, 3, NZ, NGF)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state["netG_state_dict"])
    return net.eval().requires_grad_(False)


def latent(seed: int):
    import torch

    return torch.randn(1, NZ, 1, 1, generator=torch.Generator().manual_seed(int(seed)))


def render(z, batch: int = 256) -> np.ndarray:
    """Latents (N, NZ, 1, 1) -> uint8 faces (N, 64, 64, 3)."""
    import torch

    net = generator()
    out = []
    with torch.no_grad():
        for i in range(0, len(z), batch):
            x = net(z[i : i + batch])
            out.append(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 64, 64, 3), np.uint8)


def faces(seeds) -> np.ndarray:
    """One face per seed."""
    import torch

    return render(torch.cat([latent(s) for s in seeds]))


def variation(base, seed: int, sigma: float):
    """A neighbour of `base` in latent space, renormalised to the base's norm: the same
    identity under another pose, light or expression (the issue's measurements: sigma 0.2-0.3
    keeps dlib's same-identity AUC at 0.98-0.997)."""
    noisy = base + sigma * latent(seed)
    return noisy * (base.norm() / noisy.norm())
