"""plan lists a region as soon as the first manifest naming it is valid, and reads the state
after that first request has left (issue 15: the state's import and validation are CPU the first
request need not wait for). What must not change: a state that cannot be read, or a manifest that
is wrong, is the same one-line error, and the listing it interrupts ends instead of reading the
whole region for nobody."""

from __future__ import annotations

import json

import pytest

from tests.clihelp import Cli

JOBS = 40  # in one region, one job per page: a listing read to the end is 40 requests

# A listing left waiting for state names that never come would hang the run: the worker is ended
# (and the test failed) instead of the whole CI run hanging.
pytestmark = pytest.mark.timeout(120, method="thread")


def _crowded_region(emulator) -> None:
    emulator.seed([{"project": "demo-project", "location": "us-central1", "state": "JOB_STATE_SUCCEEDED"}
                   for _ in range(JOBS)])
    emulator.configure(max_page_size=1, latency_ms=20)


def _lists(emulator) -> int:
    return emulator.stats()["requests"].get("list", 0)


def test_a_state_that_cannot_be_read_is_the_error_and_the_listing_ends(cli: Cli, emulator):
    _crowded_region(emulator)
    cli.manifest("alpha")
    (cli.workdir / "reconciler.state.json").write_text("[]")
    r = cli("plan")
    assert r.code == 1 and "reconciler.state.json" in r.err and "expected a JSON object" in r.err, r.err
    assert "Traceback" not in r.err and "bug" not in r.err
    assert _lists(emulator) < 5, emulator.stats()["requests"]


def test_a_wrong_manifest_after_a_valid_one_is_the_error_and_the_listing_ends(cli: Cli, emulator):
    _crowded_region(emulator)
    cli.manifest("alpha")  # valid: its region's listing starts
    (cli.workdir / "manifests" / "zeta.yaml").write_text("apiVersion: reconciler/v1\nkind: TunedModel\n"
                                                         "metadata: {name: zeta}\nspec: {baseModel: 5}\n")
    r = cli("plan")
    assert r.code == 1 and "zeta.yaml" in r.err, r.err
    assert _lists(emulator) < 5, emulator.stats()["requests"]


def test_the_state_is_read_and_its_regions_listed_when_no_manifest_names_them(cli: Cli, emulator):
    """A model whose manifest is gone lives only in the state: its region is listed (after the
    manifests' own) and its model planned, as when the state was read first."""
    cli.manifest("alpha")
    cli.manifest("beta", spec={"region": "europe-west4"})
    cli.ok("apply", "--auto-approve")
    (cli.workdir / "manifests" / "beta.yaml").unlink()
    before = emulator.stats()["requests"].get("list", 0)
    plan = cli("plan", "--format", "json")
    assert plan.code in (0, 2), plan.err
    changes = {c["name"]: c["action"] for c in json.loads(plan.out)["changes"]}
    assert changes["alpha"] == "noop" and changes["beta"] == "forget", changes  # (its job never finished)
    assert _lists(emulator) - before == 2  # us-central1 and europe-west4, once each
