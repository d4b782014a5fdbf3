"""Settings precedence (reconciler.yaml, then environment, then flags) and config errors."""

from __future__ import annotations

import pytest

from tests.clihelp import Cli


def parents(cli: Cli, *global_args: str) -> list[str]:
    body = cli.ok(*global_args, "plan", "--format", "json").json()
    return [c["parent"] for c in body["changes"]]


def test_file_then_environment_then_flags(cli: Cli, monkeypatch: pytest.MonkeyPatch):
    cli.manifest("alpha")
    assert parents(cli) == ["projects/demo-project/locations/us-central1"]
    monkeypatch.setenv("RECONCILER_REGION", "europe-west4")
    assert parents(cli) == ["projects/demo-project/locations/europe-west4"]
    assert parents(cli, "--region", "asia-east1", "--project", "other-project") == [
        "projects/other-project/locations/asia-east1"]


def test_manifest_values_beat_defaults(cli: Cli):
    cli.manifest("alpha", spec={"region": "us-east4"})
    assert parents(cli, "--region", "asia-east1") == ["projects/demo-project/locations/us-east4"]


def test_stack_from_flag_owns_a_separate_set_of_jobs(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    r = cli("--stack", "other", "--state", "other.json", "plan", "--format", "json")
    assert r.code == 0 and r.json()["summary"]["create"] == 1  # the 'test' stack's job is not its own


def test_missing_project_names_every_way_to_set_it(cli: Cli):
    (cli.workdir / "reconciler.yaml").write_text("stack: test\n")
    cli.manifest("alpha")
    r = cli("validate")
    assert r.code == 1
    assert "spec.project: not set here, nor in reconciler.yaml, RECONCILER_PROJECT or --project" in r.err


def test_config_errors_name_file_line_and_key(cli: Cli):
    (cli.workdir / "reconciler.yaml").write_text("project: demo-project\nregoin: us-central1\nmaxCancel: -1\n")
    r = cli("validate")
    assert r.code == 1
    assert "reconciler.yaml:2: regoin: unknown setting" in r.err
    assert "reconciler.yaml:3: maxCancel:" in r.err


def test_state_from_another_stack_is_refused(cli: Cli):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    r = cli("--stack", "prod", "plan")
    assert r.code == 1 and "belongs to stack 'test'" in r.err


def test_a_malformed_id_is_explained_in_words_not_as_a_regular_expression(cli: Cli):
    (cli.workdir / "reconciler.yaml").write_text("project: p\nregion: us-central1\nstack: s\n")
    r = cli("plan")
    assert r.code == 1 and "reconciler.yaml:1: project: invalid value 'p'" in r.err
    assert "6 to 30 lowercase letters" in r.err and "^(" not in r.err
    (cli.workdir / "reconciler.yaml").write_text("project: demo-project\nregion: us-central1\n")
    r = cli("--stack", "Bad Stack", "plan")
    assert r.code == 1 and "invalid stack 'Bad Stack'" in r.err and "underscores" in r.err
