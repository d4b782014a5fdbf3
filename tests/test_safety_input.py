"""Safety under misuse (issue 11, items 1 settings part, 2, 4, 9, 10): input that cannot be read,
names that hide a YAML file, YAML that resolves to unexpected types, identifiers with a trailing
newline, settings out of bounds.

Every case goes through the CLI (`validate` needs no API) and must end in exit 1 with a
`file:line: message` or `file: message` naming the culprit — never a skip, never a traceback, and
never a change: a manifest that cannot be read must not make its model look deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.config import load_settings
from reconciler.errors import ConfigError
from tests.clihelp import Cli, write_config

GOOD = """\
apiVersion: reconciler/v1
kind: TunedModel
metadata:
  name: {name}
spec:
  baseModel: gemini-3.5-flash
  supervisedTuningSpec:
    trainingDatasetUri: gs://bucket/train.jsonl
"""


def _validate(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--project", "demo-project", "--region", "us-central1", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _no_crash(text: str) -> None:
    assert "this is a bug" not in text and "Traceback" not in text, text


# -- item 1 (settings part): the stack's manifest root -------------------------------------------
def test_manifest_root_setting_file_environment_and_default(tmp_path: Path):
    """`manifests:` is relative to the config file's folder (like `state`); the environment and
    the default are relative to the working directory; the environment beats the file."""
    assert load_settings(config_file=None, cwd=tmp_path, env={}, flags={}).manifests == "manifests"
    conf = tmp_path / "infra" / "reconciler.yaml"
    conf.parent.mkdir()
    conf.write_text("manifests: models\n")
    s = load_settings(config_file=conf, cwd=tmp_path, env={}, flags={})
    assert Path(s.manifests) == tmp_path / "infra" / "models"
    conf.write_text("stack: prod\n")
    assert load_settings(config_file=conf, cwd=tmp_path, env={}, flags={}).manifests == "manifests"
    conf.write_text(f"manifests: {tmp_path / 'abs'}\n")
    assert load_settings(config_file=conf, cwd=tmp_path, env={}, flags={}).manifests == str(tmp_path / "abs")
    s = load_settings(config_file=conf, cwd=tmp_path, env={"RECONCILER_MANIFESTS": "elsewhere"}, flags={})
    assert s.manifests == "elsewhere"
    for bad in ("manifests: ''", "manifests: gs://bucket/m", "manifests: [a]", 'manifests: "a\\0b"'):
        conf.write_text(bad + "\n")
        with pytest.raises(ConfigError, match="manifests"):
            load_settings(config_file=conf, cwd=tmp_path, env={}, flags={})


# -- item 2: every YAML-named entry is read or is an error naming it ------------------------------
def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


def _make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(path.parent)  # AF_UNIX paths are short: bind by the relative name
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
    sock.close()


UNREADABLE = {
    "dangling symlink": (lambda p: p.symlink_to(p.parent / "gone.yaml"), "dangling symlink"),
    "symlink loop": (lambda p: p.symlink_to(p.name), "symlink loop"),
    "fifo": (_make_fifo, "FIFO"),
    "socket": (_make_socket, "socket"),
    "device": (lambda p: p.symlink_to("/dev/null"), "character device"),
    "folder named x.yaml": (lambda p: (p.mkdir(), (p / "inner.yaml").write_text(GOOD.format(name="inner"))),
                            "folder with a YAML file name"),
    "not utf-8": (lambda p: p.write_bytes(GOOD.format(name="latin").encode() + b"# caf\xe9\n"), "not valid UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
@pytest.mark.parametrize("name", ["b.yaml", "c.YML"])
def test_unreadable_yaml_named_entry_is_an_error_naming_it(workdir: Path, capsys, kind: str, name: str):
    make, words = UNREADABLE[kind]
    folder = workdir / "manifests" / "team"
    folder.mkdir(parents=True)
    (workdir / "manifests" / "a.yaml").write_text(GOOD.format(name="alpha"))
    make(folder / name)
    outcome: list[tuple[int, str, str]] = []
    # a FIFO that were opened would block forever: run in a thread and give up loudly
    runner = threading.Thread(target=lambda: outcome.append(_validate("validate", capsys=capsys)), daemon=True)
    runner.start()
    runner.join(30)
    if runner.is_alive():
        with open(folder / name, "wb"):  # unblock the reader
            pass
        pytest.fail(f"validate blocked on {kind}")
    code, out, err = outcome[0]
    _no_crash(out + err)
    assert code == 1, (out, err)
    assert re.search(rf"^manifests/team/{re.escape(name)}(:\d+)?: .*{words}", err, re.M), err
    assert "nothing was changed" in err


@pytest.mark.parametrize("name", ["b.YAML", "c.Yml", "d.yAmL"])
def test_yaml_suffix_in_any_case_is_read(workdir: Path, capsys, name: str):
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(GOOD.format(name="alpha"))
    (workdir / "manifests" / name).write_text(GOOD.format(name="beta"))
    code, out, err = _validate("validate", capsys=capsys)
    assert code == 0, err
    assert "2 manifest(s) in 2 file(s)" in out
    (workdir / "manifests" / name).write_text(GOOD.format(name="Bad_Name"))
    code, _, err = _validate("validate", capsys=capsys)
    assert code == 1 and f"manifests/{name}:4: metadata.name" in err, err


def test_hidden_entries_and_config_files_are_still_skipped(workdir: Path, capsys):
    """Unchanged behaviour (docs/manifest.md): hidden files and folders are not manifests."""
    (workdir / "manifests" / ".git").mkdir(parents=True)
    (workdir / "manifests" / "a.yaml").write_text(GOOD.format(name="alpha"))
    (workdir / "manifests" / ".git" / "x.yaml").symlink_to("nowhere")
    (workdir / "manifests" / ".hidden.yaml").symlink_to("nowhere")
    (workdir / "manifests" / "reconciler.yaml").write_text("stack: x\n")
    code, out, err = _validate("validate", capsys=capsys)
    assert code == 0 and "1 manifest(s) in 1 file(s)" in out, err


def _unreadable_file(path: Path) -> None:
    path.write_text(GOOD.format(name="secret"))
    path.chmod(0)


def test_manifest_without_read_permission_is_an_error(workdir: Path, capsys):
    """A file the process may not read. As root (CAP_DAC_OVERRIDE reads anything) the CLI runs in a
    child without that capability, so the file is truly unreadable, not simulated."""
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(GOOD.format(name="alpha"))
    _unreadable_file(workdir / "manifests" / "b.yaml")
    args = ["--project", "demo-project", "--region", "us-central1", "validate"]
    if not os.access(workdir / "manifests" / "b.yaml", os.R_OK):
        code, _, err = _validate("validate", capsys=capsys)
    else:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running with CAP_DAC_OVERRIDE and no setpriv to drop it")
        caps = "-dac_override,-dac_read_search"
        run = subprocess.run(
            [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", sys.executable, "-c",
             "import sys; from reconciler.cli import main; sys.exit(main(sys.argv[1:]))", *args],
            cwd=workdir, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        if run.returncode != 0 and "setpriv:" in run.stderr:
            pytest.skip(f"cannot drop capabilities here: {run.stderr.strip()}")
        code, err = run.returncode, run.stderr
    _no_crash(err)
    assert code == 1, err
    assert "manifests/b.yaml: cannot read: Permission denied" in err, err


def test_explicit_paths_that_cannot_be_read_are_errors(workdir: Path, capsys):
    (workdir / "a.yaml").write_text(GOOD.format(name="alpha"))
    Path("link.yaml").symlink_to("gone.yaml")
    os.mkfifo("pipe.yaml")
    code, _, err = _validate("validate", "a.yaml", "missing.yaml", "link.yaml", "pipe.yaml", capsys=capsys)
    _no_crash(err)
    assert code == 1
    assert "missing.yaml: no such file or directory" in err
    assert "link.yaml: dangling symlink (points to gone.yaml" in err
    assert re.search(r"^pipe\.yaml: a FIFO", err, re.M), err


@pytest.mark.parametrize("break_it", ["dangling symlink", "upper-case suffix", "fifo"])
def test_an_unreadable_manifest_never_makes_its_model_look_deleted(cli: Cli, emulator, break_it: str):
    cli.manifest("alpha")
    beta = cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    assert emulator.stats()["requests"].get("create", 0) == 2
    beta.unlink()
    if break_it == "dangling symlink":
        beta.symlink_to(beta.parent / "moved-away.yaml")
    elif break_it == "fifo":
        os.mkfifo(beta)
    else:
        beta.with_name("beta.YAML").write_text(yaml.safe_dump(
            {"apiVersion": "reconciler/v1", "kind": "TunedModel", "metadata": {"name": "beta"},
             "spec": {"baseModel": "gemini-3.5-flash",
                      "supervisedTuningSpec": {"trainingDatasetUri": "gs://bucket/beta/train.jsonl",
                                               "hyperParameters": {"epochCount": 3}}}}, sort_keys=False))
    before = emulator.stats()["requests"]
    plan = cli("plan")
    apply = cli("apply", "--auto-approve")
    for r in (plan, apply):
        _no_crash(r.out + r.err)
    after = emulator.stats()["requests"]
    assert after.get("cancel", 0) == before.get("cancel", 0) == 0
    assert after.get("create", 0) == 2
    if break_it == "upper-case suffix":  # read, so nothing to do
        assert apply.code == 0, apply.err
    else:
        assert plan.code == 1 and apply.code == 1, (plan.err, apply.err)
        assert "manifests/beta.yaml: " in apply.err and "nothing was changed" in apply.err
    assert {j["labels"]["reconciler-name"]: j["state"] for j in emulator.jobs()} == {
        "alpha": "JOB_STATE_PENDING", "beta": "JOB_STATE_PENDING"}


# -- names that hide a YAML file, and symlinked folders (issue 11 item 2, review 2) --------------
@pytest.mark.parametrize("disguise", ["trailing space", "trailing newline", "trailing NBSP", "ESC inside",
                                      "symlinked folder"])
def test_a_disguised_manifest_or_a_linked_folder_is_an_error_not_a_removal(
        cli: Cli, emulator, tmp_path_factory: pytest.TempPathFactory, disguise: str):
    cli.manifest("alpha")
    beta = cli.manifest("beta")
    cli.ok("apply", "--auto-approve")
    if disguise == "symlinked folder":  # its manifest moved into a folder outside, linked back in
        outside = tmp_path_factory.mktemp("outside")
        beta.rename(outside / "beta.yaml")
        (beta.parent / "linked").symlink_to(outside, target_is_directory=True)
        named = "manifests/linked: a symlink to a folder"
    else:
        name = {"trailing space": "beta.yaml ", "trailing newline": "beta.yaml\n", "trailing NBSP": "beta.yaml\u00a0",
                "ESC inside": "be\x1bta.yaml"}[disguise]
        beta.rename(beta.with_name(name))
        named = f"manifests/{name!r}: a YAML file name with whitespace or control characters"
    before = emulator.stats()["requests"]
    for args in (("plan",), ("apply", "--auto-approve"), ("validate",)):
        result = cli(*args)
        _no_crash(result.out + result.err)
        assert result.code == 1, (args, result.out, result.err)
        assert named in result.err, result.err
        assert "\x1b" not in result.err and all(line.isprintable() for line in result.err.splitlines())
    after = emulator.stats()["requests"]
    assert after.get("cancel", 0) == before.get("cancel", 0) == 0 and after.get("create", 0) == 2
    assert {j["labels"]["reconciler-name"]: j["state"] for j in emulator.jobs()} == {
        "alpha": "JOB_STATE_PENDING", "beta": "JOB_STATE_PENDING"}


@pytest.mark.parametrize("name", ["t-d.yaml.", "t-e.ya ml", "notes.txt", "t-f.yaml.bak"])
def test_names_that_are_not_yaml_names_are_still_skipped(workdir: Path, capsys, name: str):
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(GOOD.format(name="alpha"))
    (workdir / "manifests" / name).write_text("not: [a manifest")
    code, out, err = _validate("validate", capsys=capsys)
    assert code == 0, err


def test_size_is_checked_before_the_file_is_read(workdir: Path, capsys):
    """A sparse 400 MB file is refused from its size: far less than that is ever in memory."""
    (workdir / "manifests").mkdir()
    with open(workdir / "manifests" / "big.yaml", "wb") as f:
        f.truncate(400 * 1024 * 1024)
    tracemalloc.start()
    try:
        code, _, err = _validate("validate", capsys=capsys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 1 and "manifests/big.yaml:1: file is larger than 1024 KiB" in err, err
    assert peak < 100 * 1024 * 1024, peak


# -- item 9: YAML values of unexpected types, and the limits --------------------------------------
BAD_VALUES = {
    "invalid date": "2024-02-30",
    "float tag": "!!float abc",
    "int tag": "!!int abc",
    "timestamp tag": "!!timestamp 'xyz'",
    "binary garbage": "!!binary 'a'",
    "python name": "!!python/name:os.system ''",
    "python object": "!!python/object/apply:os.system ['echo pwned']",
    "custom tag": "!Ref other",
    "5000-digit integer": "1" * 5000,
    "huge hex integer": "0x" + "f" * 5000,
    "empty int": "!!int ''",
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_unexpected_yaml_types_in_a_manifest_are_one_line_errors(workdir: Path, capsys, case: str):
    (workdir / "manifests").mkdir()
    text = GOOD.format(name="alpha").replace("  name: alpha\n", f"  name: alpha\n  labels:\n    release: {BAD_VALUES[case]}\n")
    (workdir / "manifests" / "a.yaml").write_text(text)
    code, out, err = _validate("validate", capsys=capsys)
    _no_crash(out + err)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("manifests/a.yaml:6: metadata.labels.release"), err
    assert len(lines[0]) < 300, lines[0]


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_unexpected_yaml_types_in_the_config_are_one_line_errors(workdir: Path, capsys, case: str):
    (workdir / "reconciler.yaml").write_text(f"project: demo-project\nregion: {BAD_VALUES[case]}\n")
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(GOOD.format(name="alpha"))
    capsys.readouterr()
    code = main(["validate"])
    err = capsys.readouterr().err
    _no_crash(err)
    assert code == 1
    assert re.fullmatch(r"Error: \S*reconciler\.yaml:2: region: [^\n]+\n", err), err


def test_config_key_that_is_a_bad_date_is_a_key_not_a_crash(workdir: Path, capsys):
    (workdir / "reconciler.yaml").write_text("prices: {2024-02-30: 1.0}\nmaxCancel: .inf\n")
    capsys.readouterr()
    code = main(["validate"])
    err = capsys.readouterr().err
    _no_crash(err)
    assert code == 1 and "reconciler.yaml:2: maxCancel" in err, err


def test_infinite_and_negative_settings_are_refused(workdir: Path, capsys):
    for text, where in (("pollInterval: .inf\n", "pollInterval"), ("lockTimeout: .nan\n", "lockTimeout"),
                        ("prices: {gemini-3.1-flash-lite: -1}\n", "prices.gemini-3.1-flash-lite")):
        (workdir / "reconciler.yaml").write_text(text)
        capsys.readouterr()
        code = main(["validate"])
        err = capsys.readouterr().err
        assert code == 1 and f"reconciler.yaml:1: {where}" in err, err


@pytest.mark.parametrize(("text", "where"), [
    ("pollInterval: 1.0e+10\n", "pollInterval"), ("lockTimeout: 1.0e+10\n", "lockTimeout"),
    ("requestTimeout: 0\n", "requestTimeout"), ("requestTimeout: 601\n", "requestTimeout"),
    ("requestTimeout: .inf\n", "requestTimeout"), ("maxCancel: 10000000000\n", "maxCancel"),
    ("rateLimit: {requestsPerMinute: 100000000000}\n", "rateLimit.requestsPerMinute"),
    ("retry: {deadline: 1.0e+10}\n", "retry.deadline"),
])
def test_intervals_and_counts_have_upper_bounds(workdir: Path, capsys, text: str, where: str):
    """`pollInterval: 1.0e+10` was taken, and crashed with OverflowError when the wait began."""
    (workdir / "reconciler.yaml").write_text(text)
    code, _, err = _validate("validate", capsys=capsys)
    _no_crash(err)
    assert code == 1 and f"reconciler.yaml:1: {where}: " in err, err


def test_request_timeout_setting(tmp_path: Path):
    assert load_settings(config_file=None, cwd=tmp_path, env={}, flags={}).request_timeout == 60.0
    (tmp_path / "reconciler.yaml").write_text("requestTimeout: 12.5\n")
    assert load_settings(config_file=None, cwd=tmp_path, env={}, flags={}).request_timeout == 12.5
    for flags in ({"request_timeout": 0}, {"request_timeout": 601.0}, {"poll_interval": 1e10},
                  {"lock_timeout": float("nan")}, {"max_cancel": -1}, {"concurrency": 0}):
        with pytest.raises(ConfigError, match=f"settings: invalid {next(iter(flags))} "):
            load_settings(config_file=None, cwd=tmp_path, env={}, flags=flags)


@pytest.mark.parametrize(("variable", "value"), [
    ("RECONCILER_API_ENDPOINT", "http://127.0.0.1:18080\n"),
    ("RECONCILER_API_ENDPOINT", "http://127.0.0.1:18080 "),
    ("RECONCILER_API_ENDPOINT", "http://127.0.0.1:99999"),
    ("RECONCILER_API_ENDPOINT", "http://127.0.0.1:0"),
    ("RECONCILER_API_ENDPOINT", "http://127.0.0.1:port"),
    ("RECONCILER_API_ENDPOINT", "embedded\n"),
    ("RECONCILER_MANIFESTS", "manifests\n"),
    ("RECONCILER_MANIFESTS", "manifests\x1b[31m"),
    ("RECONCILER_STATE", "state.json\n"),
    ("RECONCILER_STATE", " state.json"),
])
def test_every_setting_is_valid_or_a_one_line_error_showing_it(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                                              variable: str, value: str):
    """No two-line error split by a pasted newline, no 120 s of retries against port 99999."""
    monkeypatch.setenv(variable, value)
    cli.manifest("alpha")
    started = time.monotonic()
    result = cli("plan")
    assert time.monotonic() - started < 5
    _no_crash(result.err)
    assert result.code == 1 and result.out == "", result.out
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: settings: "), result.err
    assert repr(value) in lines[0] and lines[0].isprintable(), lines[0]


def _nodes(count: int) -> str:
    return "x: [" + ", ".join("1" for _ in range(count)) + "]\n"


def test_node_budget_is_per_file_not_per_document(workdir: Path, capsys):
    """Two documents of 30,000 nodes each: each under the 50,000 limit, the file over it."""
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(_nodes(30_000) + "---\n" + _nodes(30_000))
    code, _, err = _validate("validate", capsys=capsys)
    _no_crash(err)
    assert code == 1
    assert re.search(r"manifests/a\.yaml:\d+: file too large after alias expansion \(more than 50000", err), err


def test_node_budget_counts_aliases_across_documents(workdir: Path, capsys):
    """Each document expands to about 30,000 nodes through aliases; together they pass 50,000."""
    doc = "a: &a [" + ", ".join(["x"] * 100) + "]\nb: [" + ", ".join(["*a"] * 300) + "]\n"
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(doc + "---\n" + doc)
    code, _, err = _validate("validate", capsys=capsys)
    _no_crash(err)
    assert code == 1 and re.search(r"manifests/a\.yaml:\d+: file too large after alias expansion", err), err


# -- item 10: full matches, no trailing newline ---------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--stack", "nl\n"), ("--region", "us-central1\n"),
                                        ("--project", "demo-project\n"), ("--stack", "prod\n\n")])
def test_identifiers_with_a_trailing_newline_are_refused(workdir: Path, capsys, flag: str, value: str):
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(GOOD.format(name="alpha"))
    capsys.readouterr()
    code = main(["--project", "demo-project", "--region", "us-central1", flag, value, "validate"])
    err = capsys.readouterr().err
    _no_crash(err)
    assert code == 1 and f"invalid {flag[2:]} {value!r}" in err, err
    assert not (workdir / "reconciler.state.json").exists()


@pytest.mark.parametrize("variable", ["RECONCILER_STACK", "RECONCILER_REGION", "RECONCILER_PROJECT"])
def test_identifiers_from_the_environment_with_a_newline_are_refused(workdir: Path, capsys, monkeypatch,
                                                                      variable: str):
    write_config(workdir)
    monkeypatch.setenv(variable, {"RECONCILER_STACK": "prod", "RECONCILER_REGION": "us-central1",
                                  "RECONCILER_PROJECT": "demo-project"}[variable] + "\n")
    capsys.readouterr()
    code = main(["validate"])
    err = capsys.readouterr().err
    assert code == 1 and "\\n'" in err, err


FIELDS_WITH_NEWLINE = {
    "folded dataset uri": ("    trainingDatasetUri: gs://bucket/train.jsonl\n",
                           "    trainingDatasetUri: >\n      gs://bucket/train.jsonl\n",
                           "spec.supervisedTuningSpec.trainingDatasetUri"),
    "validation uri": ("    trainingDatasetUri: gs://bucket/train.jsonl\n",
                       "    trainingDatasetUri: gs://bucket/train.jsonl\n"
                       "    validationDatasetUri: \"gs://bucket/v.jsonl\\n\"\n",
                       "spec.supervisedTuningSpec.validationDatasetUri"),
    "name": ("  name: alpha\n", "  name: \"alpha\\n\"\n", "metadata.name"),
    "region": ("spec:\n", "spec:\n  region: \"us-central1\\n\"\n", "spec.region"),
    "project": ("spec:\n", "spec:\n  project: |\n    demo-project\n", "spec.project"),
    "base model": ("  baseModel: gemini-3.5-flash\n", "  baseModel: \"gemini-3.5-flash\\n\"\n",
                   "spec.baseModel"),
    "service account": ("spec:\n", "spec:\n  serviceAccount: \"a@b.iam.gserviceaccount.com\\n\"\n",
                        "spec.serviceAccount"),
    "kms key": ("spec:\n", "spec:\n  encryptionSpec: {kmsKeyName: \"projects/p/locations/l/keyRings/r/cryptoKeys/k\\n\"}\n",
                "spec.encryptionSpec.kmsKeyName"),
}


@pytest.mark.parametrize("case", sorted(FIELDS_WITH_NEWLINE))
def test_manifest_values_with_a_trailing_newline_are_refused(workdir: Path, capsys, case: str):
    old, new, field = FIELDS_WITH_NEWLINE[case]
    text = GOOD.format(name="alpha")
    assert old in text
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(text.replace(old, new, 1))
    code, _, err = _validate("validate", capsys=capsys)
    _no_crash(err)
    assert code == 1 and re.search(rf"manifests/a\.yaml:\d+: {re.escape(field)}: ", err), err


def test_config_values_with_a_trailing_newline_are_refused(workdir: Path, capsys):
    for key, value in (("stack", "prod"), ("region", "us-central1"), ("project", "demo-project")):
        (workdir / "reconciler.yaml").write_text(f'{key}: "{value}\\n"\n')
        capsys.readouterr()
        code = main(["validate"])
        err = capsys.readouterr().err
        assert code == 1 and f"reconciler.yaml:1: {key}: invalid value" in err, err


# -- property: no YAML scalar text makes validate crash --------------------------------------------
_TAGS = ["", "!!str ", "!!int ", "!!float ", "!!bool ", "!!null ", "!!timestamp ", "!!binary ", "!!map ",
         "!!seq ", "!!set ", "!!omap ", "!!merge ", "!!value ", "!!python/name:os.system ", "!Ref ", "! ",
         "!<tag:yaml.org,2002:int> ", "!!python/object/apply:os.system "]
_TEXTS = st.one_of(
    st.sampled_from(["2024-02-30", "2024-13-01", "2001-12-14t21:59:43.10-05:00", "2024-02-30 25:61:61",
                     "1_000", "0x_", "0b2", "0o9", "1:20:30", "-.inf", ".NaN", "1e999", "=", "<<", "~",
                     "1" * 4400, "0x" + "f" * 4000, "'quoted'", '"dq"', "[1, 2]", "{a: 1}", "yes", "0777"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20),
    st.from_regex(r"[0-9:.+\-_eExXbBoO tT]{1,20}", fullmatch=True),
)


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, str]:
    tag = draw(st.sampled_from(_TAGS))
    value = tag + draw(_TEXTS)
    where = draw(st.sampled_from(["label", "key", "epochs", "config"]))
    return where, value


@settings(derandomize=True, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_documents())
def test_no_yaml_scalar_makes_validate_crash(tmp_path: Path, capsys, monkeypatch, doc: tuple[str, str]):
    where, value = doc
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir(exist_ok=True)
    text = GOOD.format(name="alpha")
    config = "project: demo-project\nregion: us-central1\n"
    if where == "label":
        text = text.replace("  name: alpha\n", f"  name: alpha\n  labels:\n    release: {value}\n")
    elif where == "key":
        text = text.replace("  name: alpha\n", f"  name: alpha\n  labels:\n    {value}: x\n")
    elif where == "epochs":
        text += f"    hyperParameters:\n      epochCount: {value}\n"
    else:
        config += f"maxCancel: {value}\n"
    (tmp_path / "manifests" / "a.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "reconciler.yaml").write_text(config, encoding="utf-8")
    capsys.readouterr()
    code = main(["validate"])
    captured = capsys.readouterr()
    _no_crash(captured.out + captured.err)
    assert code in (0, 1), captured.err
    if code == 1:
        first = captured.err.splitlines()[0]
        assert re.match(r"(Error: )?(manifests/a|\S*reconciler)\.yaml:\d+: ", first), captured.err
