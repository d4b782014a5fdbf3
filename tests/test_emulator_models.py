"""The emulator's own list of tunable models: adapter sizes per model and the lifecycle (a create
on a model closed to new tuning is refused with its date), over real HTTP.

The `emulator` fixture's manual clock starts at the wall-clock time; tests that depend on the
date move the retirement dates with `model_retirements` instead of relying on today's date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from reconciler.emulator.models import TUNABLE_MODELS, month_before

PARENT = "projects/demo-project/locations/us-central1"
JOBS = f"/v1/{PARENT}/tuningJobs"
SIZES = {
    1: "ADAPTER_SIZE_ONE",
    2: "ADAPTER_SIZE_TWO",
    4: "ADAPTER_SIZE_FOUR",
    8: "ADAPTER_SIZE_EIGHT",
    16: "ADAPTER_SIZE_SIXTEEN",
    32: "ADAPTER_SIZE_THIRTY_TWO",
}
# As documented on the supervised-tuning page (read 2026-12-03).
DOCUMENTED = {
    "gemini-3.5-flash": {1, 2, 4, 8, 16},
    "gemini-3.5-flash-lite": {1, 2, 4, 8, 16},
    "gemini-3.1-flash-lite": {1, 2, 4, 8, 16},
    "gemini-2.5-pro": {1, 2, 4, 8},
    "gemini-2.5-flash": {1, 2, 4, 8, 16},
    "gemini-2.5-flash-lite": {1, 2, 4, 8, 16},
    "gemini-2.0-flash-001": {1, 2, 4, 8},
    "gemini-2.0-flash-lite-001": {1, 2, 4, 8},
}


def body(model: str, adapter: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"trainingDatasetUri": "gs://bucket/train.jsonl"}
    if adapter:
        spec["hyperParameters"] = {"adapterSize": adapter}
    return {"baseModel": model, "supervisedTuningSpec": spec}


def today(emulator: Any) -> dt.date:
    now = emulator.admin.post("/_emulator/advance", json={"seconds": 0}).json()["now"]
    return dt.date.fromisoformat(now[:10])


@pytest.mark.parametrize("model", sorted(DOCUMENTED))
def test_each_model_takes_exactly_its_documented_adapter_sizes(emulator: Any, model: str) -> None:
    emulator.configure(refuse_retired_models=False)  # the 2.x models are retired by now
    http: httpx.Client = emulator.admin
    for size, name in SIZES.items():
        r = http.post(JOBS, json=body(model, name))
        if size in DOCUMENTED[model]:
            assert r.status_code == 200, (size, r.text)
        else:
            assert r.status_code == 400, (size, r.text)
            error = r.json()["error"]
            assert error["status"] == "INVALID_ARGUMENT"
            assert f"{name} is not supported for base model {model}" in error["message"]
            [violation] = error["details"][0]["fieldViolations"]
            assert (
                violation["field"]
                == "tuning_job.supervised_tuning_spec.hyper_parameters.adapter_size"
            )


def test_the_current_models_are_tunable_today(emulator: Any) -> None:
    for model in ("gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite"):
        r = emulator.admin.post(JOBS, json=body(f"publishers/google/models/{model}"))
        assert r.status_code == 200, r.text


def test_a_create_on_a_model_closed_to_new_tuning_is_failed_precondition_with_the_dates(
    emulator: Any,
) -> None:
    day = today(emulator)
    retires = day + dt.timedelta(days=10)  # closed a month before: already refused
    emulator.configure(model_retirements={"gemini-3.5-flash": retires.isoformat()})
    r = emulator.admin.post(JOBS, json=body("gemini-3.5-flash"))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["status"] == "FAILED_PRECONDITION"
    assert f"retires on {retires.isoformat()}" in error["message"]
    assert month_before(retires).isoformat() in error["message"]
    [info] = error["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "MODEL_RETIRED"
    assert info["metadata"]["retirement"] == retires.isoformat()
    assert emulator.stats()["jobs"] == 0


def test_a_model_past_its_retirement_says_it_was_retired(emulator: Any) -> None:
    past = today(emulator) - dt.timedelta(days=1)
    emulator.configure(model_retirements={"gemini-3.1-flash-lite": past.isoformat()})
    r = emulator.admin.post(JOBS, json=body("gemini-3.1-flash-lite"))
    assert r.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert f"was retired on {past.isoformat()}" in r.json()["error"]["message"]


def test_tuning_stays_open_until_a_month_before_retirement(emulator: Any) -> None:
    retires = today(emulator) + dt.timedelta(days=45)
    emulator.configure(model_retirements={"gemini-3.5-flash": retires.isoformat()})
    assert emulator.admin.post(JOBS, json=body("gemini-3.5-flash")).status_code == 200
    emulator.advance(16 * 86400)  # now within the month before retirement
    assert emulator.admin.post(JOBS, json=body("gemini-3.5-flash")).status_code == 400


def test_retired_models_on_the_emulator_clock_are_refused_unless_switched_off(
    emulator: Any,
) -> None:
    http: httpx.Client = emulator.admin
    if today(emulator) >= dt.date(2026, 2, 5):  # gemini-2.0-flash-001 retired that day
        assert http.post(JOBS, json=body("gemini-2.0-flash-001")).json()["error"]["status"] == (
            "FAILED_PRECONDITION"
        )
    emulator.configure(refuse_retired_models=False)
    assert http.post(JOBS, json=body("gemini-2.0-flash-001")).status_code == 200


def test_jobs_of_retired_models_can_always_be_seeded(emulator: Any) -> None:
    [name] = emulator.seed(
        [
            {
                "project": "demo-project",
                "location": "us-central1",
                **body("gemini-1.5-pro-002"),
                "state": "JOB_STATE_SUCCEEDED",
            }
        ]
    )
    assert emulator.admin.get(f"/v1/{name}").json()["state"] == "JOB_STATE_SUCCEEDED"


def test_bad_lifecycle_settings_are_refused(emulator: Any) -> None:
    for changes in (
        {"model_retirements": {"gemini-3.5-flash": "soon"}},
        {"refuse_retired_models": "no"},
    ):
        r = emulator.admin.post("/_emulator/config", json=changes)
        assert r.status_code == 400, changes


def test_the_list_knows_every_documented_model_and_no_thirty_two_for_gemini() -> None:
    assert set(DOCUMENTED) <= set(TUNABLE_MODELS)
    for model in DOCUMENTED:
        assert "ADAPTER_SIZE_THIRTY_TWO" not in TUNABLE_MODELS[model].adapter_sizes
    assert month_before(dt.date(2027, 3, 31)) == dt.date(2027, 2, 28)
    assert month_before(dt.date(2027, 1, 15)) == dt.date(2026, 12, 15)
