"""What every state store offers (the local file, Cloud Storage): the one protocol the CLI and
the recorder of apply (`recorder.Recorder`) work against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from reconciler.state.journal import JournalOp
from reconciler.state.model import State


class StateStore(Protocol):
    journal_pending: bool  # the state read had journal lines folded in, not yet in a full write

    def describe(self) -> str:
        """Where the state is, for messages (a path or a gs:// URI)."""
        ...

    def read(self, *, stack: str) -> State:
        """The state with its journal replayed; a new empty state when there is none."""
        ...

    def write(self, state: State) -> State:
        """Write `state` as the next serial (refused if another run wrote since the read);
        the journal's lines become obsolete. Returns the state as written."""
        ...

    def append(self, ops: Sequence[JournalOp]) -> None:
        """Make `ops` durable in the journal of the serial last read or written."""
        ...

    def close(self) -> None:
        """Release what is held open between calls (the journal's file)."""
        ...

    def lock(self, operation: str, *, timeout: float = 0.0, warn: Callable[[str], None] = ...) -> str:
        """Take the lock, waiting up to `timeout` seconds; its id."""
        ...

    def unlock(self, lock_id: str) -> None: ...
    def force_unlock(self, lock_id: str) -> None: ...
    def lock_info(self) -> dict[str, Any] | None: ...
