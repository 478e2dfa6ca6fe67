"""Tamper-evident result bundles. `bench submit` packs a defense's records, the
plugin's metadata and the hashes of its artifacts into a zip whose manifest lists
the SHA-256 of every file; `bench ingest` checks the manifest, every hash, the
record schema and that each cell key is the hash of its protocol, then adds the
records to the results database. Nothing in a bundle is ever executed: it holds
JSON and PNGs only. (Integrity, not authorship: sign bundles out of band.)"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from . import __version__
from .artifacts import ArtifactStore, stable_hash
from .errors import BenchError
from .results import ResultsStore

FORMAT = "antipers-bench-bundle/1"
ALLOWED_SUFFIXES = {".json", ".png"}


class _RecordSchema(BaseModel):
    """The fields ingest relies on; extra fields are kept as they are."""

    model_config = ConfigDict(extra="allow")
    cell_key: str
    created: str
    protocol: dict[str, Any]
    protocol_group: str
    identity: str
    stages: dict[str, Any]
    metrics: dict[str, dict[str, Any]]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def submit(home: Path, defense: str, out: Path, registry, include_images: bool = True) -> Path:
    results = ResultsStore(home / "results")
    store = ArtifactStore(home / "artifacts")
    records = [json.loads(p.read_text()) for p in sorted(results.records.glob("*.json"))]
    records = [r for r in records if r["protocol"]["defense"]["name"] == defense]
    if not records:
        raise BenchError(f"bench submit: no results for defense {defense!r} in {home} (run it first)")
    cls = registry.get("defense", defense)
    files: dict[str, bytes] = {}
    for r in records:
        files[f"records/{r['cell_key']}.json"] = json.dumps(r, indent=1, sort_keys=True).encode()
        art = r["stages"]["defense"].get("artifact")
        folder = store.path("defense", art) / "images" if art else None
        if include_images and folder and folder.is_dir():
            for png in sorted(folder.glob("*.png")):
                files.setdefault(f"protected/{art}/{png.name}", png.read_bytes())
    files["plugin.json"] = json.dumps(cls.describe(), indent=1, sort_keys=True, default=str).encode()
    manifest = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "bench_version": __version__,
        "defense": defense,
        "plugin_version": cls.version,
        "files": {name: _sha(data) for name, data in sorted(files.items())},
    }
    manifest["bundle_hash"] = stable_hash(manifest["files"], length=64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return out


def verify(bundle: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return (manifest, records) or raise BenchError naming the first problem."""
    try:
        zf = zipfile.ZipFile(bundle)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BenchError(f"{bundle}: not a bundle ({exc})") from None
    with zf:
        names = set(zf.namelist())
        if "manifest.json" not in names:
            raise BenchError(f"{bundle}: no manifest.json")
        try:
            manifest = json.loads(zf.read("manifest.json"))
        except ValueError:
            raise BenchError(f"{bundle}: manifest.json is not JSON") from None
        if manifest.get("format") != FORMAT:
            raise BenchError(f"{bundle}: unknown bundle format {manifest.get('format')!r}")
        listed = manifest.get("files") or {}
        if stable_hash(listed, length=64) != manifest.get("bundle_hash"):
            raise BenchError(f"{bundle}: manifest was altered (bundle hash mismatch)")
        extra = names - set(listed) - {"manifest.json"}
        if extra:
            raise BenchError(f"{bundle}: files not in the manifest: {sorted(extra)[:3]}")
        records = []
        for name, digest in listed.items():
            if name.startswith("/") or ".." in Path(name).parts or Path(name).suffix not in ALLOWED_SUFFIXES:
                raise BenchError(f"{bundle}: refused entry {name!r} (only JSON and PNG inside the bundle)")
            if name not in names:
                raise BenchError(f"{bundle}: {name} listed in the manifest but missing")
            data = zf.read(name)
            if _sha(data) != digest:
                raise BenchError(f"{bundle}: {name} was modified (SHA-256 mismatch)")
            if name.startswith("records/"):
                try:
                    rec = _RecordSchema.model_validate_json(data).model_dump()
                except ValidationError as exc:
                    raise BenchError(f"{bundle}: {name} does not match the record schema ({exc.errors()[0]['msg']})") from None
                if stable_hash(rec["protocol"]) != rec["cell_key"]:
                    raise BenchError(f"{bundle}: {name}: the cell key is not the hash of its protocol")
                if rec["protocol"]["defense"]["name"] != manifest.get("defense"):
                    raise BenchError(f"{bundle}: {name} is not a result of defense {manifest.get('defense')!r}")
                records.append(rec)
        if not records:
            raise BenchError(f"{bundle}: no records")
    return manifest, records


def ingest(bundle: Path, home: Path) -> dict[str, Any]:
    manifest, records = verify(bundle)
    results = ResultsStore(home / "results")
    for rec in records:
        rec["submission"] = manifest["bundle_hash"][:16]
        results.add(rec)
    sub_dir = home / "submissions"
    sub_dir.mkdir(parents=True, exist_ok=True)
    summary = {k: manifest[k] for k in ("defense", "plugin_version", "bench_version", "created", "bundle_hash")}
    summary["records"] = [r["cell_key"] for r in records]
    summary["ingested"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    (sub_dir / f"{manifest['bundle_hash'][:16]}.json").write_text(json.dumps(summary, indent=1))
    return summary
