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
