"""Dataset pinning and cost estimates, with datasets in fake-gcs-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.catalog import BYTES_PER_TOKEN
from tests.clihelp import Cli, write_config
from tests.gcsfake import new_bucket, put_object


@pytest.fixture
def bucket(fake_gcs_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_server)
    return new_bucket(fake_gcs_server)


@pytest.fixture
def cli(cli: Cli, bucket: str) -> Cli:
    return cli


def pinned(cli: Cli, bucket: str, name: str = "alpha", **spec) -> Path:
    path = cli.manifest(name, spec={"pinDatasets": True, **spec})
    text = path.read_text().replace(f"gs://bucket/{name}/train.jsonl", f"gs://{bucket}/{name}/train.jsonl")
    path.write_text(text)
    return path


def test_new_upload_to_the_same_uri_replaces_and_the_same_bytes_do_not(cli: Cli, emulator, fake_gcs_server, bucket):
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b'{"contents": "v1"}\n' * 100)
    pinned(cli, bucket)
    cli.ok("apply", "--auto-approve")
    assert cli("plan", "--detailed-exitcode").code == 0
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b'{"contents": "v1"}\n' * 100)  # same bytes
    assert cli("plan", "--detailed-exitcode").code == 0
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b'{"contents": "v2"}\n' * 120)
    body = cli("plan", "--format", "json").json()
    [change] = body["changes"]
    assert change["action"] == "replace" and change["reason"].startswith("training data changed")
    assert {f["path"] for f in change["diff"]} >= {"datasetPins.trainingDatasetUri.size"}


def test_a_missing_pinned_dataset_is_a_plan_error_naming_the_uri(cli: Cli, emulator, bucket):
    path = pinned(cli, bucket)
    r = cli("plan")
    assert r.code == 1
    assert f"{path.relative_to(cli.workdir)}:1: spec.supervisedTuningSpec.trainingDatasetUri: gs://{bucket}/alpha/train.jsonl does not exist" in r.err
    assert emulator.stats()["requests"].get("create", 0) == 0


def test_plan_estimates_cost_and_apply_refuses_above_max_cost(cli: Cli, emulator, fake_gcs_server, bucket):
    size = 4_000_000
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"x" * size)
    put_object(fake_gcs_server, bucket, "beta/train.jsonl", b"y" * (size // 2))
    pinned(cli, bucket, "alpha")
    price = 5.0  # no price is shipped: a `models:` entry of reconciler.yaml gives one
    write_config(cli.workdir, models={"gemini-3.5-flash": {"price": price}})
    path = cli.manifest("beta", epochs=None)  # sizes read on request, epochs left to the service
    path.write_text(path.read_text().replace("gs://bucket/beta/", f"gs://{bucket}/beta/"))
    body = cli("plan", "--format", "json", "--estimate-cost").json()
    alpha = round(size / BYTES_PER_TOKEN * 3 / 1e6 * price, 2)
    beta = round(size / 2 / BYTES_PER_TOKEN * 3 / 1e6 * price, 2)
    costs = {c["name"]: c["cost_usd"] for c in body["changes"]}
    assert costs == {"alpha": alpha, "beta": beta}
    assert body["summary"]["estimated_cost_usd"] == round(alpha + beta, 2)
    assert "epochs assumed" in next(c["cost_note"] for c in body["changes"] if c["name"] == "beta")
    text = cli("plan", "--estimate-cost").out
    assert "Estimated tuning cost: $" in text and "an estimate" in text
    r = cli("apply", "--auto-approve", "--max-cost", str(alpha))
    assert r.code == 1 and "above --max-cost" in r.err
    assert emulator.stats()["requests"].get("create", 0) == 0
    cli.ok("apply", "--auto-approve", "--max-cost", str(alpha + beta + 1))
    assert emulator.stats()["requests"]["create"] == 2


def test_price_table_can_be_overridden(cli: Cli, emulator, fake_gcs_server, bucket):
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"z" * 1_000_000)
    pinned(cli, bucket)
    write_config(cli.workdir, prices={"gemini-3.5-flash": 100.0})
    [change] = cli("plan", "--format", "json").json()["changes"]
    assert change["cost_usd"] == round(1_000_000 / BYTES_PER_TOKEN * 3 / 1e6 * 100.0, 2)


def test_unknown_cost_blocks_max_cost(cli: Cli, emulator):
    cli.manifest("alpha")  # gs://bucket/… does not exist in the storage emulator
    r = cli("apply", "--auto-approve", "--max-cost", "10")
    assert r.code == 1 and "does not exist" in r.err
    assert emulator.stats()["requests"].get("create", 0) == 0


def test_saved_plan_is_stale_when_pinned_data_changed(cli: Cli, emulator, fake_gcs_server, bucket):
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"a" * 1000)
    pinned(cli, bucket)
    cli.ok("plan", "--out", "p.plan")
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"b" * 1001)
    r = cli("apply", "p.plan")
    assert r.code == 1 and "stale" in r.err and "changed in Cloud Storage" in r.err
    assert json.loads((cli.workdir / "p.plan").read_text())["changes"][0]["action"] == "create"
    assert emulator.stats()["requests"].get("create", 0) == 0


def test_turning_pinning_on_never_retunes_but_guards_from_then_on(cli: Cli, emulator, fake_gcs_server, bucket):
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"a" * 500)
    path = cli.manifest("alpha")
    path.write_text(path.read_text().replace("gs://bucket/alpha/", f"gs://{bucket}/alpha/"))
    cli.ok("apply", "--auto-approve")
    pinned(cli, bucket)  # the same model, now with pinDatasets: true
    plan = cli("plan", "--detailed-exitcode")
    assert plan.code == 0 and "datasets pinned from now on" in plan.out
    cli.ok("apply", "--auto-approve")  # records the baseline
    assert cli("plan", "--detailed-exitcode").code == 0
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"b" * 600)
    [change] = cli("plan", "--format", "json").json()["changes"]
    assert change["action"] == "replace" and change["reason"].startswith("training data changed")
    assert emulator.stats()["requests"]["create"] == 1


def test_import_into_a_pinned_manifest_matches(cli: Cli, emulator, fake_gcs_server, bucket):
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"a" * 500)
    [job] = emulator.seed([{"project": "demo-project", "location": "us-central1", "baseModel": "gemini-3.5-flash",
                            "supervisedTuningSpec": {"trainingDatasetUri": f"gs://{bucket}/alpha/train.jsonl",
                                                     "hyperParameters": {"epochCount": 3}},
                            "state": "JOB_STATE_SUCCEEDED"}])
    pinned(cli, bucket)
    assert "matches the manifest" in cli.ok("import", job, "--name", "alpha").err
    assert cli("plan", "--detailed-exitcode").code == 0


def test_status_reads_and_summarises_the_tuning_metrics(cli: Cli, emulator, fake_gcs_server, bucket):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(10_000)
    [detail] = cli.ok("status", "alpha", "--format", "json").json()
    uri = detail["jobs"][0]["gcs_metrics_uri"]
    metrics_bucket, _, prefix = uri[len("gs://"):].partition("/")
    from tests.gcsfake import create_bucket

    create_bucket(fake_gcs_server, metrics_bucket)
    lines = [json.dumps({"step": s, "/train_total_loss": 2.0 / s, "/eval_total_loss": 2.5 / s,
                         "/train_fraction_of_correct_next_step_preds": 0.5 + s / 100}) for s in range(1, 11)]
    put_object(fake_gcs_server, metrics_bucket, f"{prefix}/metrics.jsonl", "\n".join(lines).encode())
    put_object(fake_gcs_server, metrics_bucket, f"{prefix}/README.txt", b"not metrics")
    [detail] = cli.ok("status", "alpha", "--metrics", "--format", "json").json()
    summary = "\n".join(detail["metrics"])
    assert "train_total_loss: last 0.2, first 2, min 0.2 (10 points)" in summary
    assert "eval_total_loss: last 0.25" in summary
    assert "train_fraction_of_correct_next_step_preds: last 0.6" in summary
    text = cli.ok("--no-color", "status", "alpha", "--metrics").out
    assert "train_total_loss: last 0.2" in text
