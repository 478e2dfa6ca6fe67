"""`bench` command line. Every user error exits with code 2 and one line on stderr."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Benchmark anti-personalization defenses.")
out = Console()
err = Console(stderr=True)

KIND_NAMES = {"defense": "defense", "defenses": "defense", "purifier": "purifier", "purifiers": "purifier",
              "attack": "attack", "attacks": "attack", "metric": "metric", "metrics": "metric"}


def _registry(plugins: list[str] | None):
    from .registry import Registry

    reg = Registry()
    for path in plugins or []:
        reg.add_file(path)
    return reg


def _fmt(v) -> str:
    """Cell text; escaped because metric ids like ism[dlib] look like rich markup."""
    from rich.markup import escape

    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return escape(str(v))


@app.command()
def run(
    ctx: typer.Context,
    defense: str = typer.Option("none", "--defense", "-d", help="defense plugin (name or alias), a comma list or all"),
    attack: str = typer.Option("dreambooth", "--attack", "-a", help="attack plugin, a comma list or all"),
    purifier: str = typer.Option("none", "--purifier", "-p", help="purifier, a chain like jpeg+gridpure, a comma list or all"),
    identity: Optional[str] = typer.Option(None, "--identity", "-i", help="identity in the dataset (default: first)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="data card name or path (default: the profile's)"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the dataset's identities"),
    profile: str = typer.Option("tiny", "--profile", help="tiny (offline CPU default) or paper"),
    seed: int = typer.Option(0, "--seed"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma list of metric ids, e.g. ism[dlib],fdfr[dlib]"),
    sets: list[str] = typer.Option([], "--set", help="override, e.g. defense.eps=8 (repeatable)"),
    config: Optional[Path] = typer.Option(None, "--config", help="cell YAML; flags and --set apply on top"),
    plugin: list[str] = typer.Option([], "--plugin", help="extra plugin file (repeatable)"),
    home: Optional[Path] = typer.Option(None, "--home", help="artifacts + results folder (default $BENCH_HOME or ./.bench)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    identities: Optional[str] = typer.Option(None, "--identities", help="comma list or 'all': one cell per identity"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="ray executor: cluster address (e.g. auto)"),
    workers: int = typer.Option(1, "--workers", help="local executor: processes for independent stages"),
    artifacts_url: Optional[str] = typer.Option(None, "--artifacts-url", help="fsspec URL shared by all workers (e.g. s3://bucket/bench); env BENCH_ARTIFACTS_URL"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan only"),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="also run (cached) the no-defense baseline and the "
                                 "equal-budget noise control of each cell and show the defense beside them"),
):
    """Run one cell (defense -> purifier -> attack -> metrics), or a matrix when a plugin is
    'all' or a comma list, several identities are given, or a numeric parameter several values
    (--set defense.eps=4,8,12,16); computes only what is not cached."""
    from .protocol import CellConfig
    from .runner import Runner
    from .sweep import expand, has_sweep, plugin_classes

    reg = _registry(plugin)
    base: dict = {}
    if config:
        base = CellConfig.from_yaml(config).model_dump()
    given = lambda name: ctx.get_parameter_source(name).name != "DEFAULT"  # noqa: E731
    flags = {"defense": defense, "attack": attack, "purifier": purifier, "profile": profile, "seed": seed}
    for key, value in flags.items():
        if given(key) or not config:
            base[key] = value if key not in ("defense", "attack") else {"name": value}
    ds = dict(base.get("dataset") or {})
    if identity:
        ds["identity"] = identity
    if dataset:
        ds["card"] = dataset
    if data_root:
        ds["root"] = data_root
    base["dataset"] = ds
    if metrics:
        base["metrics"] = metrics
    several = any(v == "all" or "," in v for v in (defense, purifier, attack))  # `-p none,jpeg`: one cell per plugin
    matrix = several or identities or has_sweep(sets, plugin_classes(reg, defense, attack))
    if matrix:
        cell = {k: v for k, v in base.items() if k not in ("defense", "purifier", "attack", "seed")}
        cfgs = expand(cell, defense, purifier, attack, identities, [seed], sets, reg)
    else:
        cfgs = [CellConfig.build(base, sets)]
    runner = Runner(home=home, registry=reg, device=device, quiet=quiet, log=lambda m: err.print(m, highlight=False),
                    plugin_files=plugin, artifacts_url=artifacts_url, compare=compare)
    _execute(runner, cfgs, executor, address, dry_run, show_plan=bool(matrix), workers=workers)


def _execute(runner, cfgs, executor: str, address: str | None, dry_run: bool, show_plan: bool, workers: int = 1) -> None:
    from .executors import LocalExecutor, RayExecutor

    if executor == "ray":
        ex = RayExecutor(address=address)
    elif executor == "local":
        ex = LocalExecutor(workers)
    else:
        raise BenchError(f"unknown executor {executor!r}; choose local or ray")
    plan = runner.plan(cfgs)
    if show_plan or dry_run:
        _print_plan(plan, runner)
    if dry_run:
        return
    if len(cfgs) == 1:
        c = cfgs[0]
        err.print(f"[bold]cell[/bold] {c.defense.name} / {'+'.join(p.name for p in c.purifier)} / {c.attack.name} "
                  f"({c.profile} profile, home {runner.home})", highlight=False)
    from .runner import CellsFailed

    try:
        records = runner.run_many(cfgs, ex, plan)
    except CellsFailed as exc:  # the finished cells are recorded and shown; the failed ones listed, exit 2
        if exc.records:
            _print_cells(exc.records)
        if exc.records or len(exc.failures) > 1:  # one failed cell alone: its one line says it all
            _print_failures(exc.failures, runner)
        raise
    if len(records) == 1:
        _print_record(records[0])
    else:
        _print_cells(records)


def _print_failures(failures: list[dict], runner) -> None:
    t = Table(title=f"{len(failures)} cell(s) failed (also in {runner.results.root / 'failed'}; a rerun retries them)",
              title_justify="left")
    for col in ("identity", "defense", "purifier", "attack", "role", "stage", "plugin", "reason"):
        t.add_column(col)
    for f in failures:
        p = f["protocol"]
        t.add_row(f["identity"], p["defense"]["name"], "+".join(x["name"] for x in p["purifier"]), p["attack"]["name"],
                  f.get("role", "cell"), f["stage"], _fmt(f["plugin"]), _fmt(f["reason"]))
    out.print(t)


def _print_plan(plan, runner) -> None:
    rows = plan.summary(runner.store)
    t = Table(title=f"plan: {len(plan.cells)} cells, {len(plan.stages)} unique stages", title_justify="left")
    for col in ("stage", "plugin", "total", "cached", "to compute", "est. seconds"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["stage"], _fmt(r["plugin"]), str(r["total"]), str(r["cached"]), str(r["to_compute"]),
                  "?" if r["est_seconds"] is None else f"{r['est_seconds']:.0f}")
    todo = sum(r["to_compute"] for r in rows)
    known = [r["est_seconds"] for r in rows if r["to_compute"] and r["est_seconds"] is not None]
    out.print(t)
    out.print(f"{todo} stages to compute, {len(plan.stages) - todo} cached; estimated {sum(known):.0f} s for the stages "
              f"with timing history" + (" (others unknown)" if len(known) < sum(1 for r in rows if r["to_compute"]) else ""))


def _print_cells(records: list[dict]) -> None:
    ids = sorted({m for r in records for m in r["metrics"]})
    t = Table(title=f"{len(records)} cells", title_justify="left")
    for col in ("identity", "defense", "purifier", "attack", "seed", *ids):
        t.add_column(_fmt(col))
    for r in records:
        p = r["protocol"]
        vals = [r["metrics"].get(m, {}) for m in ids]
        t.add_row(r["identity"], p["defense"]["name"], "+".join(x["name"] for x in p["purifier"]), p["attack"]["name"],
                  str(p["seed"]), *[_fmt(v.get("value")) if v.get("status") == "ok" else _fmt(v.get("status")) for v in vals])
    out.print(t)
    _print_statistics(records)
    out.print(f"records in {records[0]['_run']['record_path'].rsplit('/', 1)[0]}")


def _print_statistics(records: list[dict]) -> None:
    """Over identities, per (defense, purifier, attack) and metric: mean [95% CI], the same
    for the no-defense baseline and the equal-budget noise, the protection and its paired
    Wilcoxon p (n = identities with both values)."""
    from .stats import paired_comparison

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        p = r["protocol"]
        if "compare" not in r:
            continue
        key = (p["defense"]["name"], "+".join(x["name"] for x in p["purifier"]), p["attack"]["name"], p["seed"])
        groups.setdefault(key, []).append(r)
    groups = {k: v for k, v in groups.items() if len({r["identity"] for r in v}) > 1}
    if not groups:
        return
    t = Table(title="over identities: mean [bootstrap 95% CI]; protection > 0 hurts the attacker; paired Wilcoxon p",
              title_justify="left")
    for col in ("defense", "purifier", "attack", "metric", "n", "defense value", "no defense", "protection vs none", "p",
                "noise", "protection vs noise", "p (noise)"):
        t.add_column(_fmt(col))
    ci = lambda m, c: f"{m:.3g} [{c[0]:.3g}, {c[1]:.3g}]" if np.isfinite(m) else "-"  # noqa: E731
    for (d, pur, att, _), recs in groups.items():
        for mid in recs[0]["metrics"]:
            vals = [r["metrics"].get(mid, {}).get("value") if r["metrics"].get(mid, {}).get("status") == "ok" else None for r in recs]
            comps = {role: [r["compare"].get(role, {}).get("metrics", {}).get(mid) for r in recs]
                     for role in ("baseline", "noise") if all(role in r["compare"] for r in recs)}
            s = paired_comparison(vals, comps, recs[0]["metrics"][mid].get("higher_is_better"))
            row = [d, pur, att, _fmt(mid), str(s["n"]), ci(s["mean"], s["ci"])]
            for role in ("baseline", "noise"):
                c = s.get(role)
                if c is None:
                    row += ["-", "-", "-"]
                    continue
                p = "-" if not np.isfinite(c["p_value"]) else f"{c['p_value']:.3g}"
                row += [f"{c['mean']:.3g}", ci(c["protection"], c["protection_ci"]) + f" (n={c['n_pairs']})", p]
            t.add_row(*row)
    out.print(t)


@app.command()
def sweep(
    path: Path = typer.Argument(..., help="sweep YAML (see bench/sweep.py for the format)"),
    sets: list[str] = typer.Option([], "--set", help="override applied to every cell"),
    plugin: list[str] = typer.Option([], "--plugin"),
    home: Optional[Path] = typer.Option(None, "--home"),
    device: Optional[str] = typer.Option(None, "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    address: Optional[str] = typer.Option(None, "--address"),
    workers: int = typer.Option(1, "--workers", help="local executor: processes for independent stages"),
    artifacts_url: Optional[str] = typer.Option(None, "--artifacts-url", help="fsspec URL shared by all workers (e.g. s3://bucket/bench); env BENCH_ARTIFACTS_URL"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan only"),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="also run each cell's baseline and noise control"),
):
    """Run a matrix of cells from a sweep file; prints the plan first."""
    from .runner import Runner
    from .sweep import load_sweep

    reg = _registry(plugin)
    cfgs = load_sweep(path, reg, sets)
    runner = Runner(home=home, registry=reg, device=device, quiet=quiet, log=lambda m: err.print(m, highlight=False),
                    plugin_files=plugin, artifacts_url=artifacts_url, compare=compare)
    _execute(runner, cfgs, executor, address, dry_run, show_plan=True, workers=workers)


def _print_record(record: dict) -> None:
    run_info = record.get("_run", {})
    t = Table(title="stages", title_justify="left")
    for col in ("stage", "what", "status", "seconds"):
        t.add_column(col)
    computed = 0
    for stage, label, cached, seconds in run_info.get("stages", []):
        computed += not cached
        t.add_row(stage, _fmt(label), "cached" if cached else "computed", f"{seconds:.2f}")
    out.print(t)
    d = record["stages"]["defense"]
    if d.get("level") == "image":
        out.print(
            f"defense {record['protocol']['defense']['name']}: measured L-inf {d['measured_linf']}/255 "
            f"(budget {_fmt(d['budget'])}/255), PSNR {_fmt(d['psnr'])} dB, SSIM {_fmt(d['ssim'])}, "
            f"{_fmt(d['seconds_per_image'])} s/image"
        )
    cmp = record.get("compare") or {}
    roles = [r for r in ("baseline", "noise") if r in cmp]
    title = f"metrics ({record['protocol']['profile']} profile, group {record['protocol_group']})"
    if roles:
        title += "; beside the same cell with " + " and ".join(
            "no defense" if r == "baseline" else f"noise at {_fmt(cmp[r]['defense']['params'].get('eps'))}/255" for r in roles)
    m = Table(title=title, title_justify="left")
    name = record["protocol"]["defense"]["name"]
    for col in ("metric", name, *[("none" if r == "baseline" else "noise") for r in roles],
                *[f"protection vs {'none' if r == 'baseline' else 'noise'}" for r in roles], "better", "status"):
        m.add_column(_fmt(col))
    for mid, v in record["metrics"].items():
        arrow = {True: "higher", False: "lower", None: ""}[v.get("higher_is_better")]
        value = _fmt(v["value"])
        if v["value"] is None and v["status"] == "ok":
            value = _fmt(f"n/a: {(v.get('extra') or {}).get('undefined', 'undefined')}")
        others = [_fmt(cmp[r]["metrics"].get(mid)) for r in roles]
        prot = [_fmt((cmp["protection"].get(mid) or {}).get(f"vs_{r}")) for r in roles]
        m.add_row(_fmt(mid), value, *others, *prot, arrow, _fmt(v["status"]))
    out.print(m)
    if roles:
        out.print("protection = the change the defense causes, signed so that > 0 is worse for the attacker "
                  "(one identity, one seed: run --identities all for a confidence interval and a paired test)")
    idr = (record["metrics"].get("idr[dlib]") or {}).get("extra") or {}
    if "control_rate" in idr:
        out.print(f"identification control: the unpersonalised model's samples are identified as the subject in "
                  f"{idr['control_rate']:.2f} of faces (chance {idr['chance']:.2f}; ISM to the subject "
                  f"{_fmt(idr.get('control_ism_subject'))} vs {_fmt(idr.get('ism_subject'))} after personalisation)")
    if record.get("control"):
        c = record["control"]
        ct = Table(title=f"control: non-target identity {c['identity']!r} personalized on the protected vs the base model",
                   title_justify="left")
        for col in ("metric", "protected model", "base model"):
            ct.add_column(col)
        for mid, v in c["protected"]["metrics"].items():
            ct.add_row(_fmt(mid), _fmt(v["value"]), _fmt(c["base"]["metrics"].get(mid, {}).get("value")))
        out.print(ct)
    if computed == 0:
        out.print(f"every stage came from the cache ({run_info.get('seconds', 0):.1f} s)")
    out.print(f"record: {run_info.get('record_path')}")


@app.command("list")
def list_plugins(
    kind: Optional[str] = typer.Argument(None, help="defense | purifier | attack | metric (default: all)"),
    plugin: list[str] = typer.Option([], "--plugin", help="extra plugin file"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """List plugins with their parameters, per-profile defaults and sources."""
    reg = _registry(plugin)
    kinds = ["defense", "purifier", "attack", "metric"]
    if kind:
        if kind not in KIND_NAMES:
            raise BenchError(f"unknown kind {kind!r}; choose one of {', '.join(kinds)}")
        kinds = [KIND_NAMES[kind]]
    described = []
    for k in kinds:
        for name in reg.names(k):
            try:
                described.append(reg.get(k, name).describe())
            except BenchError as exc:
                described.append({"kind": k, "name": name, "summary": f"(failed to load: {exc})", "params": [], "aliases": [], "version": "?"})
    if as_json:
        out.print_json(json.dumps(described, default=str))
        return
    for k in kinds:
        t = Table(title=f"{k}s", title_justify="left", show_lines=False)
        for col in ("name", "aliases", "version", "summary", "parameters (tiny / paper) [source]"):
            t.add_column(col, overflow="fold")
        for d in (x for x in described if x["kind"] == k):
            params = "\n".join(
                f"{p['name']}={_fmt(p['tiny'])}" + (f" / {_fmt(p['paper'])}" if p["paper"] != p["tiny"] else "")
                + (f" {p['unit']}" if p.get("unit") else "") + (f" [{p['source']}]" if p.get("source") else "")
                for p in d["params"]
            )
            t.add_row(_fmt(d["name"]), _fmt(", ".join(d["aliases"])), _fmt(d["version"]), _fmt(d["summary"]), _fmt(params or "-"))
        out.print(t)


@app.command()
def show(
    home: Optional[Path] = typer.Option(None, "--home"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="also write the table as CSV"),
    weights: bool = typer.Option(False, "--weights", help="print the SHA-256 of every weight file each result was "
                                 "computed with (base model of the defense and of the attack)"),
):
    """Results table (one row per cell) from the results database."""
    from .results import ResultsStore
    from .runner import default_home

    store = ResultsStore((home or default_home()) / "results")
    df = store.table()
    if df.empty:
        out.print("no results yet: run `bench run ...` first")
        return
    if weights:
        for _, row in df.iterrows():
            rec = store.get(row["cell_key"])
            out.print(f"[bold]{row['cell_key']}[/bold] {row['identity']} {row['defense']} / {row['purifier']} / {row['attack']}",
                      highlight=False)
            for stage in ("defense", "personalize"):
                for f, h in sorted(((rec or {}).get("stages", {}).get(stage, {}).get("base_weights") or {}).items()):
                    out.print(f"  {stage}: {f} sha256 {h}", highlight=False, soft_wrap=True)  # a hash is never split
        return
    if csv:
        df.to_csv(csv, index=False)
        err.print(f"wrote {csv}")
    meta = {"created", "record_path", "protocol_group", "defense_version", "cell_key"}
    cols = [c for c in df.columns if c not in meta]
    t = Table(title=f"results ({len(df)} cells)", title_justify="left")
    for c in cols:
        t.add_column(_fmt(c), overflow="fold")
    for _, row in df.iterrows():
        t.add_row(*[_fmt(row[c]) for c in cols])
    out.print(t)


@app.command()
def cache(
    home: Optional[Path] = typer.Option(None, "--home"),
    prune: Optional[str] = typer.Option(None, "--prune", help="delete all artifacts of this stage, or only the temp "
                                        "folders of killed runs with `temp` (any prune removes those)"),
):
    """Artifact cache: size per stage; --prune STAGE frees space."""
    from .artifacts import ArtifactStore, remove_stale_temp, temp_folders
    from .runner import default_home

    home = home or default_home()
    zoo_root = Path(os.environ.get("BENCH_ZOO", home / "zoo")).expanduser()  # as Context.zoo_root
    store = ArtifactStore(home / "artifacts")
    if prune:
        n = store.prune(prune if prune != "temp" else None) + remove_stale_temp(zoo_root, ".tmp-")
        out.print(f"removed {n} folders")
    t = Table(title=f"artifact cache {store.root}", title_justify="left")
    for col in ("stage", "artifacts", "MB"):
        t.add_column(col)
    total = 0
    for stage, (count, size) in store.usage().items():
        total += size
        t.add_row(stage, str(count), f"{size / 1e6:.1f}")
    t.add_row("total", "", f"{total / 1e6:.1f}")
    out.print(t)
    temps = store.temp_folders() + temp_folders(zoo_root, ".tmp-")
    for path, stale in temps:
        mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        out.print(f"temp folder {path} ({mb:.1f} MB): " + ("left by a killed run; `bench cache --prune temp` removes it"
                                                          if stale else "a build in progress"))


@app.command()
def data(
    card: Optional[str] = typer.Argument(None, help="card name (default: list all cards)"),
    root: Optional[str] = typer.Option(None, "--root", help="dataset root, to list identities"),
):
    """Data cards: list them, or show one card and its identities."""
    from . import data as data_mod

    if not card:
        for name in data_mod.card_names():
            c = data_mod.load_card(name)
            out.print(f"[bold]{name}[/bold]  {c.get('title', '')}  (layout {c['layout']}, licence: {c['licence']})")
        return
    c = data_mod.load_card(card)
    out.print_json(json.dumps(c, default=str))
    if c["layout"] in ("antidb", "flat", "sample") and (root or c.get("root") or c["layout"] == "sample"):
        out.print("identities: " + ", ".join(data_mod.identities(c, root)))


@app.command()
def new(
    kind: str = typer.Argument(..., help="defense | purifier | metric"),
    name: str = typer.Argument(..., help="plugin name, e.g. my-defense"),
    folder: Path = typer.Option(Path("."), "--dir", help="where to create bench-<name>/"),
):
    """Scaffold a plugin package (entry point, class, conformance test)."""
    from .kit import scaffold

    root = scaffold(kind, name, folder)
    out.print(f"created {root}: pip install -e {root} && bench check plugin {name} --kind {kind}")


@app.command()
def train(
    what: str = typer.Argument(..., help="the defense whose model to train (one with a train hook: rid)"),
    base: str = typer.Option("zoo:tiny-sd", "--base", help="base model (hub id, folder or zoo:NAME)"),
    sets: list[str] = typer.Option([], "--set", help="defense parameter, e.g. train_steps=200 (repeatable)"),
    out: Optional[Path] = typer.Option(None, "--out", help="also copy the weights here (.safetensors)"),
    home: Optional[Path] = typer.Option(None, "--home", help="artifacts home (default $BENCH_HOME or ./.bench)"),
    device: Optional[str] = typer.Option(None, "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train a learned defense's model into the artifact cache, through the plugin's own `train`
    hook (RID: defenses/rid_train.py)."""
    from .registry import Registry
    from .runner import check_device, default_device, default_home

    reg = Registry()
    cls = reg.get("defense", what)
    if cls.train is None:
        trainable = [n for n in reg.names("defense") if reg.get("defense", n).train is not None]
        raise BenchError(f"bench train: defense {cls.name!r} has nothing to train; trainable: {trainable}")
    cls.train(base, home or default_home(), sets, out, check_device(device or default_device()), quiet,
              log=lambda m: err.print(m, highlight=False))


check_app = typer.Typer(help="Conformance checks.", no_args_is_help=True)
app.add_typer(check_app, name="check")


@check_app.command("plugin")
def check_plugin_cmd(
    name: str = typer.Argument(..., help="plugin name"),
    kind: str = typer.Option("defense", "--kind", help="defense | purifier | attack | metric"),
    plugin: list[str] = typer.Option([], "--plugin", help="plugin file not installed as a package"),
    sets: list[str] = typer.Option([], "--set", help="plugin parameter for the behavioural checks, e.g. steps=20"),
):
    """Conformance: schema, modes and shapes, determinism, budget on saved PNGs, speed."""
    from .kit import check_plugin
    from .params import parse_assignments

    if kind not in KIND_NAMES:
        raise BenchError(f"unknown kind {kind!r}")
    params = parse_assignments(sets, kind, "steps=20")
    report = check_plugin(KIND_NAMES[kind], name, plugin_files=plugin, params=params)
    out.print(_fmt(report.text()))
    if not report.passed:
        sys.exit(1)


@app.command()
def submit(
    defense: str = typer.Option(..., "--defense", help="the defense whose results to package"),
    output: Path = typer.Option(Path("submission.zip"), "--out"),
    home: Optional[Path] = typer.Option(None, "--home"),
    plugin: list[str] = typer.Option([], "--plugin"),
):
    """Package a defense's results into a hash-verified bundle."""
    from .runner import default_home
    from .submissions import submit as do_submit

    path = do_submit(home or default_home(), defense, output, _registry(plugin))
    out.print(f"wrote {path}")


@app.command()
def ingest(
    bundle: Path = typer.Argument(..., help="a bundle written by bench submit"),
    home: Optional[Path] = typer.Option(None, "--home"),
):
    """Validate a bundle (schema, hashes) and add it to the results database. Runs no code."""
    from .runner import default_home
    from .submissions import ingest as do_ingest

    summary = do_ingest(bundle, home or default_home())
    out.print(f"ingested {len(summary['records'])} records of {summary['defense']} (bundle {summary['bundle_hash'][:16]})")


@app.command()
def leaderboard(
    port: int = typer.Option(8501, "--port", help="local port; the page listens on 127.0.0.1 only"),
    home: Optional[Path] = typer.Option(None, "--home", help="results home (default $BENCH_HOME or ./.bench)"),
):
    """Leaderboard web page (Streamlit) on the results of a home; read-only."""
    from leaderboard.serve import serve

    try:
        serve(home, port)
    except (RuntimeError, ValueError) as exc:
        raise BenchError(str(exc)) from None


@app.command()
def export(
    fmt: str = typer.Option("md", "--format", help="csv | md | latex | json (one file per defense and protocol group)"),
    out_path: Optional[Path] = typer.Option(None, "--out", help="file to write (default: print); a folder for json"),
    home: Optional[Path] = typer.Option(None, "--home", help="results home (default $BENCH_HOME or ./.bench)"),
    from_entries: Optional[Path] = typer.Option(None, "--from-entries", help="build the static Markdown leaderboard "
                                                "from a folder of json entry files alone"),
):
    """The leaderboard tables, one per protocol group, as CSV, Markdown or LaTeX; per-entry JSON;
    or a static leaderboard from those JSON files."""
    from leaderboard.export import export as export_tables
    from leaderboard.export import from_entries as page_from_entries

    try:
        if from_entries is not None:
            text = page_from_entries(from_entries)
            if out_path:
                out_path.write_text(text)
        else:
            text = export_tables(home, fmt, out_path)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    if out_path:
        err.print(f"wrote {out_path}")
    else:
        sys.stdout.write(text)


def run_cli(argv: list[str] | None = None) -> int:
    """The CLI as a function: prints, returns the exit code (the reliability corpus runs it in-process)."""
    try:
        app(args=argv, standalone_mode=False)
    except BenchError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted: finished stages are cached; rerun the same command to resume")
        return 130
    except typer.Abort:
        return 1
    except Exception as exc:  # usage errors (bad option...) carry their own exit code
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return exc.exit_code
        if type(exc).__name__ == "Exit" and hasattr(exc, "exit_code"):
            return exc.exit_code
        raise
    return 0


def main() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
