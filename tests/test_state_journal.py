"""The local state's journal: replay of its own serial only, torn lines, and a fresh line after one."""

from __future__ import annotations

from pathlib import Path

from reconciler.state.local import LocalStateStore

PARENT = "projects/p-roject/locations/us-central1"


def set_op(name: str) -> dict:
    return {"op": "set", "name": name, "entry": {"parent": PARENT}}


def test_replay_applies_only_the_serial_it_was_written_for(tmp_path: Path):
    store = LocalStateStore(tmp_path / "s.json")
    store.write(store.read(stack="s"))
    store.append([set_op("alpha")])
    assert list(LocalStateStore(tmp_path / "s.json").read(stack="s").models) == ["alpha"]
    # A full write folds the journal in and removes it; stale lines of an old serial never replay.
    reader = LocalStateStore(tmp_path / "s.json")
    state = reader.read(stack="s")
    stale = (tmp_path / "s.json.journal").read_bytes()
    reader.write(state.model_copy(update={"models": {}}))
    (tmp_path / "s.json.journal").write_bytes(stale)
    assert LocalStateStore(tmp_path / "s.json").read(stack="s").models == {}


def test_a_torn_last_line_is_skipped_and_the_next_run_starts_a_fresh_line(tmp_path: Path):
    store = LocalStateStore(tmp_path / "s.json")
    store.write(store.read(stack="s"))
    store.append([set_op("alpha")])
    store.close()
    with open(tmp_path / "s.json.journal", "ab") as fh:
        fh.write(b'{"lineage": "half-writ')  # a crash in the middle of an append
    second = LocalStateStore(tmp_path / "s.json")
    assert list(second.read(stack="s").models) == ["alpha"]
    second.append([set_op("beta")])
    second.close()
    assert sorted(LocalStateStore(tmp_path / "s.json").read(stack="s").models) == ["alpha", "beta"]


def test_a_journal_left_by_a_run_killed_after_its_full_write_is_removed_under_the_lock(tmp_path: Path):
    store = LocalStateStore(tmp_path / "s.json")
    store.write(store.read(stack="s"))
    store.append([set_op("alpha")])
    store.close()
    journal = (tmp_path / "s.json.journal").read_bytes()
    folded = LocalStateStore(tmp_path / "s.json")
    folded.write(folded.read(stack="s"))  # the full write; then the run is killed before the unlink:
    (tmp_path / "s.json.journal").write_bytes(journal)
    LocalStateStore(tmp_path / "s.json").read(stack="s")  # a reader without the lock (plan) leaves it
    assert (tmp_path / "s.json.journal").exists()
    holder = LocalStateStore(tmp_path / "s.json")
    lock_id = holder.lock("apply")
    assert list(holder.read(stack="s").models) == ["alpha"]  # folded in by the full write
    assert not (tmp_path / "s.json.journal").exists()  # only stale lines: removed
    holder.unlock(lock_id)
