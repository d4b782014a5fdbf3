"""The lock policy, once for every store: try to take the lock, wait up to a timeout polling it,
name the holder when giving up, and warn when a dead holder's record is broken.

A store supplies one primitive, `try_once`, which says what one attempt found:

- `Taken(stale)`: the lock is ours; `stale` is the record of a holder found dead (a local
  `flock` is released by the system when its process ends, so a record under a free flock is a
  dead run's), broken with a warning;
- `Held(holder)`: someone holds it; `holder` is its record (None when it cannot be read);
- `Freed()`: the holder was gone by the time it was looked at (a Cloud Storage lock object
  deleted between the failed create and the read): try again at once.

The clock and the sleep are injectable, so the policy is tested without waiting.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler import __version__
from reconciler.errors import StateLockedError
from reconciler.state.codec import one_line, utc_now

Holder = dict[str, Any]


@dataclass(frozen=True)
class Taken:
    """The lock is ours; `stale`: the record of a dead holder it replaced."""

    stale: Holder | None = None


@dataclass(frozen=True)
class Held:
    """Another run holds the lock; `holder`: its record, if readable."""

    holder: Holder | None


@dataclass(frozen=True)
class Freed:
    """The lock was released between the attempt and reading its holder: try again now."""


Attempt = Taken | Held | Freed

# Between two attempts: at most a second (a waiting run notices a release soon), at least 50 ms.
POLL_MAX = 1.0
POLL_MIN = 0.05


def take_lock(
    try_once: Callable[[], Attempt],
    where: str,
    *,
    timeout: float = 0.0,
    warn: Callable[[str], None] = lambda _m: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take the lock through `try_once`, waiting up to `timeout` seconds for a live holder; a
    StateLockedError naming the holder (of `where`) when it is still held then."""
    deadline = clock() + timeout
    while True:
        match try_once():
            case Taken(stale=stale):
                if stale is not None:
                    warn(stale_message(stale))
                return
            case Freed():
                continue
            case Held(holder=holder):
                if clock() >= deadline:
                    raise StateLockedError(locked_message(where, holder))
                sleep(min(POLL_MAX, max(POLL_MIN, deadline - clock())))


def lock_holder() -> Holder:
    """What a new lock records about its holder."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {
        "id": str(uuid.uuid4()),
        "who": f"{user}@{socket.gethostname()}",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": utc_now(),
        "version": __version__,
    }


def holder_field(holder: Holder, key: str) -> str:
    """One field of a lock's holder record, fit for a one-line message (the record is read from
    a file anyone may have written)."""
    value = holder.get(key, "?")
    return one_line(value if isinstance(value, str) else str(value), 100)


def locked_message(where: str, holder: Holder | None) -> str:
    if holder is None:
        return f"state {where} is locked by another run"
    who, pid, operation, since, lock_id = (holder_field(holder, k) for k in ("who", "pid", "operation", "since", "id"))
    return (
        f"state {where} is locked by {who} (pid {pid}, {operation} since {since}), lock id {lock_id}. "
        f"Wait with --lock-timeout, or if that run is dead: reconciler force-unlock {lock_id}"
    )


def stale_message(holder: Holder) -> str:
    who, pid, since, old_id = (holder_field(holder, k) for k in ("who", "pid", "since", "id"))
    return f"breaking stale lock {old_id}: its holder ({who}, pid {pid}, since {since}) ended without releasing it"
