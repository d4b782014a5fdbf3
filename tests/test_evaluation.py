"""Evaluation and checkpoints (issue 13, item 5) and two fidelity fixes (item 6): the label budget
counted from the labels written, and a false bool equal to an unset one. Through the CLI against
the emulator.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.clihelp import Cli

BASE = "gemini-3.5-flash"
EVALUATION = {"metrics": [{"aggregationMetrics": ["AVERAGE"], "pointwiseMetricSpec": {
                  "metricPromptTemplate": "Rate the answer from 1 to 5"}}],
              "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://bucket/eval/"}}}


def _sts(cli: Cli, name: str, **fields: Any) -> None:
    """Set supervisedTuningSpec members (None removes one) of manifests/NAME.yaml."""
    path = cli.workdir / "manifests" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    for key, value in fields.items():
        if value is None:
            doc["spec"]["supervisedTuningSpec"].pop(key, None)
        else:
            doc["spec"]["supervisedTuningSpec"][key] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _spec(cli: Cli, name: str, **fields: Any) -> None:
    path = cli.workdir / "manifests" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"].update(fields)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


# -- evaluationConfig --------------------------------------------------------------------------
def test_evaluation_config_is_sent_as_written_and_compared_structurally(cli: Cli, emulator: Any) -> None:
    cli.manifest("bot", base=BASE, epochs=3)
    _sts(cli, "bot", evaluationConfig=EVALUATION)
    [create] = cli.ok("plan", "--format", "json").json()["changes"]
    assert create["request"]["supervisedTuningSpec"]["evaluationConfig"] == EVALUATION
    cli.ok("apply", "--auto-approve")
    assert emulator.jobs()[0]["supervisedTuningSpec"]["evaluationConfig"] == EVALUATION
    assert cli("plan", "--detailed-exitcode").code == 0

    # The same mapping written in another key order is the same spec.
    reordered = {"outputConfig": EVALUATION["outputConfig"], "metrics": EVALUATION["metrics"]}
    _sts(cli, "bot", evaluationConfig=reordered)
    assert cli("plan", "--detailed-exitcode").code == 0

    changed = {**EVALUATION, "outputConfig": {"gcsDestination": {"outputUriPrefix": "gs://bucket/eval2/"}}}
    _sts(cli, "bot", evaluationConfig=changed)
    result = cli("plan", "--format", "json", "--detailed-exitcode")
    assert result.code == 2
    [change] = result.json()["changes"]
    assert change["action"] == "replace"
    assert [d["path"] for d in change["diff"]] == [
        "supervisedTuningSpec.evaluationConfig.outputConfig.gcsDestination.outputUriPrefix"]


def test_an_evaluation_config_without_its_required_members_is_refused(cli: Cli) -> None:
    cli.manifest("bot", base=BASE)
    _sts(cli, "bot", evaluationConfig={"metrics": []})
    result = cli("validate")
    assert result.code == 1
    assert "spec.supervisedTuningSpec.evaluationConfig: evaluationConfig.metrics: required" in result.err, result.err


def test_status_shows_checkpoints_and_evaluation_results(cli: Cli, emulator: Any) -> None:
    cli.manifest("bot", base=BASE, epochs=3)
    _sts(cli, "bot", evaluationConfig=EVALUATION)
    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    [detail] = cli.ok("status", "bot", "--format", "json").json()
    assert [c["checkpointId"] for c in detail["checkpoints"]] == ["1", "2", "3"]
    assert all(isinstance(c["epoch"], int) and c["endpoint"] for c in detail["checkpoints"])
    assert [r["checkpoint_id"] for r in detail["evaluations"]] == ["1", "2", "3"]
    assert detail["evaluations"][0]["scores"][0]["metric"] == "pointwiseMetricResult"
    assert detail["evaluations"][0]["output"].startswith("gs://bucket/eval/")
    text = cli.ok("status", "bot").out
    assert "checkpoints of tuningJobs/" in text and "evaluation of tuningJobs/" in text, text


# -- servingCheckpoint -------------------------------------------------------------------------
def test_a_manifest_picks_the_checkpoint_the_state_exports_without_re_tuning(cli: Cli, emulator: Any) -> None:
    cli.manifest("bot", base=BASE, epochs=3)
    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    cli.ok("refresh")
    default = cli.state()["models"]["bot"]["tunedModel"]["endpoint"]

    _spec(cli, "bot", servingCheckpoint="2")
    assert cli("plan", "--detailed-exitcode").code == 0  # a choice among what the job made: no re-tune
    cli.ok("apply", "--auto-approve")
    served = cli.state()["models"]["bot"]["tunedModel"]
    [job] = emulator.jobs()
    [second] = [c for c in job["tunedModel"]["checkpoints"] if c["checkpointId"] == "2"]
    assert served["endpoint"] == second["endpoint"] != default
    assert served["checkpointId"] == "2"
    [detail] = cli.ok("status", "bot", "--format", "json").json()
    assert detail["endpoint"] == second["endpoint"] and detail["serving_checkpoint"] == "2"


def test_a_serving_checkpoint_needs_intermediate_checkpoints(cli: Cli) -> None:
    cli.manifest("bot", base=BASE)
    _sts(cli, "bot", exportLastCheckpointOnly=True)
    _spec(cli, "bot", servingCheckpoint="1")
    result = cli("validate")
    assert result.code == 1
    assert "spec.servingCheckpoint: supervisedTuningSpec.exportLastCheckpointOnly is true" in result.err


# -- false equals unset (issue 13, item 6) -----------------------------------------------------
def test_export_last_checkpoint_only_false_added_to_an_applied_manifest_is_a_no_op(cli: Cli, emulator: Any) -> None:
    cli.manifest("bot", base=BASE)
    cli.ok("apply", "--auto-approve")
    _sts(cli, "bot", exportLastCheckpointOnly=False)
    assert cli("plan", "--detailed-exitcode").code == 0
    cli.ok("apply", "--auto-approve")
    assert len(emulator.jobs()) == 1
    emulator.advance(100_000)
    assert cli("plan", "--detailed-exitcode").code == 0

    _sts(cli, "bot", exportLastCheckpointOnly=None)  # and taken out again
    assert cli("plan", "--detailed-exitcode").code == 0
    _sts(cli, "bot", exportLastCheckpointOnly=True)  # true is a real change
    assert cli("plan", "--detailed-exitcode").code == 2


def test_false_set_first_then_removed_is_a_no_op(cli: Cli, emulator: Any) -> None:
    cli.manifest("bot", base=BASE)
    _sts(cli, "bot", exportLastCheckpointOnly=False)
    cli.ok("apply", "--auto-approve")
    _sts(cli, "bot", exportLastCheckpointOnly=None)
    assert cli("plan", "--detailed-exitcode").code == 0


def test_a_job_made_elsewhere_imports_into_a_manifest_that_says_false(cli: Cli, emulator: Any) -> None:
    [job] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": BASE,
                            "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/bot/train.jsonl",
                                                     "hyperParameters": {"epochCount": "3"}},
                            "state": "JOB_STATE_SUCCEEDED"}])
    cli.manifest("bot", base=BASE, epochs=3)
    _sts(cli, "bot", exportLastCheckpointOnly=False)
    result = cli.ok("import", job, "--name", "bot")
    assert "matches the manifest" in result.err, result.err
    assert cli("plan", "--detailed-exitcode").code == 0


# -- the label budget (issue 13, item 6) -------------------------------------------------------
def _labels(n: int) -> dict[str, str]:
    return {f"l{i}": "x" for i in range(n)}


def test_the_label_budget_counts_the_labels_a_create_writes(cli: Cli, emulator: Any) -> None:
    cli.manifest("plain", base=BASE, metadata={"labels": _labels(59)})  # + 5 of ours = 64
    cli.ok("validate")
    cli.ok("apply", "--auto-approve")
    assert len(emulator.jobs()[0]["labels"]) == 64

    cli.manifest("plain", base=BASE, metadata={"labels": _labels(60)})
    result = cli("validate")
    assert result.code == 1
    assert ("manifests/plain.yaml:5: metadata.labels: 60 labels, and each job also carries 5 of the "
            "reconciler's") in result.err, result.err
    assert "at most 59 here" in result.err


def test_protect_and_pinned_data_leave_room_for_57(cli: Cli) -> None:
    cli.manifest("guarded", base=BASE, metadata={"labels": _labels(58), "protect": True},
                 spec={"pinDatasets": True})
    result = cli("validate")
    assert result.code == 1
    assert "each job also carries 7 of the reconciler's" in result.err and "at most 57 here" in result.err
    cli.manifest("guarded", base=BASE, metadata={"labels": _labels(57), "protect": True},
                 spec={"pinDatasets": True})
    cli.ok("validate")
