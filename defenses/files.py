"""Bring your own protected images: a defense that imports a set protected elsewhere
(released perturbations such as MetaCloak's, closed tools), so it is benchmarked exactly
like a defense that runs here.

    bench run -d files --set defense.dir=DIR --set defense.eps=11 --set defense.source="MetaCloak release"

DIR holds one protected file per clean training image, flat or in one subfolder per
identity (DIR/<identity>/). A file matches its clean image by name: the same stem, or the
stem with a prefix or suffix joined by `_` or `-` (MetaCloak's sets name them
`noisy_<clean name>`, others `<name>_adv`); a clean image with no file or with several is an
error, and so is a file that matches no clean image. The L-inf budget is measured at the
files' own resolution against the clean images before any crop or resize (the unit trap
peers fall into), printed in 0-255 units and recorded with each file's SHA-256 and the
source. The declared `eps` is checked against it (over budget: one line, exit 2); the
equal-budget noise control uses it. Images are then center-cropped and resized to the cell's
resolution as the clean ones are; where bicubic resampling overshoots the budget by a level
the difference is clipped back into it (counted in the record).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.images import IMAGE_SUFFIXES, center_crop_resize, linf, load_image, quantize_perturbed
from bench.params import Param
from bench.plugin import ImageDefense

SEPARATORS = "_-"


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def match_files(clean_names: list[str], files: list[Path]) -> dict[str, Path]:
    """{clean name: its protected file}; errors name what is missing, ambiguous or extra."""
    stems = {f: f.stem for f in files}
    out, extra = {}, set(files)
    for name in clean_names:
        full = Path(name).stem
        stem = re.sub(r"^set_[A-Z]_", "", full)  # the Anti-DreamBooth layout's names carry their folder
        exact = [f for f, s in stems.items() if s in (full, stem)]
        pattern = re.compile(rf"^(?:.+[{SEPARATORS}])?{re.escape(stem)}(?:[{SEPARATORS}].+)?$")
        found = exact or [f for f, s in stems.items() if pattern.match(s)]
        if not found:
            raise BenchError(f"defense.files: no protected file for clean image {name!r} (looked for {stem}.*, "
                             f"<prefix>_{stem}.*, {stem}_<suffix>.*)")
        if len(found) > 1:
            raise BenchError(f"defense.files: {len(found)} files match clean image {name!r}: "
                             f"{', '.join(sorted(f.name for f in found))}")
        out[name] = found[0]
        extra.discard(found[0])
    if extra:
        raise BenchError(f"defense.files: {len(extra)} file(s) match no clean training image: "
                         f"{', '.join(sorted(f.name for f in extra)[:5])}")
    return out


class Files(ImageDefense):
    name = "files"
    in_all = False  # needs a folder from the user: not part of `-d all`
    aliases = ("external",)
    summary = "Imports images protected elsewhere (matched by name); budget measured at their own resolution."
    version = "1"
    params = [
        Param("dir", str, "", source="the user's input: where the protected set lies", help="folder of protected images: flat, or one subfolder per identity"),
        Param("eps", float, 0.0, ge=0, le=255, unit="px/255",
              source="declared by the user (what the images were made with); checked against the measured L-inf",
              help="declared L-inf budget; required (the run prints the measured one when it is missing)"),
        Param("source", str, "", source="the user's input: provenance, recorded as given", help="where the images come from (paper, tool, release): recorded"),
        Param("content_sha256", str, "", source="computed by the plugin from the files", help="set by the harness when the cell is planned: SHA-256 over the files, so "
              "their content is part of the cell key; a mismatch later means they changed"),
    ]

    def check(self) -> None:
        if not self.p.dir:
            raise BenchError("defense.files: give the folder of protected images with --set defense.dir=DIR")
        folder = Path(self.p.dir).expanduser()
        if not folder.is_dir():
            raise BenchError(f"defense.files: {folder}: no such folder")
        # the files' content is part of the cell: a changed file is a different defense artifact
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise BenchError(f"defense.files: {folder}: no images found")
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f.relative_to(folder)}:{_hash(f)}".encode())
        if self.p.content_sha256 and self.p.content_sha256 != digest.hexdigest():
            raise BenchError(f"defense.files: the files in {folder} changed since this cell was planned; run again")
        self.p["content_sha256"] = digest.hexdigest()

    def budget(self) -> float:
        return self.p.eps

    def _files(self, identity: str) -> list[Path]:
        folder = Path(self.p.dir).expanduser()
        if (folder / identity).is_dir():
            folder = folder / identity
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    def protect(self, subject, base, ctx):
        if len(subject.train_original) != len(subject.train):
            raise BenchError("defense.files: the clean stage has no original-resolution images (a cache from an older "
                             "version); run with a fresh --home")
        matched = match_files(subject.train_names, self._files(subject.identity))
        out, per_file, clipped, worst = [], {}, 0, 0
        for name, clean, clean_small in zip(subject.train_names, subject.train_original, subject.train):
            path = matched[name]
            prot = load_image(path)
            if prot.shape != clean.shape:
                raise BenchError(f"defense.files: {path.name} is {prot.shape[1]}x{prot.shape[0]} px, its clean image "
                                 f"{name!r} {clean.shape[1]}x{clean.shape[0]}: the perturbation must be measured on the same pixels")
            native = linf(prot, clean)
            worst = max(worst, native)
            per_file[name] = {"file": path.name, "sha256": _hash(path), "linf_native": native}
            small = center_crop_resize(prot, clean_small.shape[0])
            if self.p.eps > 0:
                kept = quantize_perturbed(clean_small, small.astype(np.float64) / 255.0, self.p.eps)
                clipped += int((kept != small).any(axis=-1).sum())
                small = kept
            out.append(small)
        if self.p.eps <= 0:
            raise BenchError(f"defense.files: the images measure L-inf {worst}/255 against the clean ones at their own "
                             f"resolution; declare the budget they were made with (--set defense.eps={worst}): the "
                             "equal-budget noise control needs it")
        if worst > self.p.eps:
            raise BenchError(f"defense.files: the images exceed the declared budget: measured L-inf {worst}/255 at their "
                             f"own resolution > declared {self.p.eps:g}/255")
        ctx.log(f"defense files: measured L-inf {worst}/255 at the files' own resolution (declared {self.p.eps:g}/255)")
        ctx.notes["defense"] = {"source": self.p.source, "dir": str(Path(self.p.dir).expanduser()), "measured_linf_native": worst,
                                "pixels_clipped_after_resize": clipped, "files": per_file}
        return out
