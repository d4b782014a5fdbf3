"""Continuous tuning (issue 13, item 3): `preTunedModel` instead of `baseModel`, and
`preTunedModel: {model: NAME}` — tuning on top of another manifest's tuned model, ordered by the
planner. Through the CLI against the emulator.
"""

from __future__ import annotations

from typing import Any

from tests.clihelp import Cli

BASE = "gemini-3.5-flash"


def _child(cli: Cli, name: str = "child", parent: str = "parent", **pre: Any) -> None:
    cli.manifest(name, base=BASE, epochs=2, spec={"baseModel": None, "preTunedModel": {"model": parent, **pre}})
    path = cli.workdir / "manifests" / f"{name}.yaml"
    path.write_text(path.read_text().replace("  baseModel: null\n", ""))


def _plan(cli: Cli) -> dict[str, dict[str, Any]]:
    result = cli("plan", "--format", "json")
    assert result.code == 0, result.out + result.err
    return {c["name"]: c for c in result.json()["changes"]}


def _job_of(emulator: Any, name: str) -> dict[str, Any]:
    [job] = [j for j in emulator.jobs() if j.get("labels", {}).get("reconciler-name") == name]
    return job


def test_a_continuation_is_created_once_its_parent_has_succeeded(cli: Cli, emulator: Any) -> None:
    cli.manifest("parent", base=BASE, epochs=3)
    _child(cli)
    first = _plan(cli)
    assert first["parent"]["action"] == "create"
    assert first["child"]["action"] == "noop"
    assert first["child"]["reason"].startswith("waits for parent: its current spec has no job yet")

    cli.ok("apply", "--auto-approve")
    assert [j["labels"]["reconciler-name"] for j in emulator.jobs()] == ["parent"]
    held = _plan(cli)["child"]
    assert held["action"] == "noop" and "is PENDING" in held["reason"] or "is RUNNING" in held["reason"], held

    emulator.advance(100_000)
    tuned = _job_of(emulator, "parent")["tunedModel"]["model"]
    plan = _plan(cli)
    assert plan["parent"]["action"] == "noop"
    create = plan["child"]
    assert create["action"] == "create"
    assert create["request"]["preTunedModel"] == {"tunedModelName": tuned}
    assert "baseModel" not in create["request"]

    cli.ok("apply", "--auto-approve")
    job = _job_of(emulator, "child")
    assert job["preTunedModel"]["tunedModelName"] == tuned
    assert "baseModel" not in job or job["baseModel"] == job["preTunedModel"].get("baseModel")
    again = cli("plan", "--detailed-exitcode")
    assert again.code == 0, again.out  # nothing to do: the resolved spec is the job's


def test_a_checkpoint_of_the_parent_is_sent_with_its_tuned_model(cli: Cli, emulator: Any) -> None:
    cli.manifest("parent", base=BASE, epochs=3)
    _child(cli, checkpointId="2")
    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    cli.ok("apply", "--auto-approve")
    job = _job_of(emulator, "child")
    assert job["preTunedModel"]["checkpointId"] == "2"
    assert job["preTunedModel"]["tunedModelName"] == _job_of(emulator, "parent")["tunedModel"]["model"]


def test_a_replaced_parent_re_tunes_its_continuation_with_that_reason(cli: Cli, emulator: Any) -> None:
    cli.manifest("parent", base=BASE, epochs=3)
    _child(cli)
    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    assert cli("plan", "--detailed-exitcode").code == 0

    cli.manifest("parent", base=BASE, epochs=4)  # the parent changes: it is replaced
    plan = _plan(cli)
    assert plan["parent"]["action"] == "replace"
    held = plan["child"]
    assert held["action"] == "noop" and held["reason"].startswith("waits for parent"), held
    assert "stays as it is meanwhile" in held["reason"]

    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    replace = _plan(cli)["child"]
    assert replace["action"] == "replace", replace
    assert replace["reason"].startswith("parent was re-tuned: continuing from its new tuned model"), replace
    assert any(d["path"] == "preTunedModel.tunedModelName" for d in replace["diff"]), replace["diff"]


def test_a_continuation_of_a_continuation_waits_for_the_whole_chain(cli: Cli, emulator: Any) -> None:
    cli.manifest("root", base=BASE, epochs=1)
    _child(cli, "middle", "root")
    _child(cli, "leaf", "middle")
    plan = _plan(cli)
    assert plan["leaf"]["reason"].startswith("waits for middle (waits for root"), plan["leaf"]
    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    cli.ok("apply", "--auto-approve")
    assert _plan(cli)["leaf"]["action"] == "noop"
    emulator.advance(100_000)
    assert _plan(cli)["leaf"]["action"] == "create"


def test_unknown_names_and_cycles_are_validation_errors_with_their_line(cli: Cli) -> None:
    _child(cli, "orphan", "nobody")
    _child(cli, "a", "b")
    _child(cli, "b", "a")
    result = cli("validate")
    assert result.code == 1
    lines = result.err.splitlines()
    assert any(line.startswith("manifests/orphan.yaml:") and "spec.preTunedModel.model: no manifest named 'nobody'"
               in line for line in lines), result.err
    assert any(line.startswith("manifests/a.yaml:") and "a cycle of continuations: a → b → a" in line
               for line in lines), result.err
    line_no = next(line for line in lines if line.startswith("manifests/orphan.yaml:")).split(":")[1]
    text = (cli.workdir / "manifests" / "orphan.yaml").read_text().splitlines()
    assert text[int(line_no) - 1].strip().startswith("model:"), text


def test_base_model_and_pre_tuned_model_are_one_of(cli: Cli) -> None:
    cli.manifest("both", base=BASE, spec={"preTunedModel": {"tunedModelName": "projects/p/locations/l/models/1"}})
    result = cli("validate")
    assert result.code == 1
    assert "set exactly one of baseModel or preTunedModel" in result.err


def test_a_continuation_of_a_preference_model_is_refused(cli: Cli) -> None:
    cli.manifest("pref", base=BASE, epochs=None, spec={"supervisedTuningSpec": None, "preferenceOptimizationSpec": {
        "trainingDatasetUri": "gs://bucket/pref/pairs.jsonl"}})
    path = cli.workdir / "manifests" / "pref.yaml"
    path.write_text(path.read_text().replace("  supervisedTuningSpec: null\n", ""))
    _child(cli, "child", "pref")
    result = cli("validate")
    assert result.code == 1
    assert "only a supervised-tuned model can be tuned further" in result.err


def test_apply_wait_creates_a_chain_of_continuations_round_after_round(cli: Cli, emulator: Any) -> None:
    """`apply --wait` with parent → child → grandchild: each is created once the one before it has
    a tuned model, in one command (rounds), and the command exits 0 when all have succeeded."""
    emulator.configure(clock="real", pending_seconds=0.05, running_seconds=0.2)
    cli.manifest("parent", base=BASE, epochs=3)
    _child(cli)
    _child(cli, "grandchild", parent="child")
    r = cli("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--wait-timeout", "60")
    assert r.code == 0, r.out + r.err
    assert "planning the continuation (round 2)" in r.err and "(round 3)" in r.err
    jobs = {j["labels"]["reconciler-name"]: j for j in emulator.jobs()}
    assert set(jobs) == {"parent", "child", "grandchild"}
    assert jobs["grandchild"]["preTunedModel"]["tunedModelName"] == jobs["child"]["tunedModel"]["model"]
    assert all(j["state"] == "JOB_STATE_SUCCEEDED" for j in jobs.values())
    assert cli("plan", "--detailed-exitcode").code == 0
