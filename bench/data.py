"""Data cards and loaders: the Anti-DreamBooth layout (<identity>/set_A|set_B|set_C),
flat identity folders, a Hugging Face `datasets` source, and the offline `sample`
(synthetic GAN identities, bench/synthetic_identities.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import BenchError
from .images import center_crop_resize, list_images, load_image, to_rgb8
from .plugin import Subject

CARDS_DIR = Path(__file__).resolve().parent.parent / "data_cards"
REQUIRED = ("name", "source", "licence", "layout", "roles", "citation")
LAYOUTS = ("antidb", "flat", "hf", "sample")


def card_names() -> list[str]:
    return sorted(p.stem for p in CARDS_DIR.glob("*.yaml"))


def load_card(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.is_file():
        path = CARDS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        import difflib

        close = difflib.get_close_matches(name_or_path, card_names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BenchError(f"unknown data card {name_or_path!r}{hint} (cards: {', '.join(card_names())})")
    card = yaml.safe_load(path.read_text()) or {}
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise BenchError(f"data card {path.name} lacks {', '.join(missing)}")
    if card["layout"] not in LAYOUTS:
        raise BenchError(f"data card {path.name}: layout must be one of {LAYOUTS}")
    return card


@dataclass
class RawSubject:
    """Clean images by role before preprocessing, plus a fingerprint of their bytes."""

    identity: str
    roles: dict[str, list[np.ndarray]]
    names: dict[str, list[str]]
    fingerprint: str
    warnings: list[str] = field(default_factory=list)  # what was converted or looks wrong, said once per run

    def check_resolution(self, resolution: int) -> list[str]:
        """Images far below the working resolution are errors (a 1x1 or 512x4 "photo" would be
        upscaled into a valid-looking subject); below it, they are upscaled, and said so."""
        sizes = {n: img.shape[:2] for role, imgs in self.roles.items() for n, img in zip(self.names[role], imgs)}
        floor = max(1, resolution // 4)
        tiny = [(n, hw) for n, hw in sizes.items() if min(hw) < floor]
        if tiny:
            n, (h, w) = tiny[0]
            raise BenchError(f"identity {self.identity!r}: image {n!r} is {w}x{h} px, below a quarter of the working "
                             f"resolution ({resolution} px) on one side; {len(tiny)} such image(s)")
        small = [n for n, hw in sizes.items() if min(hw) < resolution]
        if small:
            return [f"identity {self.identity!r}: {len(small)} of {len(sizes)} images are smaller than {resolution} px on "
                    f"their short side and will be upscaled (e.g. {small[0]!r})"]
        return []


def _fingerprint(images: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for img in images:
        h.update(str(img.shape).encode())
        h.update(img.tobytes())
    return h.hexdigest()[:16]


def _thirds(items: list) -> dict[str, list]:
    n = len(items)
    if n < 3:
        raise BenchError(f"an identity needs at least 3 images to split into roles, found {n}")
    a, b = n // 3, 2 * n // 3
    return {"surrogate": items[:a], "train": items[a:b], "reference": items}


def identities(card: dict[str, Any], root: str | None) -> list[str]:
    layout = card["layout"]
    if layout == "sample":
        return list(card["identities"])
    if layout == "hf":
        return list(card.get("identities") or [])
    base = _root(card, root)
    found = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        if layout == "antidb" and all((d / s).is_dir() for s in ("set_A", "set_B", "set_C")):
            found.append(d.name)
        elif layout == "flat" and any(d.glob("*.*")):
            found.append(d.name)
    listed = card.get("identities")
    return [i for i in listed if i in found] if listed else found


def _root(card: dict[str, Any], root: str | None) -> Path:
    r = root or card.get("root")
    if not r:
        raise BenchError(f"data card {card['name']!r} needs a root folder: --set dataset.root=/path/to/identities")
    p = Path(r).expanduser()
    if not p.is_dir():
        raise BenchError(f"dataset root {p}: no such folder")
    return p


def load_raw(card: dict[str, Any], root: str | None, identity: str | None) -> RawSubject:
    layout = card["layout"]
    notes: dict[str, list[str]] = {}
    if identity is None:
        ids = identities(card, root)
        if not ids:
            raise BenchError(f"data card {card['name']!r}: no identities found under {root or card.get('root')}")
        identity = ids[0]
    if layout == "sample":
        if identity not in card["identities"]:
            raise BenchError(f"data card {card['name']!r} has no identity {identity!r}; choose one of {card['identities']}")
        roles, names = _synthetic(card, identity)
    elif layout == "antidb":
        folder = _root(card, root) / identity
        if not folder.is_dir():
            raise BenchError(f"identity {identity!r} not found under {folder.parent}")
        roles, names = {}, {}
        for role, sets in card["roles"].items():
            files = [f for s in sets for f in list_images(folder / s)]
            roles[role] = [_load(f, notes) for f in files]
            names[role] = [f"{f.parent.name}_{f.stem}" for f in files]
    elif layout == "flat":
        folder = _root(card, root) / identity
        if not folder.is_dir():
            # a root that is itself one identity's flat folder
            base = _root(card, root)
            if base.name == identity:
                folder = base
            else:
                raise BenchError(f"identity {identity!r} not found under {base}")
        files = list_images(folder)
        split = _thirds(files)
        roles = {k: [_load(f, notes) for f in v] for k, v in split.items()}
        names = {k: [f.stem for f in v] for k, v in split.items()}
    else:  # hf
        rows = _hf_rows(card, root, identity)
        split = _thirds(rows)
        roles = {k: [img for _, img in v] for k, v in split.items()}
        names = {k: [n for n, _ in v] for k, v in split.items()}
    for role in ("surrogate", "train", "reference"):
        if not roles.get(role):
            raise BenchError(f"identity {identity!r}: the {role!r} role has no images")
    fp = _fingerprint([img for role in ("surrogate", "train", "reference") for img in roles[role]])
    notes = {what: sorted(set(files)) for what, files in notes.items()}  # a file may serve two roles
    warnings = [f"identity {identity!r}: {len(files)} image(s) {what} (e.g. {files[0]})" for what, files in notes.items()]
    constant = sorted({n for role in roles for n, img in zip(names[role], roles[role]) if img.min() == img.max()})
    if constant:
        warnings.append(f"identity {identity!r}: {len(constant)} image(s) are one flat colour, not a photo (e.g. {constant[0]!r})")
    return RawSubject(identity, roles, names, fp, warnings)


def _load(path: Path, notes: dict[str, list[str]]) -> np.ndarray:
    found: list[str] = []
    img = load_image(path, found)
    if "transparent" in found:
        notes.setdefault("have transparent pixels, composited on white", []).append(path.name)
    return img


def _synthetic(card: dict[str, Any], identity: str) -> tuple[dict[str, list], dict[str, list]]:
    """A `sample` identity: 12 GAN faces from bench.synthetic_identities, split into
    Anti-DreamBooth's set_A (surrogate), set_B (train), set_C, named as the antidb layout."""
    from . import synthetic_identities as si

    images = si.identity_images(si.parse(identity), candidates=int(card.get("candidates", si.CANDIDATES)),
                                sigma=float(card.get("sigma", si.SIGMA)))
    sets = {s: images[4 * i : 4 * i + 4] for i, s in enumerate(("set_A", "set_B", "set_C"))}
    named = {s: [f"{s}_{i:02d}" for i in range(4)] for s in sets}
    roles = {"surrogate": sets["set_A"], "train": sets["set_B"], "reference": images}
    names = {"surrogate": named["set_A"], "train": named["set_B"], "reference": [n for s in sets for n in named[s]]}
    return roles, names


def _hf_rows(card: dict[str, Any], root: str | None, identity: str) -> list[tuple[str, np.ndarray]]:
    try:
        import datasets
    except ImportError:
        raise BenchError("the hf layout needs the `datasets` package: pip install datasets") from None
    hf = card.get("hf") or {}
    path = root or hf.get("path")
    if not path:
        raise BenchError(f"data card {card['name']!r}: set --set dataset.root=<hub id or save_to_disk folder>")
    try:
        if Path(path).is_dir():
            ds = datasets.load_from_disk(path)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[hf.get("split", "train")]
        else:
            ds = datasets.load_dataset(path, split=hf.get("split", "train"))
    except Exception as exc:
        raise BenchError(f"cannot load dataset {path!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    id_col, img_col, order = hf.get("identity_column", "identity"), hf.get("image_column", "image"), hf.get("order_column")
    for col in (id_col, img_col):
        if col not in ds.column_names:
            raise BenchError(f"dataset {path!r} has no column {col!r} (columns: {ds.column_names})")
    rows = [r for r in ds if str(r[id_col]) == str(identity)]
    if not rows:
        raise BenchError(f"dataset {path!r}: no rows with {id_col} == {identity!r}")
    if order:
        rows.sort(key=lambda r: r[order])
    return [(f"{identity}_{i:03d}", to_rgb8(r[img_col], f"{path}[{i}]")) for i, r in enumerate(rows)]


# scikit-image pictures with one person each, and face boxes (x0, y0, x1, y1) in the 512x512 photo.
SAMPLE_PHOTOS = {
    "astronaut": ("astronaut", [(120, 10, 330, 220), (110, 0, 340, 230), (130, 20, 320, 210), (100, 0, 350, 250)]),
    "cameraman": ("camera", [(140, 70, 290, 220), (130, 60, 300, 230), (150, 80, 280, 210), (120, 50, 310, 240)]),
}


def sample_views(identity: str = "astronaut") -> list[np.ndarray]:
    """Twelve deterministic views of one scikit-image portrait: the zoo's pre-training pool and
    bench.kit's test subject (the `sample` card itself now holds synthetic identities)."""
    from PIL import Image, ImageEnhance
    from skimage import data as skdata

    picture, boxes = SAMPLE_PHOTOS[identity]
    base = Image.fromarray(getattr(skdata, picture)()).convert("RGB")
    # crops around the face at several scales/offsets
    views = []
    for i in range(12):
        x0, y0, x1, y1 = boxes[i % 4]
        img = base.crop((x0, y0, x1, y1)).resize((256, 256), Image.BICUBIC)
        if i % 2 == 1:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if i >= 4:
            img = img.rotate((i - 7.5) * 1.5, resample=Image.BICUBIC, fillcolor=(0, 0, 0))
        if i >= 8:
            img = ImageEnhance.Brightness(img).enhance(0.9 + 0.05 * (i - 8))
        views.append(np.asarray(img.convert("RGB")))
    return views


def make_subject(raw: RawSubject, resolution: int) -> Subject:
    prep = {k: [center_crop_resize(img, resolution) for img in v] for k, v in raw.roles.items()}
    return Subject(
        identity=raw.identity,
        train=prep["train"],
        surrogate=prep["surrogate"],
        reference=prep["reference"],
        train_names=raw.names["train"],
        train_original=list(raw.roles["train"]),
    )
