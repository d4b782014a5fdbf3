"""Timing primitives: child processes timed with their peak memory, and summaries of repeats."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ChildRun:
    """One finished child process."""

    code: int
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    timed_out: bool


def run_child(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 900.0,
) -> ChildRun:
    """Run `command`, timing it from spawn to reaping; its peak RSS comes from wait4's rusage.

    Output goes to temporary files (no pipe can fill up and stall the child). A child still
    running after `timeout_s` is killed; on Ctrl-C it is killed before the interrupt propagates.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        watchdog = threading.Timer(timeout_s, expire)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return ChildRun(
            proc.returncode, wall, usage.ru_maxrss / 1024, out.read(), err.read(), expired.is_set()
        )


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median and minimum of repeated measurements, with every run."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "runs": [round(v, 6) for v in values],
    }


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is zero."""
    return numerator / denominator if denominator else None


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Run `action`; return its wall time in seconds (perf_counter) and its result."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result
