"""Executors run a Plan's stages in dependency order, skipping cached ones.

local: in this process, in dependency order (default), optionally with a process pool
for independent stages (`--workers N`); ray: an existing Ray cluster (`--executor ray --address
auto`) that places stages by their declared resources, retries failed ones and
reads/writes artifacts on a filesystem all workers share."""

from __future__ import annotations

import time
from typing import Callable

from .errors import BenchError
from .planner import Plan
from .stages import StageEnv, StageSpec, execute

Report = Callable[[StageSpec, bool, float], None]  # (stage, cached, seconds)


Failures = dict  # stage id -> one-line reason (failed, or not run because an upstream stage failed)


def _ready(plan: Plan, done: set, running: set, failed: Failures) -> list[StageSpec]:
    return [st for sid, st in plan.stages.items() if sid not in done and sid not in running and sid not in failed
            and all(d in done for d in st.deps)]


def _fail(plan: Plan, failed: Failures, st: StageSpec, exc: BenchError, log) -> None:
    failed[st.id] = str(exc)
    log(f"  FAILED {st.kind} {st.label}: {exc}")
    _block_downstream(plan, failed)


def _block_downstream(plan: Plan, failed: Failures) -> None:
    """Stages that need a failed stage cannot run: record why, so the others go on."""
    changed = True
    while changed:
        changed = False
        for sid, st in plan.stages.items():
            if sid in failed:
                continue
            bad = next((d for d in st.deps if d in failed), None)
            if bad is not None:
                up = plan.stages[bad]
                failed[sid] = failed[bad] if failed[bad].startswith("not run") else f"not run: {up.kind} stage {up.label!r} failed"
                changed = True


def _run_one(env: StageEnv, spec: StageSpec) -> tuple[tuple[str, str], bool, float]:
    started = time.time()
    art = execute(env, spec, log=lambda m: None if env.quiet else print(m))
    return spec.id, art.cached, float(art.meta.get("seconds", time.time() - started))


class LocalExecutor:
    """In this process, in dependency order; with `workers > 1`, independent stages run
    in a pool of spawned processes, each given threads // workers torch threads so the
    pool does not oversubscribe the cores (floats may then differ from a sequential run
    in the last digits: CPU reductions depend on the thread split).

    A failing stage (a BenchError, or a plugin fault that stages.execute turned into one)
    is recorded with its reason and the stages that need it are skipped; every other
    stage still runs. `run` returns the failures."""

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise BenchError(f"--workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, plan: Plan, env: StageEnv, report: Report, log=print) -> Failures:
        store = env.store()
        done = {sid for sid, cached in plan.status(store).items() if cached}
        for sid in done:
            report(plan.stages[sid], True, float(store.get(*sid).meta.get("seconds", 0.0)))
        failed: Failures = {}
        if self.workers > 1:
            self._pool(plan, env, report, done, failed, log)
            return failed
        while len(done) + len(failed) < len(plan.stages):
            ready = _ready(plan, done, set(), failed)
            if not ready:
                raise BenchError("internal: the stage graph has a cycle or a missing dependency")
            for st in ready:
                try:
                    art = execute(env, st, log)
                except BenchError as exc:
                    _fail(plan, failed, st, exc, log)
                    continue
                done.add(st.id)
                report(st, art.cached, float(art.meta.get("seconds", 0.0)))
        return failed

    def _pool(self, plan: Plan, env: StageEnv, report: Report, done: set, failed: Failures, log) -> None:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from dataclasses import replace

        worker_env = replace(env, threads=max(1, env.threads // self.workers))
        running: dict = {}
        # spawn: a forked child would inherit torch's thread pools and locks from this process
        with ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn")) as pool:
            while len(done) + len(failed) < len(plan.stages):
                for st in _ready(plan, done, {s.id for s in running.values()}, failed)[: self.workers - len(running)]:
                    running[pool.submit(_run_one, worker_env, st)] = st
                if not running:
                    raise BenchError("internal: the stage graph has a cycle or a missing dependency")
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    st = running.pop(fut)
                    try:
                        sid, cached, seconds = fut.result()  # a BenchError in a worker is re-raised here
                    except BenchError as exc:
                        _fail(plan, failed, st, exc, log)
                        continue
                    done.add(sid)
                    report(st, cached, seconds)


class RayExecutor:
    """Stages become Ray tasks; a task waits for its upstream tasks' results.
    GPU stages request `num_gpus=1` when their plugin declares GPU memory and the
    cluster has GPUs; failed tasks (a killed worker) are retried `retries` times."""

    def __init__(self, address: str | None = None, retries: int = 2, num_cpus: int | None = None):
        self.address, self.retries, self.num_cpus = address, retries, num_cpus

    def run(self, plan: Plan, env: StageEnv, report: Report, log=print) -> Failures:
        try:
            import ray
        except ImportError:
            raise BenchError("the ray executor needs Ray: pip install 'ray[default]'") from None
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.num_cpus}
            ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)
        gpus = ray.cluster_resources().get("GPU", 0)
        store = env.store()
        cached = plan.status(store)

        @ray.remote(max_retries=self.retries, retry_exceptions=False)
        def task(env: StageEnv, spec: StageSpec, *upstream):
            return _run_one(env, spec)

        refs: dict = {}
        pending = {}
        for sid, st in plan.stages.items():  # insertion order is a dependency order
            if cached[sid]:
                report(st, True, float(store.get(*sid).meta.get("seconds", 0.0)))
                continue
            opts = {"num_gpus": 1} if gpus and st.needs else {}
            ref = task.options(**opts).remote(env, st, *[refs[d] for d in st.deps if d in refs])
            refs[sid] = ref
            pending[ref] = st
        failed: Failures = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            st = pending.pop(ready[0])
            try:
                _, was_cached, seconds = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # this stage failed, or an upstream one did
                cause = getattr(exc, "cause", None)
                up = next((d for d in st.deps if d in failed), None)
                if up is not None:
                    failed[st.id] = f"not run: {plan.stages[up].kind} stage {plan.stages[up].label!r} failed"
                else:
                    failed[st.id] = str(cause) if isinstance(cause, BenchError) else f"{st.kind} stage {st.label!r}: {type(exc).__name__}"
                    log(f"  FAILED {st.kind} {st.label}: {failed[st.id]}")
                continue
            report(st, was_cached, seconds)
        return failed
