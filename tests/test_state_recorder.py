"""The recorder of apply (`reconciler.state.recorder`) against an in-memory store: every change
durable when its call returns, group commit, a failed batch queued again, the final commit.
Fast: no emulator, no files, no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from reconciler.errors import StateError
from reconciler.state.codec import journal_lines
from reconciler.state.journal import (
    DropEntry,
    JournalOp,
    OpenIntent,
    SetEntry,
    SettleIntent,
    apply_op,
)
from reconciler.state.model import JournalEntry, ModelEntry, State
from reconciler.state.recorder import Recorder
from reconciler.state.store import StateStore

P = "projects/p/locations/us-central1"
WAIT = 30.0  # a safety net for a broken test, never reached by a passing one


def entry(job: str = "j") -> ModelEntry:
    return ModelEntry.model_validate({"parent": P, "job": job})


class MemoryStore:
    """A StateStore in memory: full writes bump the serial; appended batches are kept (and can
    be made to fail, or to wait for the test)."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state
        self.writes: list[State] = []
        self.batches: list[list[JournalOp]] = []
        self.journal_pending = False
        self.fail_appends = 0
        self.gate: Callable[[], None] = lambda: None

    def describe(self) -> str:
        return "memory"

    def read(self, *, stack: str) -> State:
        state = self.state or State(stack=stack)
        if self.batches:
            state = state.model_copy(deep=True)
            for batch in self.batches:
                for op in batch:
                    apply_op(state, op)
        return state

    def write(self, state: State) -> State:
        new = state.model_copy(update={"serial": state.serial + 1})
        self.state, self.batches, self.journal_pending = new, [], False
        self.writes.append(new)
        return new

    def append(self, ops: Sequence[JournalOp]) -> None:
        self.gate()
        if self.fail_appends:
            self.fail_appends -= 1
            raise StateError("memory: cannot write the journal: No space left on device")
        journal_lines(ops)  # each op serialises
        self.batches.append(list(ops))

    def close(self) -> None: ...
    def lock(self, operation: str, *, timeout: float = 0.0, warn: Callable[[str], None] = lambda _m: None) -> str:
        return "id"

    def unlock(self, lock_id: str) -> None: ...
    def force_unlock(self, lock_id: str) -> None: ...
    def lock_info(self) -> dict[str, Any] | None:
        return None


def written(state_serial: int = 1) -> tuple[MemoryStore, Recorder]:
    store = MemoryStore()
    store_protocol: StateStore = store  # the fake satisfies the one protocol
    recorder = Recorder(store_protocol, State(stack="s", serial=state_serial))
    return store, recorder


def test_a_state_never_written_is_written_once_before_the_first_change():
    store = MemoryStore()
    recorder = Recorder(store, State(stack="s"))
    assert [s.serial for s in store.writes] == [1] and recorder.state.serial == 1
    store, recorder = written(state_serial=3)
    assert store.writes == []


def test_each_change_is_applied_and_durable_when_its_call_returns():
    store, recorder = written()
    intent = JournalEntry(name="a", requestId="r", parent=P, specHash="h", started="t")
    recorder.open_intent(intent)
    recorder.set_entry("a", entry())
    recorder.settle("r")
    recorder.drop_entry("a")
    assert store.batches == [[OpenIntent(entry=intent)], [SetEntry(name="a", entry=entry())],
                             [SettleIntent(requestId="r")], [DropEntry(name="a")]]
    assert recorder.state.models == {} and recorder.state.journal == []


def test_modify_is_a_set_of_what_the_change_returns_and_nothing_when_it_returns_none():
    store, recorder = written()
    recorder.set_entry("a", entry("j1"))
    recorder.modify("a", lambda e: e and e.model_copy(update={"job": "j2"}))
    recorder.modify("a", lambda _e: None)
    recorder.modify("missing", lambda e: e)
    assert [op for batch in store.batches for op in batch] == [SetEntry(name="a", entry=entry("j1")),
                                                               SetEntry(name="a", entry=entry("j2"))]
    assert recorder.entry("a") == entry("j2") and recorder.entry("missing") is None


def test_the_state_does_not_share_an_entry_with_the_caller():
    _store, recorder = written()
    mine = entry("j1")
    recorder.set_entry("a", mine)
    mine.job = "changed afterwards"
    assert recorder.entry("a") == entry("j1")


def test_changes_queued_while_a_batch_is_written_go_out_together_in_the_next_batch():
    store, recorder = written()
    first_writing, release = threading.Event(), threading.Event()

    def gate() -> None:
        if not store.batches and not first_writing.is_set():
            first_writing.set()
            assert release.wait(WAIT)

    store.gate = gate
    first = threading.Thread(target=recorder.set_entry, args=("first", entry()))
    first.start()
    assert first_writing.wait(WAIT)  # the first batch is being written, and holds the flush
    others = [threading.Thread(target=recorder.set_entry, args=(name, entry())) for name in ("b", "c", "d")]
    for thread in others:
        thread.start()
    queued = threading.Event()
    while not queued.wait(0.001):  # until the three changes are applied in memory and queued
        with recorder._lock:  # noqa: SLF001 - the only way to see the queue without racing it
            if len(recorder.state.models) == 4:
                queued.set()
    release.set()
    for thread in [first, *others]:
        thread.join(WAIT)
    assert [[op.name for op in batch if isinstance(op, SetEntry)] for batch in store.batches][0] == ["first"]
    assert len(store.batches) == 2, "the three changes queued behind the first batch go out in one"
    assert sorted(op.name for op in store.batches[1] if isinstance(op, SetEntry)) == ["b", "c", "d"]


def test_a_failed_batch_is_queued_again_and_carried_by_the_next_flush():
    store, recorder = written()
    store.fail_appends = 1
    with pytest.raises(StateError, match="cannot write the journal"):
        recorder.set_entry("a", entry())
    assert store.batches == [] and "a" in recorder.state.models  # in memory, not durable yet
    recorder.drop_entry("b")
    assert store.batches == [[SetEntry(name="a", entry=entry()), DropEntry(name="b")]]


def test_a_change_whose_batch_failed_is_folded_in_by_the_commit():
    store, recorder = written()
    store.fail_appends = 1
    with pytest.raises(StateError):
        recorder.set_entry("a", entry())
    recorder.commit(lambda _draft: None)
    assert store.writes[-1].models == {"a": entry()}


def test_commit_writes_only_when_something_changed():
    store = MemoryStore()
    recorder = Recorder(store, State(stack="s", serial=1))
    recorder.commit(lambda _draft: None)
    assert store.writes == []
    recorder.commit(lambda draft: draft.models.update(a=entry()))
    assert [s.serial for s in store.writes] == [2] and recorder.state.serial == 2
    recorder.set_entry("b", entry())
    recorder.commit(lambda _draft: None)  # journalled changes are folded into a full write
    assert [s.serial for s in store.writes] == [2, 3] and sorted(store.writes[-1].models) == ["a", "b"]


def test_commit_folds_in_a_journal_the_read_replayed():
    store = MemoryStore()
    store.journal_pending = True
    recorder = Recorder(store, State(stack="s", serial=5))
    recorder.commit(lambda _draft: None)
    assert [s.serial for s in store.writes] == [6]


def test_of_a_recorder_is_that_recorder_and_of_a_store_a_new_one():
    store, recorder = written()
    assert Recorder.of(recorder, State()) is recorder
    other = Recorder.of(store, State(stack="s", serial=7))
    assert other is not recorder and other.state.serial == 7
