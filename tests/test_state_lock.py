"""The lock policy (`reconciler.state.lock.take_lock`) with a fake clock, and the two stores
that use it: the local flock (tmp dir) and the Cloud Storage lock object (an in-memory bucket).
No sleeps, no wall-clock asserts, no emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import FailedPreconditionError, NotFoundError, StateError, StateLockedError
from reconciler.state.codec import journal_lines
from reconciler.state.gcs import GcsStateStore
from reconciler.state.journal import DropEntry, SetEntry
from reconciler.state.local import LocalStateStore
from reconciler.state.lock import Attempt, Freed, Held, Taken, take_lock
from reconciler.state.model import ModelEntry

HOLDER = {"id": "L1", "who": "ann@box", "pid": 42, "operation": "apply", "since": "2026-12-01T10:00:00Z"}


class FakeClock:
    """Monotonic time that moves only when slept."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def attempts(*results: Attempt) -> Iterator[Attempt]:
    yield from results
    raise AssertionError("tried once too often")


def test_a_free_lock_is_taken_at_once(clock: FakeClock):
    tries = attempts(Taken())
    take_lock(lambda: next(tries), "s.json", timeout=10, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_without_a_timeout_a_held_lock_fails_at_once_naming_its_holder(clock: FakeClock):
    tries = attempts(Held(HOLDER))
    with pytest.raises(StateLockedError) as caught:
        take_lock(lambda: next(tries), "s.json", clock=clock, sleep=clock.sleep)
    assert str(caught.value) == (
        "state s.json is locked by ann@box (pid 42, apply since 2026-12-01T10:00:00Z), lock id L1. "
        "Wait with --lock-timeout, or if that run is dead: reconciler force-unlock L1")
    assert clock.sleeps == []


def test_a_held_lock_is_polled_until_the_timeout(clock: FakeClock):
    with pytest.raises(StateLockedError, match="^state s.json is locked by another run$"):
        take_lock(lambda: Held(None), "s.json", timeout=2.5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1.0, 1.0, 0.5]  # at most a second between polls, never past the deadline


def test_a_lock_released_while_waiting_is_taken(clock: FakeClock):
    tries = attempts(Held(HOLDER), Held(HOLDER), Taken())
    take_lock(lambda: next(tries), "s.json", timeout=60, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1.0, 1.0]


def test_a_lock_freed_between_the_attempt_and_the_read_is_tried_again_at_once(clock: FakeClock):
    tries = attempts(Freed(), Freed(), Taken())
    take_lock(lambda: next(tries), "s.json", clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_a_dead_holder_is_broken_with_a_warning(clock: FakeClock):
    warnings: list[str] = []
    take_lock(lambda: Taken(stale=HOLDER), "s.json", warn=warnings.append, clock=clock, sleep=clock.sleep)
    assert warnings == ["breaking stale lock L1: its holder (ann@box, pid 42, since 2026-12-01T10:00:00Z) "
                        "ended without releasing it"]


# -- the local store: a flock, and a record of who holds it ----------------------------------------
def test_a_local_lock_held_by_another_store_is_waited_for_then_refused(tmp_path: Path, clock: FakeClock):
    holder, waiter = LocalStateStore(tmp_path / "s.json"), LocalStateStore(tmp_path / "s.json")
    lock_id = holder.lock("apply")
    with pytest.raises(StateLockedError, match=rf"locked by .*\(pid \d+, apply since .*lock id {lock_id}\."):
        waiter.lock("refresh", timeout=3, clock=clock, sleep=clock.sleep)
    assert sum(clock.sleeps) == 3
    holder.unlock(lock_id)
    warnings: list[str] = []
    second = waiter.lock("refresh", warn=warnings.append)
    assert warnings == []  # released properly: no stale record
    assert json.loads((tmp_path / "s.json.lock").read_text())["operation"] == "refresh"
    waiter.unlock(second)
    assert (tmp_path / "s.json.lock").read_bytes() == b""


def test_a_local_record_under_a_free_flock_is_a_dead_run_s_and_broken(tmp_path: Path):
    (tmp_path / "s.json.lock").write_text(json.dumps(HOLDER))
    warnings: list[str] = []
    store = LocalStateStore(tmp_path / "s.json")
    store.unlock(store.lock("apply", warn=warnings.append))
    assert [w.split(":")[0] for w in warnings] == ["breaking stale lock L1"]


def test_force_unlock_of_a_local_lock_refuses_a_live_holder(tmp_path: Path):
    holder = LocalStateStore(tmp_path / "s.json")
    lock_id = holder.lock("apply")
    with pytest.raises(StateError, match="is held by a running process"):
        LocalStateStore(tmp_path / "s.json").force_unlock(lock_id)
    holder.unlock(lock_id)


# -- the Cloud Storage store: a lock object created only if absent --------------------------------
def _api_error(kind: type[Exception], code: int, status: str) -> Exception:
    return kind(code, status, "in-memory bucket")


class MemoryBucket:
    """What GcsStateStore needs of a StorageClient, in memory, with generation preconditions."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[int, bytes]] = {}
        self.generation = 0
        self.on_metadata: list[str] = []  # names to delete when next asked for (a racing release)

    def metadata(self, bucket: str, name: str) -> dict[str, Any] | None:
        if name in self.on_metadata:
            self.on_metadata.remove(name)
            self.objects.pop(name, None)
        found = self.objects.get(name)
        return None if found is None else {"name": name, "generation": str(found[0])}

    def download(self, bucket: str, name: str, generation: int | None = None) -> bytes:
        found = self.objects.get(name)
        if found is None or generation not in (None, found[0]):
            raise _api_error(NotFoundError, 404, "NOT_FOUND")
        return found[1]

    def upload(self, bucket: str, name: str, data: bytes, *, if_generation_match: int | None,
               content_type: str = "application/json") -> dict[str, Any]:
        current = self.objects.get(name, (0, b""))[0]
        if if_generation_match is not None and if_generation_match != current:
            raise _api_error(FailedPreconditionError, 412, "FAILED_PRECONDITION")
        self.generation += 1
        self.objects[name] = (self.generation, data)
        return {"name": name, "generation": str(self.generation)}

    def delete(self, bucket: str, name: str, *, if_generation_match: int | None) -> None:
        found = self.objects.get(name)
        if found is None:
            raise _api_error(NotFoundError, 404, "NOT_FOUND")
        if if_generation_match is not None and if_generation_match != found[0]:
            raise _api_error(FailedPreconditionError, 412, "FAILED_PRECONDITION")
        del self.objects[name]

    def list(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        return [{"name": n, "generation": str(g)} for n, (g, _d) in sorted(self.objects.items()) if n.startswith(prefix)]


def gcs_store(bucket: MemoryBucket) -> GcsStateStore:
    return GcsStateStore("gs://bucket/s.json", bucket)  # type: ignore[arg-type]  # duck-typed client


def test_a_gcs_lock_held_by_another_run_is_waited_for_then_refused_naming_it(clock: FakeClock):
    bucket = MemoryBucket()
    holder = gcs_store(bucket)
    lock_id = holder.lock("apply")
    with pytest.raises(StateLockedError, match=rf"^state gs://bucket/s.json is locked by .*lock id {lock_id}\."):
        gcs_store(bucket).lock("refresh", timeout=1.5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1.0, 0.5]
    holder.unlock(lock_id)
    assert "s.json.lock" not in bucket.objects


def test_a_gcs_lock_released_between_the_attempt_and_the_read_is_taken_at_once(clock: FakeClock):
    bucket = MemoryBucket()
    gcs_store(bucket).lock("apply")  # a holder that goes away as the next run looks at it
    bucket.on_metadata.append("s.json.lock")
    store = gcs_store(bucket)
    store.lock("refresh", clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []
    assert json.loads(bucket.objects["s.json.lock"][1])["operation"] == "refresh"


def test_a_gcs_holder_is_never_guessed_dead(clock: FakeClock):
    bucket = MemoryBucket()
    bucket.upload("b", "s.json.lock", json.dumps({**HOLDER, "pid": 1}).encode(), if_generation_match=0)
    with pytest.raises(StateLockedError, match="force-unlock L1"):
        gcs_store(bucket).lock("apply", clock=clock, sleep=clock.sleep)
    gcs_store(bucket).force_unlock("L1")
    assert bucket.objects == {}


def test_a_gcs_journal_object_holds_the_lines_of_the_batch_and_replays():
    bucket = MemoryBucket()
    store = gcs_store(bucket)
    store.write(store.read(stack="s"))
    ops = [SetEntry(name="a", entry=ModelEntry.model_validate({"parent": "p"})), DropEntry(name="b")]
    store.append(ops)
    [name] = [n for n in bucket.objects if ".journal/" in n]
    assert name.endswith("/1/00000001.jsonl") and bucket.objects[name][1] == journal_lines(ops)
    reader = gcs_store(bucket)
    assert list(reader.read(stack="s").models) == ["a"] and reader.journal_pending
