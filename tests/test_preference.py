"""Preference tuning (issue 13, item 4): a second kind, `preferenceOptimizationSpec` with
`hyperParameters.beta`, chosen by which method spec the manifest has. Through the CLI against the
emulator, and the kind's own model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reconciler.kinds import PREFERENCE, SUPERVISED, kind_of_job
from reconciler.manifest import Defaults, load_manifests
from tests.clihelp import Cli

BASE = "gemini-3.5-flash"


def _preference(cli: Cli, name: str = "pref", **hp: Any) -> Path:
    path = cli.manifest(name, base=BASE)
    doc = yaml.safe_load(path.read_text())
    del doc["spec"]["supervisedTuningSpec"]
    doc["spec"]["preferenceOptimizationSpec"] = {
        "trainingDatasetUri": f"gs://bucket/{name}/pairs.jsonl",
        "hyperParameters": {"epochCount": 2, "beta": 0.1, **hp},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_preference_manifest_is_created_and_a_second_plan_is_a_no_op(cli: Cli, emulator: Any) -> None:
    _preference(cli)
    plan = cli.ok("plan", "--format", "json").json()
    [create] = plan["changes"]
    assert create["action"] == "create"
    assert create["request"]["preferenceOptimizationSpec"] == {
        "trainingDatasetUri": "gs://bucket/pref/pairs.jsonl",
        "hyperParameters": {"epochCount": "2", "beta": 0.1},  # int64 as a string (proto3 JSON)
    }
    assert "supervisedTuningSpec" not in create["request"]

    cli.ok("apply", "--auto-approve")
    [job] = emulator.jobs()
    assert job["preferenceOptimizationSpec"]["hyperParameters"]["beta"] == 0.1
    assert "supervisedTuningSpec" not in job
    entry = cli.state()["models"]["pref"]
    assert entry["spec"]["preferenceOptimizationSpec"]["hyperParameters"] == {"epochCount": 2, "beta": 0.1}
    assert cli("plan", "--detailed-exitcode").code == 0
    emulator.advance(100_000)
    assert cli("plan", "--detailed-exitcode").code == 0
    [detail] = cli.ok("status", "pref", "--format", "json").json()
    assert detail["tuning_data_stats"]["preferenceOptimizationDataStats"], detail
    text = cli.ok("status", "pref").out
    assert "examples" in text and "billable tokens" in text, text


def test_a_beta_change_is_a_replace(cli: Cli, emulator: Any) -> None:
    _preference(cli)
    cli.ok("apply", "--auto-approve")
    emulator.advance(100_000)
    _preference(cli, beta=0.5)
    result = cli("plan", "--format", "json", "--detailed-exitcode")
    assert result.code == 2
    [change] = result.json()["changes"]
    assert change["action"] == "replace"
    assert change["diff"] == [{"path": "preferenceOptimizationSpec.hyperParameters.beta", "kind": "changed",
                               "old": 0.1, "new": 0.5}]
    cli.ok("apply", "--auto-approve")
    assert sorted(j["preferenceOptimizationSpec"]["hyperParameters"]["beta"] for j in emulator.jobs()) == [0.1, 0.5]
    assert cli("plan", "--detailed-exitcode").code == 0


def test_one_method_exactly(cli: Cli) -> None:
    path = _preference(cli)
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["supervisedTuningSpec"] = {"trainingDatasetUri": "gs://bucket/x/train.jsonl"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = cli("validate")
    assert result.code == 1
    assert "manifests/pref.yaml:5: spec: set exactly one tuning method: supervisedTuningSpec or " \
           "preferenceOptimizationSpec" in result.err, result.err


def test_preference_hyperparameters_are_checked_with_their_path(cli: Cli) -> None:
    _preference(cli, beta=-1, adapterSize="ADAPTER_SIZE_SEVEN")
    result = cli("validate")
    assert result.code == 1
    assert "spec.preferenceOptimizationSpec.hyperParameters.beta: Input should be greater than or equal to 0" \
        in result.err, result.err
    assert "spec.preferenceOptimizationSpec.hyperParameters.adapterSize" in result.err


def test_the_kind_is_chosen_by_the_method_spec(tmp_path: Path) -> None:
    doc = {"apiVersion": "reconciler/v1", "kind": "TunedModel", "metadata": {"name": "p"},
           "spec": {"baseModel": BASE, "preferenceOptimizationSpec": {"trainingDatasetUri": "gs://bucket/p/x.jsonl",
                                                                      "exportLastCheckpointOnly": True}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    [model] = load_manifests([tmp_path], Defaults("demo-project", "us-central1")).models
    assert model.kind is PREFERENCE
    assert model.training_dataset_uri == "gs://bucket/p/x.jsonl"
    assert model.export_last_checkpoint_only is True
    assert kind_of_job({"preferenceOptimizationSpec": {}}) is PREFERENCE
    assert kind_of_job({"supervisedTuningSpec": {}}) is SUPERVISED
    again = type(model).from_dict(model.to_dict())
    assert again == model and again.spec_hash == model.spec_hash
