"""The CLI end to end against a second, independent fake of the API (tests/vertexfake.py).

Our own emulator and our client were written side by side; this fake differs from the emulator
wherever the reference documents allow (small pages, oldest first, project numbers in names,
server-filled defaults, no server-side filter, cancel that ends at once, HTML 503s, 429 with an
HTTP-date Retry-After, lost create responses), so a client that leans on an emulator quirk fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import FailedPreconditionError, NotFoundError
from reconciler.http.retry import RetryPolicy
from reconciler.vertex.client import VertexClient
from reconciler.vertex.wire import SupervisedHyperParameters, SupervisedTuningSpec, TuningJob
from tests.clihelp import Cli, write_config
from tests.localserver import LocalServer
from tests.vertexfake import VertexFake

NUMBER = "428195617364"
PARENT = "projects/demo-project/locations/us-central1"
FAST = RetryPolicy(initial=0.01, maximum=0.05, deadline=20, max_attempts=12)


class Served:
    def __init__(self, fake: VertexFake, url: str) -> None:
        self.fake, self.url = fake, url


@pytest.fixture
def served() -> Iterator[Served]:
    fake = VertexFake()
    with LocalServer(fake.app) as url:
        yield Served(fake, url)


@pytest.fixture
def fake(served: Served) -> VertexFake:
    return served.fake


@pytest.fixture
def fcli(served: Served, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("RECONCILER_API_ENDPOINT", served.url)
    write_config(workdir)
    return Cli(workdir, capsys)


def managed(fake: VertexFake, stack: str = "test") -> list[dict]:
    return [j for j in fake.jobs.values() if (j.get("labels") or {}).get("reconciler-stack") == stack]


def by_model(fake: VertexFake) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for job in managed(fake):
        out.setdefault(job["labels"]["reconciler-name"], []).append(job)
    return out


def _foreign(i: int) -> tuple[dict, dict]:
    """Jobs of other people and tools, of every kind the documents describe."""
    sft = {"trainingDatasetUri": f"gs://other/{i}.jsonl", "hyperParameters": {"epochCount": 2}}
    kinds: list[tuple[dict, dict]] = [
        ({"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": sft, "labels": {"team": "other", "owner": "zoë"}}, {}),
        ({"baseModel": "gemini-3.1-flash-lite", "supervisedTuningSpec": sft}, {"state": "JOB_STATE_SUCCEEDED"}),  # no labels
        ({"preTunedModel": {"tunedModelName": "projects/1/locations/us-central1/models/9", "checkpointId": "2"},
          "supervisedTuningSpec": sft}, {"state": "JOB_STATE_RUNNING"}),  # continuous tuning: no baseModel
        ({"baseModel": "gemini-3.1-flash-lite", "preferenceOptimizationSpec": {
            "trainingDatasetUri": f"gs://other/{i}.jsonl", "hyperParameters": {"beta": 0.1, "epochCount": "1"}}},
         {"state": "JOB_STATE_FAILED", "error": {"code": 3, "message": "bad rows", "details": [
             {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "BAD_DATA", "domain": "aiplatform.googleapis.com"}]}}),
        ({"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": sft, "labels": {"managed-by": "terraform"}},
         {"state": "JOB_STATE_EXPIRED"}),
        ({"baseModel": "gemini-3.5-flash", "supervisedTuningSpec": sft}, {"state": "JOB_STATE_PAUSED"}),
    ]
    body, output = kinds[i % len(kinds)]
    return {**body, "tunedModelDisplayName": f"someone-else-{i}"}, output


def seed_foreign(fake: VertexFake, count: int) -> list[str]:
    out = []
    for i in range(count):
        body, output = _foreign(i)
        out.append(fake.seed("demo-project", "us-central1", body, **output))
    return out


def changes(cli: Cli) -> list[tuple[str, str]]:
    return [(c["action"], c["name"]) for c in cli.ok("plan", "--format", "json").json()["changes"] if c["action"] != "noop"]


def test_apply_then_plan_is_clean_across_pages_numbers_and_oldest_first(fcli: Cli, fake: VertexFake):
    seed_foreign(fake, 6)
    names = [f"m{i}" for i in range(9)]
    for name in names:
        fcli.manifest(name, spec={"region": "europe-west4"} if name == "m8" else None)
    plan = fcli("plan", "--detailed-exitcode")
    assert plan.code == 2 and "9 to create" in plan.out, plan.out + plan.err
    fcli.ok("apply", "--auto-approve")
    jobs = by_model(fake)
    assert sorted(jobs) == names and all(len(v) == 1 for v in jobs.values())
    assert all(j["name"].startswith(f"projects/{NUMBER}/locations/{'europe-west4' if n == 'm8' else 'us-central1'}/tuningJobs/")
               for n, v in jobs.items() for j in v)
    assert len(fake.ops("create")) == 9
    again = fcli("plan", "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    state = fcli.state()["models"]
    assert {n: state[n]["job"] for n in names} == {n: jobs[n][0]["name"] for n in names}
    # 15 jobs, at most 7 a page: the plan read three pages, following opaque base64 tokens.
    lists = fake.ops("list")
    assert any("pageToken" in q for _, _, q, _ in lists)
    assert all(int(q.get("pageSize", "0")) >= 0 for _, _, q, _ in lists)


def test_changed_hyperparameter_replaces_and_server_defaults_are_no_diff(fcli: Cli, fake: VertexFake):
    fcli.manifest("alpha")
    fcli.manifest("beta")
    fcli.ok("apply", "--auto-approve")
    old = {n: v[0]["name"] for n, v in by_model(fake).items()}
    # The fake filled adapterSize and learningRateMultiplier: nothing to change for them.
    assert fcli("plan", "--detailed-exitcode").code == 0
    fcli.manifest("beta", epochs=5)
    body = fcli("plan", "--format", "json").json()
    changed = [c for c in body["changes"] if c["action"] != "noop"]
    assert [(c["action"], c["name"]) for c in changed] == [("replace", "beta")]
    assert changed[0]["diff"] == [{"path": "supervisedTuningSpec.hyperParameters.epochCount", "kind": "changed", "old": 3, "new": 5}]
    fcli.ok("apply", "--auto-approve")
    jobs = {j["name"]: j for j in fake.jobs.values()}
    assert jobs[old["beta"]]["state"] == "JOB_STATE_CANCELLED"
    assert jobs[old["alpha"]]["state"] == "JOB_STATE_PENDING"
    betas = [j for j in by_model(fake)["beta"] if j["state"] == "JOB_STATE_PENDING"]
    assert len(betas) == 1 and betas[0]["supervisedTuningSpec"]["hyperParameters"]["epochCount"] == "5"
    assert fcli("plan", "--detailed-exitcode").code == 0
    assert len(fake.ops("create")) == 3 and len(fake.ops("cancel")) == 1


def test_removed_manifest_cancels_the_orphan_then_forgets_it(fcli: Cli, fake: VertexFake):
    path = fcli.manifest("alpha")
    fcli.manifest("beta")
    [foreign] = seed_foreign(fake, 1)
    fcli.ok("apply", "--auto-approve")
    path.unlink()
    assert changes(fcli) == [("cancel", "alpha"), ("forget", "alpha")]  # one apply removes it
    fcli.ok("apply", "--auto-approve")
    states = {n: v[0]["state"] for n, v in by_model(fake).items()}
    assert states == {"alpha": "JOB_STATE_CANCELLED", "beta": "JOB_STATE_PENDING"}
    assert fake.jobs[foreign.rsplit("/", 1)[1]]["state"] == "JOB_STATE_PENDING"
    # One apply cancelled and forgot it: nothing is left to do.
    assert changes(fcli) == []
    assert set(fcli.state()["models"]) == {"beta"}
    assert fcli("plan", "--detailed-exitcode").code == 0
    assert len(fake.ops("cancel")) == 1


def test_job_that_finished_before_its_cancel_is_not_a_failure(fcli: Cli, fake: VertexFake):
    path = fcli.manifest("alpha")
    fcli.manifest("beta")
    fcli.ok("apply", "--auto-approve")
    path.unlink()
    fake.faults.append(("cancel", "finish-first"))
    r = fcli.ok("apply", "--auto-approve")
    assert "had already finished" in r.out + r.err
    assert by_model(fake)["alpha"][0]["state"] == "JOB_STATE_SUCCEEDED"


def test_refresh_status_output_and_probe_after_jobs_succeed(fcli: Cli, fake: VertexFake):
    smoke = {"smokeTest": {"prompt": "refund please", "expectContains": "refund"}}
    fcli.manifest("alpha", spec=smoke)
    fcli.ok("apply", "--auto-approve")
    fake.advance()  # running: tuningDataStats appear
    [detail] = fcli.ok("status", "alpha", "--format", "json").json()
    assert detail["jobs"][0]["state"] == "JOB_STATE_RUNNING"
    assert detail["tuning_data_stats"]["supervisedTuningDataStats"]["tuningDatasetExampleCount"] == "1200"
    fake.advance()
    r = fcli.ok("refresh")
    assert "passed" in r.err  # the gating smoke test reached the endpoint named by project number
    entry = fcli.state()["models"]["alpha"]
    [job] = by_model(fake)["alpha"]
    assert entry["state"] == "JOB_STATE_SUCCEEDED" and entry["tunedModel"]["endpoint"] == job["tunedModel"]["endpoint"]
    assert entry["tunedModel"]["endpoint"].startswith(f"projects/{NUMBER}/locations/us-central1/endpoints/")
    assert fcli.ok("output").json()["alpha"]["endpoint"] == job["tunedModel"]["endpoint"]
    body = fcli.ok("status", "--format", "json").json()
    assert [(m["name"], m["state"], m["action"]) for m in body["models"]] == [("alpha", "JOB_STATE_SUCCEEDED", "noop")]
    [result] = fcli.ok("probe", "--format", "json").json()
    assert result["passed"] and result["reply"] == "Fake says: refund please"
    text = fcli.ok("--no-color", "status", "alpha").out
    assert "1,200" in text and "tuning steps 300" in text
    assert fcli("plan", "--detailed-exitcode").code == 0


def test_apply_wait_follows_jobs_listed_oldest_first(fcli: Cli, fake: VertexFake):
    fake.auto_advance = True
    fcli.manifest("alpha")
    fcli.ok("apply", "--auto-approve", "--wait", "--poll-interval", "0.01", "--wait-timeout", "10")
    entry = fcli.state()["models"]["alpha"]
    assert entry["state"] == "JOB_STATE_SUCCEEDED" and entry["tunedModel"]["endpoint"]


def test_transient_html_503_and_http_date_429_are_retried(fcli: Cli, fake: VertexFake):
    seed_foreign(fake, 8)
    fcli.manifest("alpha")
    fake.faults += [("list", "html503"), ("list", "429date"), ("list-next", "html503")]
    assert fcli("plan", "--detailed-exitcode").code == 2
    fake.faults += [("create", "html503"), ("create", "429date"), ("list", "html503")]
    fcli.ok("apply", "--auto-approve")
    assert len(managed(fake)) == 1 and not fake.faults
    assert len(fake.ops("create")) == 3  # the HTML 503 and the 429 each left no job behind
    # The retry after each 429 waited for the date its Retry-After named (HTTP dates are whole
    # seconds, at least 0.3 s ahead), where the backoff alone would have retried after ~0.01 s.
    assert len(fake.retry_dates) == 2
    for index, when in fake.retry_dates:
        assert fake.requests[index + 1][3] >= when - 0.01
    assert fcli("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize("filter_mode", ["reject", "ignore", "literal"])
def test_lost_create_responses_never_make_two_jobs(fcli: Cli, fake: VertexFake, filter_mode: str):
    fake.filter_mode = filter_mode  # type: ignore[assignment]
    seed_foreign(fake, 8)  # more than a page: the search for the lost job must page
    for name in ("alpha", "beta", "gamma"):
        fcli.manifest(name)
    fake.faults += [("create", "lost-create")] * 3
    r = fcli.ok("apply", "--auto-approve")
    jobs = by_model(fake)
    for name, [job] in jobs.items():  # each create reports its own job, found by its request label
        assert f"create {name}: created {job['name']}" in r.err
    assert sorted(jobs) == ["alpha", "beta", "gamma"] and all(len(v) == 1 for v in jobs.values())
    assert len(fake.ops("create")) == 3
    assert {n: e["job"] for n, e in fcli.state()["models"].items()} == {n: v[0]["name"] for n, v in jobs.items()}
    assert fcli("plan", "--detailed-exitcode").code == 0


def test_create_lost_until_retries_run_out_is_found_by_the_next_plan(fcli: Cli, fake: VertexFake):
    fcli.manifest("alpha")
    fake.faults.append(("create", "lost-create-outage"))
    r = fcli("apply", "--auto-approve")
    assert r.code == 1 and "alpha" in r.err, r.out + r.err
    assert len(managed(fake)) == 1
    fake.outage = False
    plan = fcli("plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err
    fcli.ok("apply", "--auto-approve")
    assert len(managed(fake)) == 1 and len(fake.ops("create")) == 1
    assert fcli.state()["models"]["alpha"]["job"] == managed(fake)[0]["name"]


def test_import_of_a_job_named_by_project_number(fcli: Cli, fake: VertexFake):
    # A job made by another client (google-genai sends epochCount as a number); the server fills defaults.
    job = fake.seed("demo-project", "us-central1", {
        "baseModel": "gemini-3.5-flash", "tunedModelDisplayName": "alpha",
        "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/alpha/train.jsonl", "hyperParameters": {"epochCount": 3}}})
    fake.advance(2)
    assert job.startswith(f"projects/{NUMBER}/")
    fcli.manifest("alpha")
    by_id = job.replace(f"projects/{NUMBER}/", "projects/demo-project/")  # as a user may write it
    r = fcli.ok("import", by_id, "--name", "alpha")
    assert "matches the manifest" in r.err
    assert fcli("plan", "--detailed-exitcode").code == 0
    fcli.ok("apply", "--auto-approve")
    assert fcli.state()["models"]["alpha"]["job"] == job and not fake.ops("create")


def test_client_against_the_fake(served: Served):
    fake = served.fake
    seed_foreign(fake, 16)
    with VertexClient(endpoint=served.url, retry=FAST) as client:
        listed = client.list_tuning_jobs(PARENT)
        assert [j.name for j in listed] == [j["name"] for j in fake.jobs.values()]  # all 16, in 3 pages
        assert {j.supervised_tuning_spec.hyper_parameters.epoch_count for j in listed if j.supervised_tuning_spec} == {2}
        # An empty first page, then 7 + 7 + 2 jobs.
        assert [q.get("pageToken", "") != "" for _, _, q, _ in fake.ops("list")] == [False, True, True, True]
        spec = SupervisedTuningSpec(trainingDatasetUri="gs://b/t.jsonl",
                                    hyperParameters=SupervisedHyperParameters(epochCount=4, adapterSize="ADAPTER_SIZE_TWO"))
        made = client.create_tuning_job(PARENT, TuningJob(baseModel="gemini-3.5-flash", supervisedTuningSpec=spec), "r-1")
        assert made.state == "JOB_STATE_PENDING" and made.create_time and made.model_extra == {"someNewField": 1}
        assert client.get_tuning_job(made.name or "").name == made.name
        client.cancel_tuning_job(made.name or "")
        with pytest.raises(FailedPreconditionError):
            client.cancel_tuning_job(made.name or "")
        with pytest.raises(NotFoundError):
            client.get_tuning_job(f"projects/{NUMBER}/locations/us-central1/tuningJobs/1")
        assert client.find_by_request(PARENT, "r-1").name == made.name  # type: ignore[union-attr]
        assert client.find_by_request(PARENT, "r-2") is None


def test_cancel_that_never_happens_is_not_repeated_and_the_job_is_forgotten_once_it_ends(fcli: Cli, fake: VertexFake):
    path = fcli.manifest("alpha")
    fcli.manifest("beta")
    fcli.ok("apply", "--auto-approve")
    path.unlink()
    fake.faults.append(("cancel", "cancel-ignored"))
    fcli.ok("apply", "--auto-approve")
    assert by_model(fake)["alpha"][0]["state"] == "JOB_STATE_PENDING"  # accepted, yet nothing happened
    fake.advance(2)
    # Forgotten with the cancel request; the ignored cancel is never repeated (the job is no
    # longer this state's to cancel).
    assert changes(fcli) == []
    fcli.ok("apply", "--auto-approve")
    assert set(fcli.state()["models"]) == {"beta"} and len(fake.ops("cancel")) == 1


def test_failed_job_is_reported_not_retuned(fcli: Cli, fake: VertexFake):
    fcli.manifest("alpha")
    fcli.ok("apply", "--auto-approve")
    [job] = by_model(fake)["alpha"]
    job.update(state="JOB_STATE_FAILED", endTime="2026-11-25T12:00:00Z", error={
        "code": 3, "message": "Dataset has 0 valid examples.",
        "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": []}]})
    plan = fcli("plan", "--format", "json", "--detailed-exitcode")
    assert plan.code == 0
    (change,) = plan.json()["changes"]
    assert change["action"] == "noop" and "Dataset has 0 valid examples." in change["error"]
    fcli.ok("apply", "--auto-approve", "--replace", "alpha")
    assert len(fake.ops("create")) == 2


def test_the_fake_is_as_different_as_it_claims(served: Served):
    """The fake itself: if these drift, the tests above prove less than they say."""
    import httpx

    fake = served.fake
    fake.empty_first_page = False
    url = f"{served.url}/v1/{PARENT}/tuningJobs"
    with httpx.Client() as http:
        assert sorted([http.get(url).json(), http.get(url).json()], key=len) == [{}, {"nextPageToken": ""}]
        seed_foreign(fake, 7)
        first = http.get(url, params={"pageSize": "1000"}).json()
        assert len(first["tuningJobs"]) == 7 and first["nextPageToken"]  # coerced to 7; full page: a token
        last = http.get(url, params={"pageSize": "1000", "pageToken": first["nextPageToken"]}).json()
        assert last in ({}, {"nextPageToken": ""})
        times = [j["createTime"] for j in first["tuningJobs"]]
        assert [j["name"].split("/")[1] for j in first["tuningJobs"]] == [NUMBER] * 7
        assert all(t.endswith("Z") for t in times)
        bad = http.get(url, params={"filter": 'labels.team="other"'})
        assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
        unknown = http.post(url, json={"baseModel": "m", "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/t"},
                                       "batchSize": 4})
        assert unknown.status_code == 400 and "batchSize" in unknown.json()["error"]["message"]
        fake.faults.append(("get", "html503"))
        gfe = http.get(f"{served.url}/v1/{first['tuningJobs'][0]['name']}")
        assert gfe.status_code == 503 and gfe.headers["content-type"].startswith("text/html")


def test_jobs_of_one_second_are_ordered_by_time_not_by_text(fcli: Cli, fake: VertexFake):
    """`…:05Z` is earlier than `…:05.5Z`, though it sorts after it as text (proto3 JSON drops a zero fraction)."""
    fcli.manifest("alpha")
    fcli.ok("apply", "--auto-approve")
    fake.advance(2)
    fcli.ok("refresh")
    fcli.manifest("alpha", epochs=4)
    fcli.ok("apply", "--auto-approve")
    fake.advance(2)
    old, new = by_model(fake)["alpha"]
    old["createTime"], new["createTime"] = "2026-11-25T10:00:05Z", "2026-11-25T10:00:05.500Z"
    old["endTime"], new["endTime"] = "2026-11-25T11:00:00Z", "2026-11-25T11:00:00.250Z"
    fcli.ok("refresh")
    assert fcli.state()["models"]["alpha"]["tunedModel"]["endpoint"] == new["tunedModel"]["endpoint"]
    assert fcli("plan", "--detailed-exitcode").code == 0
    [detail] = fcli.ok("status", "alpha", "--format", "json").json()
    assert [j["job"] for j in detail["jobs"]] == [new["name"], old["name"]]
