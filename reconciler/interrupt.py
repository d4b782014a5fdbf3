"""A process-wide stop request: set when the user presses Ctrl-C or the run gets SIGTERM.

Long waits (retry back-off, quota pacing, page loops, polling) call `sleep` or `check` instead of
`time.sleep`, so that a run ends within moments of the signal, in every thread — not after the
retry deadline. No dependency: imported by the CLI before anything heavy.
"""

from __future__ import annotations

import threading

_STOP = threading.Event()


def request_stop() -> None:
    """Ask every wait of this process to end (the signal handlers call this)."""
    _STOP.set()


def reset() -> None:
    """Forget an earlier stop request (the CLI calls this when a run starts)."""
    _STOP.clear()


def stop_requested() -> bool:
    return _STOP.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested (in any thread)."""
    if _STOP.is_set():
        raise KeyboardInterrupt


def sleep(seconds: float) -> None:
    """`time.sleep` that ends early, with KeyboardInterrupt, when a stop is requested."""
    if seconds > 0 and _STOP.wait(seconds):
        raise KeyboardInterrupt
    check()


def worker_thread() -> None:
    """Make the calling thread leave SIGINT and SIGTERM to the main thread (the initializer of
    every pool and helper thread). The kernel hands a signal sent to the process to any thread
    that does not block it, and Python runs its handler only in the main thread, at its next
    bytecode: a signal that lands on a thread busy in a socket read leaves a main thread that
    waits on a lock (a future's result, a pool's shutdown) asleep until that wait ends, which for
    an endless listing is never. Blocked here, every signal wakes the main thread's wait."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
