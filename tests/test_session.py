"""The session façade against an in-memory fake of the tuning-jobs API: the rules of the commands
(scope, limits, approval, saved plans, state push) without HTTP or an emulator. Fast."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from reconciler.config import Settings
from reconciler.errors import PlanError, ReconcilerError, StalePlanError
from reconciler.session import Limits, PlanOptions, Session
from reconciler.state.local import LocalStateStore
from reconciler.vertex.wire import TuningJob

PARENT = "projects/demo-project/locations/us-central1"
LIVE = "JOB_STATE_RUNNING"


class FakeVertex:
    """Just enough of VertexClient: jobs in a dict, names under the parent, states settable."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.ids = itertools.count(1)
        self.calls: list[str] = []

    def list_tuning_jobs(self, parent: str, filter: str | None = None) -> list[TuningJob]:
        self.calls.append("list")
        return [TuningJob.model_validate(j) for j in self.jobs.values() if j["name"].startswith(parent + "/")]

    def create_tuning_job(self, parent: str, job: TuningJob, request_id: str) -> TuningJob:
        self.calls.append("create")
        body = json.loads(job.model_dump_json(by_alias=True, exclude_none=True))
        name = f"{parent}/tuningJobs/{next(self.ids)}"
        body.update(name=name, state=LIVE, createTime=f"2026-12-03T00:00:{len(self.jobs):02d}Z",
                    labels={**body.get("labels", {}), "reconciler-request": request_id})
        self.jobs[name] = body
        return TuningJob.model_validate(body)

    def find_by_request(self, parent: str, request_id: str) -> TuningJob | None:
        found = [j for j in self.jobs.values() if j.get("labels", {}).get("reconciler-request") == request_id]
        return TuningJob.model_validate(found[0]) if found else None

    def cancel_tuning_job(self, name: str) -> None:
        self.calls.append("cancel")
        self.jobs[name]["state"] = "JOB_STATE_CANCELLING"

    def generate_content(self, endpoint: str, prompt: str) -> dict:
        return {"candidates": [{"content": {"parts": [{"text": "ok"}]}}]}

    def close(self) -> None:
        pass


def manifest(folder: Path, name: str, epochs: int = 3) -> Path:
    doc = {"apiVersion": "reconciler/v1", "kind": "TunedModel", "metadata": {"name": name},
           "spec": {"baseModel": "gemini-3.5-flash",
                    "supervisedTuningSpec": {"trainingDatasetUri": f"gs://bucket/{name}.jsonl",
                                             "hyperParameters": {"epochCount": epochs}}}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def session(tmp_path: Path) -> Session:
    settings = Settings(project="demo-project", region="us-central1", stack="test",
                        state=str(tmp_path / "state.json"), manifests=str(tmp_path / "manifests"))
    return Session(settings, api=FakeVertex(), state_store=LocalStateStore(tmp_path / "state.json"))  # type: ignore[arg-type]


NO_OPTIONS, NO_LIMITS = PlanOptions(), Limits()


def apply(session: Session, paths=(), *, options=NO_OPTIONS, limits=NO_LIMITS, approve=lambda _p: True):
    return session.apply(list(paths), options, limits, lock_timeout=None, concurrency=2, show=lambda _p: None,
                         approve=approve, on_outcome=lambda _o: None, on_probe=lambda _r: None)


def live(session: Session) -> list[str]:
    return sorted(j["labels"]["reconciler-name"] for j in session.api.jobs.values() if j["state"] == LIVE)


def test_plan_then_apply_then_nothing_to_do(session: Session, tmp_path: Path):
    root = tmp_path / "manifests"
    manifest(root, "alpha")
    manifest(root, "beta")
    plan = session.plan([], PlanOptions())
    assert [c.action.value for c in plan.changes] == ["create", "create"] and plan.prune
    planned, result = apply(session)
    assert not result.failed and live(session) == ["alpha", "beta"]
    assert not session.plan([], PlanOptions()).has_changes
    assert set(session.read_state().models) == {"alpha", "beta"}


def test_a_subset_prunes_nothing_unless_told(session: Session, tmp_path: Path):
    root = tmp_path / "manifests"
    manifest(root, "alpha")
    beta = manifest(root, "beta")
    apply(session)
    beta.unlink()
    subset = session.plan([root / "alpha.yaml"], PlanOptions())
    assert not subset.prune and not subset.has_changes
    assert [c.action.value for c in session.plan([root / "alpha.yaml"], PlanOptions(prune=True)).actionable] == ["cancel", "forget"]
    assert [c.action.value for c in session.plan([root], PlanOptions()).actionable] == ["cancel", "forget"]


def test_limits_refuse_before_anything_changes(session: Session, tmp_path: Path):
    root = tmp_path / "manifests"
    for name in ("a", "b", "c"):
        manifest(root, name)
    apply(session)
    for name in ("a", "b", "c"):
        (root / f"{name}.yaml").unlink()
    manifest(root, "d")
    session.api.calls.clear()
    with pytest.raises(PlanError, match="more than --max-cancel 2"):
        apply(session, limits=Limits(max_cancel=2))
    assert "create" not in session.api.calls and "cancel" not in session.api.calls


def test_an_unapproved_plan_changes_nothing(session: Session, tmp_path: Path):
    manifest(tmp_path / "manifests", "alpha")
    assert apply(session, approve=lambda _p: False) is None
    assert session.api.jobs == {}


def test_saved_plans_edited_or_stale_are_refused(session: Session, tmp_path: Path):
    manifest(tmp_path / "manifests", "alpha")
    saved = tmp_path / "plan.json"
    saved.write_text(session.plan([], PlanOptions()).model_dump_json())
    body = json.loads(saved.read_text())
    body["changes"][0]["request"]["serviceAccount"] = "evil@x.iam.gserviceaccount.com"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(body))
    with pytest.raises(PlanError, match="was edited"):
        apply(session, [edited])
    apply(session)  # another run applies first: the saved plan is now stale
    with pytest.raises(StalePlanError, match="decisions differ for alpha"):
        apply(session, [saved])


def test_a_saved_plan_with_a_model_this_version_cannot_read_is_refused(session: Session, tmp_path: Path):
    from reconciler.plan import fingerprint

    manifest(tmp_path / "manifests", "alpha")
    body = json.loads(session.plan([], PlanOptions()).model_dump_json())
    body["desired"][0]["bogus"] = 1
    body["fingerprint"] = fingerprint(body)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(body))
    with pytest.raises(PlanError, match=r"desired\[0\] \('alpha'\) is not a model this version reads"):
        apply(session, [path])


def test_state_push_refuses_another_lineage_and_a_newer_serial(session: Session, tmp_path: Path):
    manifest(tmp_path / "manifests", "alpha")
    apply(session)
    other = tmp_path / "other.json"
    other.write_bytes(session.state_pull())
    body = json.loads(other.read_text())
    body["lineage"] = "another"
    other.write_text(json.dumps(body))
    with pytest.raises(ReconcilerError, match="another lineage"):
        session.state_push(other, force=False, lock_timeout=None)
    where, serial = session.state_push(other, force=True, lock_timeout=None)
    assert serial >= 1 and json.loads(session.state_pull())["lineage"] == "another"


def test_outputs_and_probe_read_the_state(session: Session, tmp_path: Path):
    manifest(tmp_path / "manifests", "alpha")
    apply(session)
    assert session.outputs(None)["alpha"]["job"] is None  # not succeeded yet: nothing serves
    with pytest.raises(ReconcilerError, match="no model named 'nope'"):
        session.outputs("nope")
    [result] = session.probe(["alpha"], None, None)
    assert not result.passed  # no endpoint in service yet


def test_settings_are_the_only_input(tmp_path: Path):
    """A session is made from settings alone: another stack sees none of this stack's jobs."""
    api = FakeVertex()
    settings = Settings(project="demo-project", region="us-central1", stack="one",
                        state=str(tmp_path / "one.json"), manifests=str(tmp_path / "manifests"))
    manifest(tmp_path / "manifests", "alpha")
    one = Session(settings, api=api, state_store=LocalStateStore(tmp_path / "one.json"))  # type: ignore[arg-type]
    apply(one)
    two = Session(replace(settings, stack="two"), api=api, state_store=LocalStateStore(tmp_path / "two.json"))  # type: ignore[arg-type]
    assert [c.action.value for c in two.plan([], PlanOptions()).changes] == ["create"]
