"""Peak memory of a stage, for the leaderboard's cost column. The process's resident set is
sampled from /proc every 20 ms while the stage runs (ru_maxrss would be the peak of the whole
process lifetime, not of this stage); on CUDA, torch's own peak allocator counter is added."""

from __future__ import annotations

import os
import threading
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """with PeakMemory() as pm: ...; pm.record() -> {"peak_rss_mib", "rss_start_mib"[, "cuda_peak_mib"]}."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.start, self.peak = interval, None, None
        self._stop = threading.Event()
        self._cuda = False

    def _sample(self) -> None:
        now = _rss()
        if now is not None and (self.peak is None or now > self.peak):
            self.peak = now

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakMemory":
        self.start = self.peak = _rss()
        try:
            import torch

            self._cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
            if self._cuda:
                torch.cuda.reset_peak_memory_stats()
        except ImportError:
            pass
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def record(self) -> dict[str, float]:
        mib = lambda b: round(b / 2**20, 1)  # noqa: E731
        out = {} if self.peak is None else {"peak_rss_mib": mib(self.peak), "rss_start_mib": mib(self.start)}
        if self._cuda:
            import torch

            out["cuda_peak_mib"] = mib(torch.cuda.max_memory_allocated())
        return out
