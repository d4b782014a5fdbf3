"""A cancel that loses the race to completion, through the CLI against the emulator.

The API says a cancel is best effort: "Clients can use GetTuningJob ... to check whether the
cancellation succeeded or whether the job completed despite cancellation", and a CANCELLING
job may end SUCCEEDED. The emulator's `cancel_wins: false` makes every cancelled job do so.
The reconciler must cope: such a job is reported (it serves a model), never cancelled again,
and plan/apply reach a fixed point instead of looping.
"""

from __future__ import annotations

from typing import Any

from tests.clihelp import Cli


def jobs_of(emulator: Any, name: str) -> list[dict[str, Any]]:
    return [j for j in emulator.jobs() if j.get("labels", {}).get("reconciler-name") == name]


def settle(cli: Cli, rounds: int = 3) -> list[dict[str, Any]]:
    """Plan and apply until the plan is empty (at most `rounds` applies); the JSON plans seen."""
    plans = []
    for _ in range(rounds):
        plan = cli("plan", "--format", "json").json()
        plans.append(plan)
        if all(c["action"] == "noop" for c in plan["changes"]):
            break
        cli.ok("apply", "--auto-approve")
    return plans


def test_a_replaced_job_that_succeeds_despite_its_cancel_is_not_looped_on(cli: Cli, emulator: Any) -> None:
    emulator.configure(cancel_wins=False)
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    emulator.advance(120)  # running
    cli.manifest("alpha", epochs=5)
    cli.ok("apply", "--auto-approve")  # replace: cancel the old job, create the new one
    assert emulator.stats()["requests"]["cancel"] == 1
    emulator.advance(30)  # the cancel loses: the old job SUCCEEDED
    old, new = sorted(jobs_of(emulator, "alpha"), key=lambda j: j["createTime"])
    assert old["state"] == "JOB_STATE_SUCCEEDED" and "error" not in old
    plans = settle(cli)
    assert all(c["action"] == "noop" for c in plans[-1]["changes"]), plans[-1]
    assert emulator.stats()["requests"]["create"] == 2
    assert emulator.stats()["requests"]["cancel"] == 1  # never cancelled again
    assert cli("plan", "--detailed-exitcode").code == 0
    emulator.advance(1000)  # the replacement succeeds too
    cli.ok("refresh")
    entry = cli.state()["models"]["alpha"]
    assert entry["tunedModel"]["endpoint"] == new["name"].replace("tuningJobs", "endpoints").replace(
        new["name"].rsplit("/", 1)[1], str(8 * 10**18 + int(new["name"].rsplit("/", 1)[1]))
    )
    assert cli("plan", "--detailed-exitcode").code == 0
    assert emulator.stats()["requests"]["create"] == 2


def test_a_removed_model_whose_cancel_lost_is_reported_not_looped_on(cli: Cli, emulator: Any) -> None:
    emulator.configure(cancel_wins=False)
    path = cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    path.unlink()
    cli.ok("apply", "--auto-approve")  # cancels alpha's job
    emulator.advance(30)
    [job] = jobs_of(emulator, "alpha")
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    plans = settle(cli)
    assert all(c["action"] == "noop" for c in plans[-1]["changes"]), plans[-1]
    assert emulator.stats()["requests"]["cancel"] == 1
    assert cli("plan", "--detailed-exitcode").code == 0


def test_status_and_plan_say_the_job_completed_despite_the_cancel(cli: Cli, emulator: Any) -> None:
    emulator.configure(cancel_wins=False)
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    cli.manifest("alpha", epochs=5)
    cli.ok("apply", "--auto-approve")
    emulator.advance(30)
    [old] = [j for j in jobs_of(emulator, "alpha") if j["state"] == "JOB_STATE_SUCCEEDED"]
    plan = cli("plan")
    status = cli("status", "alpha")
    said = plan.out + plan.err + status.out + status.err
    assert "despite" in said and old["name"].rsplit("/", 1)[1] in said, said
    body = cli("plan", "--format", "json").json()
    assert any("despite" in w for w in body.get("warnings", [])), body.get("warnings")
    detail = cli.ok("status", "alpha", "--format", "json").json()
    [row] = [j for j in detail[0]["jobs"] if j["job"] == old["name"]]
    assert row["completed_despite_cancel"] is True
    cli.ok("apply", "--auto-approve")  # recorded once: the state says so from now on
    assert old["name"] in cli.state()["models"]["alpha"]["completedDespiteCancel"]
