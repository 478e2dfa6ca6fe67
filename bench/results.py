"""Results: one immutable JSON record per cell, and an SQLite index the
leaderboard and `bench show` read. Records are never rewritten."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .images import atomic_write_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
  cell_key TEXT PRIMARY KEY,
  created TEXT, profile TEXT, protocol_group TEXT, dataset TEXT, identity TEXT,
  defense TEXT, defense_version TEXT, purifier TEXT, attack TEXT, base_model TEXT,
  seed INTEGER, budget REAL, measured_linf REAL, defense_seconds_per_image REAL,
  record_path TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
  cell_key TEXT, metric_id TEXT, value REAL, status TEXT, higher_is_better INTEGER,
  PRIMARY KEY (cell_key, metric_id)
);
"""


class ResultsStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.records = self.root / "records"
        self.records.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "results.db"
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path)

    def record_path(self, cell_key: str) -> Path:
        return self.records / f"{cell_key}.json"

    def get(self, cell_key: str) -> dict[str, Any] | None:
        p = self.record_path(cell_key)
        return json.loads(p.read_text()) if p.is_file() else None

    def failure_path(self, cell_key: str) -> Path:
        return self.root / "failed" / f"{cell_key}.json"

    def add_failure(self, failure: dict[str, Any]) -> None:
        """Why a cell could not finish (latest run only: a rerun retries it)."""
        path = self.failure_path(failure["cell_key"])
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(failure, indent=1, sort_keys=True, default=str))

    def clear_failure(self, cell_key: str) -> None:
        self.failure_path(cell_key).unlink(missing_ok=True)

    def failures(self) -> list[dict[str, Any]]:
        folder = self.root / "failed"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def add(self, record: dict[str, Any]) -> Path:
        """Write the record once (immutable) and index it."""
        path = self.record_path(record["cell_key"])
        if not path.exists():
            atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))
        self.index(json.loads(path.read_text()), path)
        return path

    def index(self, record: dict[str, Any], path: Path) -> None:
        p = record["protocol"]
        d = record["stages"].get("defense", {})
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record["cell_key"],
                    record["created"],
                    p["profile"],
                    record["protocol_group"],
                    p["dataset"].get("card"),
                    record["identity"],
                    p["defense"]["name"],
                    p["defense"]["version"],
                    "+".join(x["name"] for x in p["purifier"]),
                    p["attack"]["name"],
                    p["base_model"].get("id") or p["base_model"].get("path"),
                    p["seed"],
                    d.get("budget"),
                    d.get("measured_linf"),
                    d.get("seconds_per_image"),
                    str(path),
                ),
            )
            for mid, m in record["metrics"].items():
                hib = m.get("higher_is_better")
                db.execute(
                    "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)",
                    (record["cell_key"], mid, m.get("value"), m.get("status"), None if hib is None else int(hib)),
                )

    def table(self):
        """Cells x metrics as a pandas DataFrame (one row per cell)."""
        import pandas as pd

        with self._db() as db:
            cells = pd.read_sql_query("SELECT * FROM cells", db)
            metrics = pd.read_sql_query("SELECT * FROM metrics", db)
        if cells.empty:
            return cells
        values = metrics.assign(
            shown=[v if s == "ok" else s for v, s in zip(metrics["value"], metrics["status"])]
        ).pivot(index="cell_key", columns="metric_id", values="shown")
        return cells.set_index("cell_key").join(values).reset_index()
