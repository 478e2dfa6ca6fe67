"""Content-addressed artifact store.

Each stage output lives in `<root>/<stage>/<key>/` where key = hash of everything
that determines it (upstream keys, plugin name + version, resolved parameters,
seed, model revision). A stage is built in a private temp folder and moved into
place with one atomic rename, so a killed run leaves no partial artifact that a
later run could read; a rerun simply rebuilds what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

META = "artifact.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sha256_file(path: Path) -> str:
    """Full SHA-256 of one file, read in chunks (shipped weights are checked against it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_files(folder: Path) -> str:
    """Hash of a folder's file names and bytes (for submissions and provenance)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != META:
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Artifact:
    stage: str
    key: str
    path: Path
    meta: dict[str, Any]
    cached: bool

    @property
    def files(self) -> Path:
        return self.path


class ArtifactStore:
    """A local folder, optionally backed by a shared fsspec URL (`s3://...`, `gs://...`,
    `file:///nfs/...`): artifacts missing locally are fetched from the URL, and every
    artifact built here is pushed to it, its artifact.json last - so on the URL, too,
    an artifact exists only once complete. Keys are content hashes, so two workers
    that race to build the same artifact write the same thing."""

    def __init__(self, root: str | Path, remote: str | None = None):
        self.root = Path(root)
        (self.root / ".tmp").mkdir(parents=True, exist_ok=True)
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        self.remote = remote or None
        self._fs = self._rroot = None
        if self.remote:
            try:
                import fsspec

                self._fs, self._rroot = fsspec.core.url_to_fs(self.remote)
            except (ImportError, ValueError) as exc:  # unknown protocol or its package missing
                from .errors import BenchError

                raise BenchError(f"artifact URL {self.remote!r}: {exc}") from None

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def _rpath(self, stage: str, key: str, name: str = "") -> str:
        return "/".join(x for x in (self._rroot.rstrip("/"), stage, key, name) if x)

    def exists(self, stage: str, key: str) -> bool:
        """Present locally or on the URL (without fetching it)."""
        if (self.path(stage, key) / META).is_file():
            return True
        return bool(self._fs) and self._fs.exists(self._rpath(stage, key, META))

    def get(self, stage: str, key: str) -> Artifact | None:
        path = self.path(stage, key)
        meta_file = path / META
        if not meta_file.is_file() and not self._fetch(stage, key):
            return None
        return Artifact(stage, key, path, json.loads(meta_file.read_text()), cached=True)

    def _fetch(self, stage: str, key: str) -> bool:
        if not self._fs or not self._fs.exists(self._rpath(stage, key, META)):
            return False
        tmp = self.root / ".tmp" / temp_name(f"fetch-{stage}-{key}")
        try:
            self._fs.get(self._rpath(stage, key) + "/", str(tmp) + "/", recursive=True)
            final = self.path(stage, key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:  # fetched concurrently by another process: theirs is the same
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return (self.path(stage, key) / META).is_file()

    def _push(self, stage: str, key: str) -> None:
        if not self._fs:
            return
        local = self.path(stage, key)
        for f in sorted(p for p in local.rglob("*") if p.is_file() and p.name != META):
            target = self._rpath(stage, key, str(f.relative_to(local)))
            self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self._fs.put_file(str(f), target)
        self._fs.makedirs(self._rpath(stage, key), exist_ok=True)
        self._fs.put_file(str(local / META), self._rpath(stage, key, META))  # last: marks it complete

    def temp_folders(self) -> list[tuple[Path, bool]]:
        """Work folders of stages being built, with whether they are stale (their process is gone)."""
        return temp_folders(self.root / ".tmp")

    def ensure(
        self, stage: str, key: str, build: Callable[[Path], dict[str, Any] | None], inputs: dict | None = None
    ) -> Artifact:
        """Return the artifact, building it with `build(tmp_dir) -> meta` only if missing."""
        found = self.get(stage, key)
        if found is not None:
            return found
        lock = FileLock(str(self.root / ".locks" / f"{stage}-{key}.lock"))
        with lock:
            found = self.get(stage, key)  # another process may have built it meanwhile
            if found is not None:
                return found
            remove_stale_temp(self.root / ".tmp")  # leftovers of killed runs
            tmp = self.root / ".tmp" / temp_name(f"{stage}-{key}")
            tmp.mkdir(parents=True)
            try:
                started = time.time()
                meta = dict(build(tmp) or {})
                meta.setdefault("seconds", round(time.time() - started, 3))
                meta["stage"], meta["key"] = stage, key
                if inputs is not None:
                    meta["inputs"] = inputs
                (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
                final = self.path(stage, key)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, final)  # atomic on one filesystem: the artifact appears whole or not at all
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            self._push(stage, key)
        art = self.get(stage, key)
        art.cached = False
        return art

    # -- maintenance ----------------------------------------------------------
    def usage(self) -> dict[str, tuple[int, int]]:
        """Per stage: (artifact count, bytes)."""
        out = {}
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            count = size = 0
            for art in stage_dir.iterdir():
                count += 1
                size += sum(f.stat().st_size for f in art.rglob("*") if f.is_file())
            out[stage_dir.name] = (count, size)
        return out

    def prune(self, stage: str | None = None, keep: set[str] | None = None) -> int:
        """Delete temp folders of killed runs (never one a live process is writing), and
        artifacts of `stage` not in `keep`."""
        removed = remove_stale_temp(self.root / ".tmp")
        if stage:
            stage_dir = self.root / stage
            for art in stage_dir.iterdir() if stage_dir.is_dir() else []:
                if keep is None or art.name not in keep:
                    shutil.rmtree(art, ignore_errors=True)
                    removed += 1
        return removed


# -- temporary build folders --------------------------------------------------------
# A build writes into a temp folder and renames it into place, so an artifact appears whole or
# not at all. A killed process leaves its temp folder behind: the name carries host and PID so
# the next run can tell a leftover (its process is gone) from a build in progress.
def temp_name(prefix: str) -> str:
    import socket

    return f"{prefix}~{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_folders(folder: Path, prefix: str = "") -> list[tuple[Path, bool]]:
    """(path, stale) for each temp folder; one without host/PID (older layout) counts as stale."""
    import socket

    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if not p.name.startswith(prefix):
            continue
        parts = p.name.split("~")
        if len(parts) >= 4 and parts[-3] != socket.gethostname():
            out.append((p, False))  # another machine's build on a shared disk: not ours to judge
            continue
        stale = len(parts) < 4 or not parts[-2].isdigit() or not _alive(int(parts[-2]))
        out.append((p, stale))
    return out


def remove_stale_temp(folder: Path, prefix: str = "") -> int:
    stale = [p for p, is_stale in temp_folders(folder, prefix) if is_stale]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)
