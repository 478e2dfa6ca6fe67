"""`bench export`: the leaderboard's tables as CSV, Markdown or LaTeX, one table per
protocol group, each preceded by its protocol statement. Read-only like the page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import data as D

FORMATS = ("csv", "md", "latex", "json")


def group_tables(home: Path, digits: int | None = 4) -> list[tuple[str, str, pd.DataFrame]]:
    """(group, protocol statement, display table) for every protocol group under home."""
    records, _ = D.load_records(home)
    cells, metrics = D.cells_frame(records), D.metrics_frame(records)
    if cells.empty:
        return []
    out = []
    for group in D.groups_frame(cells)["protocol_group"]:
        t = D.main_table(cells, metrics, group)
        rankable = [m for m in t.metric_cols if t.directions.get(m)]  # the page's default ranking
        frame = D.rank(t, rankable[0]) if rankable else t.frame
        out.append((group, D.describe_group(cells, group), D.display_frame(t, frame, digits=digits)))
    return out


def _md_cell(v: object) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"),
                 ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"), ("∞", r"$\infty$"), ("·", r"$\cdot$")):
        s = s.replace(a, b) if a != "\\" else s.replace(a, "\x00")
    return s.replace("\x00", r"\textbackslash{}")


def to_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    esc = df.copy()
    esc.columns = [_latex_escape(str(c)) for c in esc.columns]
    esc = esc.map(lambda v: _latex_escape(str(v)))
    return esc.style.hide(axis="index").to_latex(
        caption=_latex_escape(caption), label=label, hrules=True, position="ht", column_format="l" * len(esc.columns))


def render(home: Path, fmt: str) -> str:
    if fmt not in FORMATS or fmt == "json":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    tables = group_tables(home, digits=None if fmt == "csv" else 4)
    if not tables:
        return "" if fmt == "csv" else "no results yet: run `bench run ...` first\n"
    legend = ("Arrows: the direction of stronger protection; rows ranked by the first metric with a direction. "
              "Values are means over identities and seeds; "
              "'unavailable' = the metric could not run, 'undefined' = it ran but has no value "
              "(e.g. no face detected); '*' = mean over part of the cells. Cells of different "
              "protocol groups are never ranked together.")
    if fmt == "csv":
        frames = []
        for group, desc, df in tables:
            frames.append(df.assign(protocol_group=group, protocol=desc)[["protocol_group", "protocol", *df.columns]])
        return pd.concat(frames, ignore_index=True).to_csv(index=False)
    if fmt == "md":
        parts = ["# Leaderboard", "", legend, ""]
        for group, desc, df in tables:
            parts += [f"## Protocol group {group}", "", desc, "", to_markdown(df), ""]
        return "\n".join(parts)
    parts = [f"% {legend}"]
    for group, desc, df in tables:
        parts.append(to_latex(df, desc, f"tab:group-{group}"))
    return "\n\n".join(parts) + "\n"


def write_entries(home: Path, folder: Path) -> list[Path]:
    """`--format json`: one file per defense and protocol group (leaderboard/ranking.entries)."""
    import json
    import re

    from .ranking import entries

    records, _ = D.load_records(home)
    cells = D.cells_frame(records)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for group in ([] if cells.empty else D.groups_frame(cells)["protocol_group"]):
        for e in entries(records, group):
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", e["defense"]).strip("_")[:80]
            path = folder / f"{group}-{slug}.json"
            path.write_text(json.dumps(e, indent=1, sort_keys=True, default=str))
            paths.append(path)
    return paths


def from_entries(folder: Path) -> str:
    """The static Markdown leaderboard from entry files alone (no records, no database)."""
    import json

    from .ranking import static_page

    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise ValueError(f"{folder}: no entry files (write them with `bench export --format json --out {folder}`)")
    return static_page([json.loads(f.read_text()) for f in files])


def export(home: Path | None, fmt: str, out: Path | None = None) -> str:
    """Render and, when `out` is given, write the file; returns the text."""
    if fmt == "json":
        if out is None:
            raise ValueError("--format json writes one file per entry: give --out FOLDER")
        paths = write_entries(home or D.default_home(), Path(out))
        return f"wrote {len(paths)} entry file(s) to {out}\n"
    text = render(home or D.default_home(), fmt)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text
