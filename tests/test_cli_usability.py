"""Day-two details of the command line (issue 14, item 12): messages that say what to do, errors
in the format a pipeline reads, names in a human order, a saved plan applied on its own."""

from __future__ import annotations

import json
import socket

from tests.clihelp import Cli


def test_a_global_option_after_the_command_says_where_it_goes(cli: Cli):
    r = cli("plan", "--stack", "prod")
    assert r.code == 1
    assert "--stack is a global option: put it before the command" in r.err


def test_validate_takes_allow_empty_as_its_own_message_suggests(cli: Cli):
    (cli.workdir / "manifests").mkdir()
    r = cli("validate")
    assert r.code == 1 and "--allow-empty" in r.err
    assert cli.ok("validate", "--allow-empty").out.startswith("0 manifest(s)")


def test_a_failed_plan_still_writes_its_json_and_markdown(cli: Cli):
    bad = cli.manifest("alpha", spec={"baseModel": 5})
    assert bad.exists()
    r = cli("plan", "--format", "json")
    assert r.code == 1
    body = json.loads(r.out)
    assert body["error"].endswith("nothing was changed.") and "alpha.yaml" in body["problems"][0]
    md = cli("plan", "--format", "markdown")
    assert md.code == 1 and "The plan could not be made" in md.out and "alpha.yaml" in md.out


def test_a_saved_plan_is_applied_on_its_own(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("plan", "--out", "plan.json")
    r = cli("apply", "plan.json", "manifests/")
    assert r.code == 1 and "a saved plan is applied on its own" in r.err
    assert not emulator.jobs()


def test_models_are_listed_in_a_human_order(cli: Cli, emulator):
    for n in (1, 10, 2):
        cli.manifest(f"model-{n}")
    text = cli.ok("plan").out
    assert text.index("model-1 ") < text.index("model-2 ") < text.index("model-10 ")


def test_a_failed_model_is_not_called_up_to_date(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    emulator.fail(labels={"reconciler-name": "beta"})
    emulator.advance(10_000)
    headline = cli.ok("plan").out.splitlines()[0]
    assert headline == "No changes. 1 model(s) up to date or in progress, 1 failed (stack test)."


def test_the_emulator_on_a_port_in_use_says_so(cli: Cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("emulator", "--port", str(port))
    assert r.code == 1 and f"cannot listen on 127.0.0.1:{port}" in r.err and "unexpected" not in r.err


def test_target_with_replace_outside_it_is_refused(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.manifest("beta")
    r = cli("plan", "--target", "alpha", "--replace", "beta")
    assert r.code == 1 and "--replace beta is outside --target alpha" in r.err


def test_target_reads_only_the_targeted_models_datasets(cli: Cli, emulator, fake_gcs_server, monkeypatch):
    """With --target, the datasets of the other pinDatasets models are not read (a missing one
    elsewhere no longer fails a targeted plan)."""
    from tests.gcsfake import new_bucket, put_object

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_server)
    bucket = new_bucket(fake_gcs_server)
    put_object(fake_gcs_server, bucket, "alpha/train.jsonl", b"{}\n")
    for name in ("alpha", "beta"):  # beta's dataset does not exist
        path = cli.manifest(name, spec={"pinDatasets": True})
        path.write_text(path.read_text().replace("gs://bucket/", f"gs://{bucket}/"))
    assert cli("plan").code == 1  # the whole set: beta's missing dataset is an error
    r = cli("plan", "--target", "alpha", "--format", "json")
    assert r.code == 0, r.err
    assert [c["name"] for c in r.json()["changes"]] == ["alpha"]


def test_shell_completion_is_offered_and_completes_commands(tmp_path):
    import os
    import subprocess
    import sys

    run = [sys.executable, "-m", "reconciler.cli"]
    script = subprocess.run([*run, "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_reconciler_completion" in script.stdout
    env = {**os.environ, "_RECONCILER_COMPLETE": "complete_bash", "COMP_WORDS": "reconciler pl", "COMP_CWORD": "1"}
    done = subprocess.run([sys.executable, "-c", "from reconciler.cli import main; main()"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "plan" in done.stdout.split(), done.stdout + done.stderr


def test_piped_tables_never_fold_a_job_name(cli: Cli, emulator):
    """A log or a pipe is not 80 columns wide: tables keep each job name on one line."""
    for name in ("alpha", "beta"):
        cli.manifest(name)
    cli.ok("apply", "--auto-approve")
    out = cli.ok("status").out
    names = [j["name"].rsplit("/", 2)[-2] + "/" + j["name"].rsplit("/", 1)[1] for j in emulator.jobs()]
    assert all(any(n in line for line in out.splitlines()) for n in names), out


def test_the_process_ends_with_the_commands_code_its_output_whole_and_exit_handlers_run(tmp_path):
    """The entry point ends the process without tearing the interpreter down (issue 15): the exit
    code is the command's, a large output reaches the pipe whole, registered exit handlers still
    run; under a tracer the interpreter ends as usual (a profiler writes its results then)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
              "if sys.argv[1] == 'traced': sys.settrace(lambda *a: None)\n"
              "sys.argv = ['reconciler', *sys.argv[2:]]\n"
              "from reconciler.cli import run\n"
              "run()\n")
    for mode in ("plain", "traced"):
        schema = subprocess.run([sys.executable, "-c", script, mode, "schema"], capture_output=True, cwd=tmp_path)
        assert schema.returncode == 0 and "handler ran" in schema.stderr.decode()
        assert schema.stdout == (root / "docs" / "manifest.schema.json").read_bytes()
        missing = subprocess.run([sys.executable, "-c", script, mode, "validate", "nowhere"], capture_output=True,
                                 cwd=tmp_path, text=True)
        assert missing.returncode == 1 and "no such file" in missing.stderr and "handler ran" in missing.stderr
