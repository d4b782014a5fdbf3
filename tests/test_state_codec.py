"""The state's bytes (`reconciler.state.codec`, `journal`): journal lines stay byte-compatible with
version 0.1 both ways, every op type round-trips and replays, and malformed lines keep their
one-line messages. Fast: tmp dirs only, no emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import StateError
from reconciler.state.codec import (
    JournalOpError,
    journal_lines,
    parse_op,
    parse_state,
    replay_lines,
    serialize_state,
)
from reconciler.state.journal import (
    DropEntry,
    JournalOp,
    OpenIntent,
    SetEntry,
    SettleIntent,
    apply_op,
)
from reconciler.state.local import LocalStateStore
from reconciler.state.model import JournalEntry, ModelEntry, State
from reconciler.state.recorder import Recorder

LINEAGE = "0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11"
P = "projects/p/locations/us-central1"

# Written by version 0.1 (commit 9154e85: apply's recorder over LocalStateStore) for the changes
# `record_the_same_changes` makes below; kept verbatim, never regenerated.
RECORDED_JOURNAL = (
    '{"lineage":"0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11","serial":1,"op":"intent","entry":{"name":"bot-é","requestId":"req-1","parent":"projects/p/locations/us-central1","specHash":"abc123","started":"2026-12-01T10:00:00.000000Z"}}' "\n"
    '{"lineage":"0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11","serial":1,"op":"set","name":"bot-é","entry":{"parent":"projects/p/locations/us-central1","job":"projects/p/locations/us-central1/tuningJobs/1","state":"JOB_STATE_SUCCEEDED","specHash":"abc123","spec":{"baseModel":"gemini-3.5-flash","supervisedTuningSpec":{"trainingDatasetUri":"gs://b/t.jsonl","hyperParameters":{"epochCount":3}}},"cosmetic":{"tunedModelDisplayName":"Bot “é” ✓","labels":{"team":"x"}},"createTime":"2026-12-01T10:00:00Z","endTime":null,"error":{"code":9,"message":"nope"},"tunedModel":{"model":"m@1","endpoint":"e/1"},"servingJob":"projects/p/locations/us-central1/tuningJobs/1","protect":true,"cancelRequested":["projects/p/locations/us-central1/tuningJobs/0"],"parents":["projects/p/locations/us-central1"],"adopted":{"projects/p/locations/us-central1/tuningJobs/0":"old"},"smokeTests":{"projects/p/locations/us-central1/tuningJobs/1":{"passed":true,"at":"2026-12-01T11:00:00Z","reply":"hi","error":null}},"dataHashes":{"projects/p/locations/us-central1/tuningJobs/1":"dh"},"datasetPins":{"gs://b/t.jsonl":{"crc32c":"x","size":"10"}},"futureField":{"kept":[1,2]}}}' "\n"
    '{"lineage":"0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11","serial":1,"op":"settle","requestId":"req-1"}' "\n"
    '{"lineage":"0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11","serial":1,"op":"set","name":"bot-é","entry":{"parent":"projects/p/locations/us-central1","job":"projects/p/locations/us-central1/tuningJobs/1","state":"JOB_STATE_SUCCEEDED","specHash":"abc123","spec":{"baseModel":"gemini-3.5-flash","supervisedTuningSpec":{"trainingDatasetUri":"gs://b/t.jsonl","hyperParameters":{"epochCount":3}}},"cosmetic":{"tunedModelDisplayName":"Bot “é” ✓","labels":{"team":"x"}},"createTime":"2026-12-01T10:00:00Z","endTime":null,"error":{"code":9,"message":"nope"},"tunedModel":{"model":"m@1","endpoint":"e/1"},"servingJob":"projects/p/locations/us-central1/tuningJobs/1","protect":true,"cancelRequested":["projects/p/locations/us-central1/tuningJobs/0","j2"],"parents":["projects/p/locations/us-central1"],"adopted":{"projects/p/locations/us-central1/tuningJobs/0":"old"},"smokeTests":{"projects/p/locations/us-central1/tuningJobs/1":{"passed":true,"at":"2026-12-01T11:00:00Z","reply":"hi","error":null}},"dataHashes":{"projects/p/locations/us-central1/tuningJobs/1":"dh"},"datasetPins":{"gs://b/t.jsonl":{"crc32c":"x","size":"10"}},"futureField":{"kept":[1,2]}}}' "\n"
    '{"lineage":"0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11","serial":1,"op":"set","name":"other","entry":{"parent":"projects/p/locations/us-central1","job":null,"state":null,"specHash":null,"spec":null,"cosmetic":null,"createTime":null,"endTime":null,"error":null,"tunedModel":null,"servingJob":null,"protect":false,"cancelRequested":[],"parents":[],"adopted":{},"smokeTests":{},"dataHashes":{},"datasetPins":{}}}' "\n"
    '{"lineage":"0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11","serial":1,"op":"drop","name":"other"}' "\n"
    '{"lineage":"0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11","serial":1,"op":"intent","entry":{"name":"other","requestId":"req-2","parent":"projects/p/locations/us-central1","specHash":"def","started":"2026-12-01T12:00:00.000000Z"}}' "\n"
).encode()

# What 0.1 read back from it (`updated` left out).
RECORDED_STATE = json.loads(
    '{"journal": [{"name": "other", "parent": "projects/p/locations/us-central1", "requestId": "req-2", "specHash": "def", "started": "2026-12-01T12:00:00.000000Z"}], "lineage": "0b7e6a52-5d1c-4c37-9a43-2f1f1a9c0e11", "models": {"bot-é": {"adopted": {"projects/p/locations/us-central1/tuningJobs/0": "old"}, "cancelRequested": ["projects/p/locations/us-central1/tuningJobs/0", "j2"], "cosmetic": {"labels": {"team": "x"}, "tunedModelDisplayName": "Bot “é” ✓"}, "createTime": "2026-12-01T10:00:00Z", "dataHashes": {"projects/p/locations/us-central1/tuningJobs/1": "dh"}, "datasetPins": {"gs://b/t.jsonl": {"crc32c": "x", "size": "10"}}, "error": {"code": 9, "message": "nope"}, "futureField": {"kept": [1, 2]}, "job": "projects/p/locations/us-central1/tuningJobs/1", "parent": "projects/p/locations/us-central1", "parents": ["projects/p/locations/us-central1"], "protect": true, "servingJob": "projects/p/locations/us-central1/tuningJobs/1", "smokeTests": {"projects/p/locations/us-central1/tuningJobs/1": {"at": "2026-12-01T11:00:00Z", "passed": true, "reply": "hi"}}, "spec": {"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": {"hyperParameters": {"epochCount": 3}, "trainingDatasetUri": "gs://b/t.jsonl"}}, "specHash": "abc123", "state": "JOB_STATE_SUCCEEDED", "tunedModel": {"endpoint": "e/1", "model": "m@1"}}}, "serial": 1, "stack": "rec", "tool": "vertex-tuning-reconciler 0.1.0", "version": 1}'
)

FULL_ENTRY = {
    "parent": P, "job": P + "/tuningJobs/1", "state": "JOB_STATE_SUCCEEDED", "specHash": "abc123",
    "spec": {"baseModel": "gemini-3.5-flash",
             "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/t.jsonl", "hyperParameters": {"epochCount": 3}}},
    "cosmetic": {"tunedModelDisplayName": "Bot “é” ✓", "labels": {"team": "x"}}, "createTime": "2026-12-01T10:00:00Z",
    "error": {"code": 9, "message": "nope"}, "tunedModel": {"model": "m@1", "endpoint": "e/1"},
    "servingJob": P + "/tuningJobs/1", "protect": True, "cancelRequested": [P + "/tuningJobs/0"], "parents": [P],
    "adopted": {P + "/tuningJobs/0": "old"},
    "smokeTests": {P + "/tuningJobs/1": {"passed": True, "at": "2026-12-01T11:00:00Z", "reply": "hi"}},
    "dataHashes": {P + "/tuningJobs/1": "dh"}, "datasetPins": {"gs://b/t.jsonl": {"crc32c": "x", "size": "10"}},
    "futureField": {"kept": [1, 2]},  # a field of a newer version: kept, not dropped
}


def state_file(tmp_path: Path) -> Path:
    """The state (serial 1) the recorded journal was written on top of."""
    path = tmp_path / "s.json"
    path.write_bytes(serialize_state(State(serial=1, lineage=LINEAGE, stack="rec", tool="t")))
    return path


def record_the_same_changes(recorder: Recorder) -> None:
    recorder.open_intent(JournalEntry(name="bot-é", requestId="req-1", parent=P, specHash="abc123",
                                      started="2026-12-01T10:00:00.000000Z"))
    recorder.set_entry("bot-é", ModelEntry.model_validate(FULL_ENTRY))
    recorder.settle("req-1")
    recorder.modify("bot-é", lambda e: e and e.model_copy(update={"cancel_requested": [*e.cancel_requested, "j2"]}))
    recorder.set_entry("other", ModelEntry.model_validate({"parent": P}))
    recorder.drop_entry("other")
    recorder.modify("missing", lambda _e: None)
    recorder.open_intent(JournalEntry(name="other", requestId="req-2", parent=P, specHash="def",
                                      started="2026-12-01T12:00:00.000000Z"))


def comparable(state: State) -> dict[str, Any]:
    data = state.to_json_dict()
    data.pop("updated", None)
    data.pop("tool", None)
    return json.loads(json.dumps(data, sort_keys=True))


def expected_state() -> dict[str, Any]:
    return {k: v for k, v in RECORDED_STATE.items() if k not in ("updated", "tool")}


def test_a_journal_written_by_version_0_1_replays_to_the_same_state(tmp_path: Path):
    path = state_file(tmp_path)
    (tmp_path / "s.json.journal").write_bytes(RECORDED_JOURNAL)
    store = LocalStateStore(path)
    assert comparable(store.read(stack="rec")) == expected_state()
    assert store.journal_pending


def test_the_same_changes_are_journalled_byte_for_byte_as_version_0_1_wrote_them(tmp_path: Path):
    store = LocalStateStore(state_file(tmp_path))
    recorder = Recorder(store, store.read(stack="rec"))
    record_the_same_changes(recorder)
    store.close()
    assert (tmp_path / "s.json.journal").read_bytes() == RECORDED_JOURNAL
    # and what is in memory is what a reader replays
    assert comparable(recorder.state) == expected_state()
    assert comparable(LocalStateStore(tmp_path / "s.json").read(stack="rec")) == expected_state()


def test_a_journal_object_of_a_gcs_state_holds_the_same_lines_without_lineage_and_serial():
    ops = [parse_op(json.loads(line)) for line in RECORDED_JOURNAL.splitlines()]
    stamp = f'{{"lineage":"{LINEAGE}","serial":1,'.encode()
    unstamped = b"".join(b"{" + line[len(stamp):] + b"\n" for line in RECORDED_JOURNAL.splitlines())
    assert journal_lines(ops) == unstamped
    assert journal_lines(ops, stamp=(LINEAGE, 1)) == RECORDED_JOURNAL


OPS: list[JournalOp] = [
    SetEntry(name="a", entry=ModelEntry.model_validate(FULL_ENTRY)),
    DropEntry(name="a"),
    OpenIntent(entry=JournalEntry(name="a", requestId="r", parent=P, specHash="h", started="t")),
    SettleIntent(requestId="r"),
]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.op)
def test_every_op_round_trips_through_its_line(op: JournalOp):
    line = journal_lines([op], stamp=("l", 3))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_op(json.loads(line)) == op


def replay(state: State, *ops: JournalOp) -> State:
    draft = state.model_copy(deep=True)
    assert replay_lines(draft, journal_lines(ops), "j", stamped=False, torn_tail=False) == len(ops)
    return draft


def test_replay_of_a_set_makes_the_entry_and_of_a_drop_removes_it():
    after_set = replay(State(), OPS[0])
    assert after_set.models["a"] == ModelEntry.model_validate(FULL_ENTRY)
    assert replay(after_set, OPS[1]).models == {}
    assert replay(State(), OPS[1]).models == {}  # dropping what is not there is no error


def test_replay_of_an_intent_opens_it_and_of_a_settle_removes_it():
    opened = replay(State(), OPS[2])
    assert [j.request_id for j in opened.journal] == ["r"]
    other = OpenIntent(entry=JournalEntry(name="b", requestId="s", parent=P, specHash="h", started="t"))
    assert [j.request_id for j in replay(opened, other, OPS[3]).journal] == ["s"]


def test_apply_op_changes_the_state_in_place():
    state = State()
    for op in OPS[:3]:
        apply_op(state, op)
    assert state.models == {} and len(state.journal) == 1


@pytest.mark.parametrize(("raw", "message", "unknown"), [
    ([], 'not a journal operation (no "op")', False),
    ({"op": 5}, 'not a journal operation (no "op")', False),
    ({"op": "set"}, "'set' operation without 'name' as a string", False),
    ({"op": "set", "name": "a", "entry": []}, "'set' operation without 'entry' as an object", False),
    ({"op": "drop", "name": True}, "'drop' operation without 'name' as a string", False),
    ({"op": "settle"}, "'settle' operation without 'requestId' as a string", False),
    ({"op": "intent", "entry": {"name": "a"}}, "'intent' operation with an invalid entry at requestId: Field required", False),
    ({"op": "set", "name": "a", "entry": {"parent": 5}}, "'set' operation with an invalid entry at parent: Input should be a valid string", False),
    ({"op": "rename"}, "operation 'rename' is not known to this reconciler (it knows set, drop, intent, settle)", True),
])
def test_a_line_that_is_not_an_operation_says_what_is_wrong(raw: Any, message: str, unknown: bool):
    with pytest.raises(JournalOpError) as caught:
        parse_op(raw)
    assert str(caught.value) == message
    assert caught.value.unknown is unknown


def test_replay_names_the_line_and_skips_a_torn_tail_and_other_serials():
    state = State(lineage="L", serial=2)
    good = journal_lines([OPS[0]], stamp=("L", 2))
    stale = journal_lines([OPS[2]], stamp=("L", 1))
    draft = state.model_copy(deep=True)
    assert replay_lines(draft, stale + good + b'{"lineage":"L","ser', "j", stamped=True, torn_tail=True) == 1
    assert list(draft.models) == ["a"] and draft.journal == []
    with pytest.raises(StateError, match=r"^j:2: not a journal line \(no lineage and serial\); no reconciler writes"):
        replay_lines(state.model_copy(deep=True), good + journal_lines([OPS[1]]), "j", stamped=True, torn_tail=True)
    with pytest.raises(StateError, match=r"^j:1: operation 'x' is not known .*upgrade the reconciler$"):
        replay_lines(state.model_copy(deep=True), b'{"op":"x"}\n', "j", stamped=False, torn_tail=False)


def test_parse_state_refuses_a_newer_format_and_round_trips_the_current_one():
    state = State(serial=4, stack="s", models={"a": ModelEntry.model_validate(FULL_ENTRY)})
    assert parse_state(serialize_state(state), "f") == state
    with pytest.raises(StateError, match="^f: state format version 2 is newer"):
        parse_state(b'{"version": 2}', "f")
