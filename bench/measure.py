"""Timing primitives: child processes timed with their peak memory, and summaries of repeats."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
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
    cpu_s: float = 0.0  # user + system CPU of the command (its own rusage)
    spawned_at: float = 0.0  # wall clock (time.time) when the command was spawned


# Peak RSS must be taken from a small parent. Linux starts a child's `ru_maxrss` at the RSS of
# the memory image it had at exec: with vfork (what subprocess uses) or fork that is the
# *spawning* process's image, so a child spawned by this harness (hundreds of MB after a listing
# of 10,000 jobs) would report at least the harness's size. A fresh interpreter (~10 MB) spawns
# the measured command instead and reports its wall time (spawn to reaping) and rusage.
_TRAMPOLINE = """
import json, os, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
at, start = time.time(), time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
os.write(report, json.dumps({"code": os.waitstatus_to_exitcode(status), "wall": wall,
                             "maxrss_kb": usage.ru_maxrss,
                             "cpu": usage.ru_utime + usage.ru_stime, "at": at}).encode())
"""


def run_child(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 900.0,
) -> ChildRun:
    """Run `command`, timed from spawn to reaping, with its own peak RSS (wait4's rusage, taken
    by a small trampoline process: see `_TRAMPOLINE`).

    Output goes to temporary files (no pipe can fill up and stall the child). A child still
    running after `timeout_s` is killed; on Ctrl-C it is killed before the interrupt propagates.
    """
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.Popen([sys.executable, "-c", _TRAMPOLINE, str(write_end), *command], cwd=cwd,
                                    env=env, stdout=out, stderr=err, text=True, pass_fds=(write_end,),
                                    start_new_session=True)  # a process group: kills reach the command
        finally:
            os.close(write_end)
        expired = threading.Event()

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        def expire() -> None:
            expired.set()
            kill()

        watchdog = threading.Timer(timeout_s, expire)
        watchdog.start()
        try:
            with os.fdopen(read_end, "rb") as report_pipe:
                report = report_pipe.read()
            proc.wait()
        except BaseException:
            kill()
            proc.wait()
            raise
        finally:
            watchdog.cancel()
        out.seek(0)
        err.seek(0)
        if not report:  # the trampoline itself was killed (timeout) or failed
            return ChildRun(proc.returncode if proc.returncode else -9, float(timeout_s), 0.0,
                            out.read(), err.read(), expired.is_set())
        figures = json.loads(report)
        return ChildRun(figures["code"], figures["wall"], figures["maxrss_kb"] / 1024, out.read(), err.read(),
                        expired.is_set(), figures["cpu"], figures["at"])


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
