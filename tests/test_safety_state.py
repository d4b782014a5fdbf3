"""Safety of the state files under misuse (issue 11, items 12 and 13).

Malformed state and journal input, a directory or a FIFO where a state file should be, a full disk
while the state, journal, lock or a saved plan is written: each ends in a one-line `Error:` naming
the file (exit 1), never a traceback or "this is a bug", and the previous state stays intact. The
journal and lock are created 0600 like the state, whatever the umask.

A full disk is simulated without privileges with RLIMIT_FSIZE in a subprocess (SIGXFSZ ignored):
writes past the limit then fail with EFBIG, through the same code path as ENOSPC or EDQUOT.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clihelp import Cli, Result, write_config

LINEAGE = "0d6c9f4e-0000-4000-8000-000000000001"
PARENT = "projects/demo-project/locations/us-central1"
STATE = "reconciler.state.json"


def managed(emulator) -> list[dict]:
    return [j for j in emulator.jobs() if j.get("labels", {}).get("managed-by") == "vertex-tuning-reconciler"]


@pytest.fixture
def offline(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The CLI in a fresh working directory, no API: for commands that only read the state."""
    write_config(workdir)
    return Cli(workdir, capsys)


def state_doc(**fields: object) -> dict:
    return {"version": 1, "serial": 3, "lineage": LINEAGE, "stack": "test", "models": {}, **fields}


def journal_line(op: dict) -> str:
    return json.dumps({"lineage": LINEAGE, "serial": 3, **op})


def assert_one_line_error(r: Result, *needles: str) -> None:
    assert r.code == 1, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.err
    assert "bug" not in r.err and "Traceback" not in r.err, r.err
    for needle in needles:
        assert needle in r.err, r.err


def run_limited(workdir: Path, *args: str, fsize: int | None = None, umask: int | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`reconciler ARGS` in a subprocess, with files limited to `fsize` bytes (SIGXFSZ ignored, so
    writes past it fail with EFBIG, as on a full disk) and/or another umask."""
    code = ["import resource, signal, sys, os"]
    if fsize is not None:
        code += ["signal.signal(signal.SIGXFSZ, signal.SIG_IGN)",
                 f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize}))"]
    if umask is not None:
        code.append(f"os.umask({umask})")
    code += ["from reconciler.cli import main", "sys.exit(main(sys.argv[1:]))"]
    return subprocess.run([sys.executable, "-c", "\n".join(code), *args], cwd=workdir, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def result(p: subprocess.CompletedProcess[str]) -> Result:
    return Result(p.returncode, p.stdout, p.stderr)


def assert_failed_naming(r: Result, *needles: str) -> None:
    """An apply fails in its own words (progress lines, then the failure): exit 1, no traceback,
    and one line saying what failed, naming the file."""
    assert r.code == 1, (r.out, r.err)
    assert "bug" not in r.err and "Traceback" not in r.err, r.err
    assert any(all(n in line for n in needles) for line in r.err.splitlines()), r.err


# -- item 12: a journal line of the wrong shape ---------------------------------------------------
WRONG_SHAPES = {
    "set-without-name": journal_line({"op": "set", "entry": {"parent": PARENT}}),
    "set-without-entry": journal_line({"op": "set", "name": "alpha"}),
    "set-entry-not-object": journal_line({"op": "set", "name": "alpha", "entry": 5}),
    "set-name-not-string": journal_line({"op": "set", "name": 5, "entry": {"parent": PARENT}}),
    "set-invalid-entry": journal_line({"op": "set", "name": "alpha", "entry": {"parent": 7}}),
    "drop-without-name": journal_line({"op": "drop"}),
    "intent-empty": journal_line({"op": "intent", "entry": {}}),
    "settle-without-request-id": journal_line({"op": "settle"}),
    "no-op-field": journal_line({"name": "alpha"}),
    "op-not-a-string": journal_line({"op": ["set"]}),
    "array": "[]",
    "number": "5",
    "string": '"set"',
    "null": "null",
    "no-lineage-or-serial": json.dumps({"op": "drop", "name": "alpha"}),
    "serial-is-bool": json.dumps({"lineage": LINEAGE, "serial": True, "op": "drop", "name": "a"}),
    "not-json-mid-file": "garbage that no crash writes",
    "nested-too-deeply": "[" * 100_000,
}


@pytest.mark.parametrize("line", list(WRONG_SHAPES.values()), ids=list(WRONG_SHAPES))
def test_a_journal_line_of_the_wrong_shape_is_an_error_naming_file_and_line(offline: Cli, line: str):
    (offline.workdir / STATE).write_text(json.dumps(state_doc()))
    good = journal_line({"op": "set", "name": "beta", "entry": {"parent": PARENT}})
    # Second of three lines: not the last, so never mistaken for a write a crash cut short.
    (offline.workdir / f"{STATE}.journal").write_text(f"{good}\n{line}\n{good}\n")
    r = offline("output")
    assert_one_line_error(r, f"{STATE}.journal:2:", "reconciler refresh")


@pytest.mark.parametrize("where", ["last", "middle"])
def test_a_line_a_crash_cut_short_is_still_skipped(offline: Cli, where: str):
    (offline.workdir / STATE).write_text(json.dumps(state_doc()))
    good = journal_line({"op": "set", "name": "beta", "entry": {"parent": PARENT}})
    torn = good[: len(good) // 2]
    # A crash mid-append leaves a torn last line; the next run starts a fresh line after it.
    text = f"{good}\n{torn}" if where == "last" else f"{good}\n{torn}\n{good}\n"
    (offline.workdir / f"{STATE}.journal").write_text(text)
    assert list(offline.ok("output").json()) == ["beta"]


def test_a_journal_line_of_an_unknown_operation_asks_for_an_upgrade(offline: Cli):
    (offline.workdir / STATE).write_text(json.dumps(state_doc()))
    (offline.workdir / f"{STATE}.journal").write_text(journal_line({"op": "rename", "from": "a", "to": "b"}) + "\n")
    r = offline("output")
    assert_one_line_error(r, f"{STATE}.journal:1:", "'rename'", "upgrade the reconciler")
    # A line of an older serial is obsolete whatever it says: never replayed, never refused.
    stale = json.dumps({"lineage": LINEAGE, "serial": 2, "op": "rename"})
    (offline.workdir / f"{STATE}.journal").write_text(stale + "\n")
    assert offline.ok("output").json() == {}


@pytest.mark.parametrize("op,needle", [
    ({"op": "set", "name": 5, "entry": {"parent": PARENT}}, "reconciler refresh"),
    ({"op": "rename", "name": "a"}, "upgrade the reconciler"),
], ids=["wrong-shape", "unknown-op"])
def test_a_gcs_journal_object_line_of_the_wrong_shape_is_an_error_naming_the_object(strict_gcs: str, op: dict,
                                                                                      needle: str):
    from reconciler.errors import StateError
    from reconciler.http.retry import RetryPolicy
    from reconciler.state.gcs import GcsStateStore
    from reconciler.storage import StorageClient
    from tests.gcsfake import new_bucket

    uri = f"gs://{new_bucket(strict_gcs)}/reconciler.state.json"

    def store() -> GcsStateStore:
        return GcsStateStore(uri, StorageClient(endpoint=strict_gcs, retry=RetryPolicy(initial=0.01, maximum=0.05,
                                                                                      deadline=5)))

    writer = store()
    writer.write(writer.read(stack="s"))
    writer.append([{"op": "set", "name": "alpha", "entry": {"parent": PARENT}}, op])
    with pytest.raises(StateError) as caught:
        store().read(stack="s")
    message = str(caught.value)
    assert message.startswith(f"{uri}.journal/") and ".jsonl:2: " in message and needle in message, message
    assert "\n" not in message


# -- item 12: a state file that is not a state ----------------------------------------------------
BAD_STATES = {
    "nested-too-deeply": (b"[" * 100_000, "nested too deeply"),
    "nested-object": (b'{"version": 1, "models": ' + b'{"a": ' * 50_000, "nested too deeply"),
    "huge-integer": (b"1" * 5000, "not valid JSON"),
    "not-utf8": (b'{"version": 1, "stack": "\xff"}', "not UTF-8"),
    "array": (b"[]", "expected a JSON object"),
    "version-bool": (json.dumps(state_doc(version=True)).encode(), '"version" is True'),
    "version-float": (json.dumps(state_doc(version=1.0)).encode(), '"version" is 1.0'),
    "version-string": (json.dumps(state_doc(version="1")).encode(), "\"version\" is '1'"),
    "version-zero": (json.dumps(state_doc(version=0)).encode(), '"version" is 0'),
    "no-version": (b'{"serial": 1}', '"version" is None'),
    "models-not-object": (json.dumps(state_doc(models=5)).encode(), "invalid state file at models"),
    "key-with-newline": (json.dumps(state_doc(models={"a\nb": 5})).encode(), "models.a\\nb"),
}


@pytest.mark.parametrize("data,needle", list(BAD_STATES.values()), ids=list(BAD_STATES))
def test_a_state_file_that_is_not_a_state_is_a_one_line_error(offline: Cli, data: bytes, needle: str):
    (offline.workdir / STATE).write_bytes(data)
    assert_one_line_error(offline("output"), f"{STATE}:", needle)


def test_a_state_of_a_future_format_version_asks_for_an_upgrade(offline: Cli):
    (offline.workdir / STATE).write_text(json.dumps(state_doc(version=2, newField={"x": 1})))
    assert_one_line_error(offline("output"), f"{STATE}:", "version 2", "upgrade the reconciler")


# -- item 12: something other than a file at the state's paths -----------------------------------
@pytest.mark.parametrize("suffix", ["", ".journal"])
@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_at_the_state_or_journal_path_is_an_error(offline: Cli, suffix: str, kind: str):
    if suffix:
        (offline.workdir / STATE).write_text(json.dumps(state_doc()))
    target = offline.workdir / f"{STATE}{suffix}"
    if kind == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)  # must not block the read waiting for a writer
    name = "journal" if suffix else "state file"
    assert_one_line_error(offline("output"), f"{STATE}{suffix}: the {name} is ")


@pytest.mark.parametrize("suffix", [".lock", ".backup", ""])
def test_a_directory_at_the_lock_backup_or_state_path_fails_apply_cleanly(cli: Cli, emulator, suffix: str):
    cli.manifest("alpha")
    if suffix == ".backup":
        cli.ok("apply", "--auto-approve")  # a backup is written only when there is a state
        cli.manifest("beta")
    before = (cli.workdir / STATE).read_bytes() if suffix == ".backup" else None
    (cli.workdir / f"{STATE}{suffix}").unlink(missing_ok=True)
    (cli.workdir / f"{STATE}{suffix}").mkdir()
    r = cli("apply", "--auto-approve")
    if suffix == ".backup":  # after the create: its progress line, then the error
        assert_failed_naming(r, f"Error: {STATE}.backup: cannot write", "directory is in the way")
    else:
        assert_one_line_error(r, f"Error: {STATE}{suffix}: ", "is a directory" if not suffix else "Is a directory")
    if before is not None:
        assert (cli.workdir / STATE).read_bytes() == before
    (cli.workdir / f"{STATE}{suffix}").rmdir()
    cli.ok("apply", "--auto-approve")
    assert len(managed(emulator)) == (2 if suffix == ".backup" else 1)


def test_plan_out_onto_a_directory_is_an_error_naming_it(cli: Cli):
    cli.manifest("alpha")
    (cli.workdir / "saved").mkdir()
    assert_one_line_error(cli("plan", "--out", "saved"), "saved: cannot write")


def test_a_lock_record_with_line_breaks_is_reported_on_one_line(cli: Cli):
    cli.manifest("alpha")
    (cli.workdir / f"{STATE}.lock").write_text(json.dumps({"id": "L1\nX", "who": "me\nError: fake", "pid": [1]}))
    r = cli.ok("apply", "--auto-approve")
    warning = [line for line in r.err.splitlines() if "breaking stale lock" in line]
    assert warning and "L1\\nX" in warning[0] and "me\\nError: fake" in warning[0], r.err
    assert "Error: fake" not in r.err.replace("me\\nError: fake", "")


# -- item 12: a full disk -------------------------------------------------------------------------
def test_a_full_disk_at_the_state_write_leaves_the_previous_state_intact(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    before = (cli.workdir / STATE).read_bytes()
    cli.manifest("beta")
    # Room for the lock record, the backup (the previous state) and the journal, not for the
    # bigger state of two models.
    p = run_limited(cli.workdir, "apply", "--auto-approve", fsize=len(before) + 64)
    assert_failed_naming(result(p), f"Error: {STATE}: cannot write", "File too large", "previous content is unchanged")
    assert (cli.workdir / STATE).read_bytes() == before
    assert not [f for f in os.listdir(cli.workdir) if f.endswith(".tmp")]  # no temporary left behind
    # The journal holds what was done; the next run folds it in and creates nothing twice.
    cli.ok("apply", "--auto-approve")
    assert len(managed(emulator)) == 2
    assert sorted(cli.state()["models"]) == ["alpha", "beta"]


def test_a_full_disk_at_the_journal_fails_before_the_create(cli: Cli, emulator):
    cli.manifest("alpha")
    cli.ok("apply", "--auto-approve")
    before = json.loads((cli.workdir / STATE).read_text())
    # A journal already past the limit (a no-op line of this serial): the first append fails.
    pad = json.dumps({"lineage": before["lineage"], "serial": before["serial"], "op": "drop", "name": "x" * 5000})
    (cli.workdir / f"{STATE}.journal").write_text(pad + "\n")
    cli.manifest("beta")
    p = run_limited(cli.workdir, "apply", "--auto-approve", fsize=4096)
    assert_failed_naming(result(p), f"{STATE}.journal: cannot write the journal", "File too large")
    assert len(managed(emulator)) == 1  # the intent could not be made durable: no create
    cli.ok("apply", "--auto-approve")
    assert len(managed(emulator)) == 2


def test_a_full_disk_at_the_lock_is_an_error_naming_it(cli: Cli, emulator):
    cli.manifest("alpha")
    p = run_limited(cli.workdir, "apply", "--auto-approve", fsize=0)
    assert_one_line_error(result(p), f"{STATE}.lock: cannot record the lock", "File too large")
    assert managed(emulator) == []
    assert not (cli.workdir / STATE).exists()
    cli.ok("apply", "--auto-approve")  # the failed run left no lock behind
    assert len(managed(emulator)) == 1


def test_a_full_disk_at_plan_out_is_an_error_naming_the_file(cli: Cli):
    cli.manifest("alpha")
    p = run_limited(cli.workdir, "plan", "--out", "saved.json", fsize=0)
    assert_one_line_error(result(p), "saved.json: cannot write", "File too large")
    assert not (cli.workdir / "saved.json").exists()


# -- item 13: the journal and lock are 0600 like the state ----------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_backup_and_lock_are_created_0600_whatever_the_umask(cli: Cli, emulator):
    cli.manifest("alpha")
    p = run_limited(cli.workdir, "apply", "--auto-approve", umask=0)
    assert p.returncode == 0, p.stderr
    cli.manifest("beta")
    p = run_limited(cli.workdir, "apply", "--auto-approve", umask=0)
    assert p.returncode == 0, p.stderr
    for suffix in ("", ".backup", ".lock"):
        assert mode(cli.workdir / f"{STATE}{suffix}") == 0o600, suffix


def test_the_journal_is_created_0600_whatever_the_umask(tmp_path: Path):
    # The journal lives only while a run is under way (or after one was killed): written here by
    # the store itself, in a process with umask 000.
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from reconciler.state.local import LocalStateStore\n"
        "os.umask(0)\n"
        "store = LocalStateStore(Path(sys.argv[1]))\n"
        "lock = store.lock('apply')\n"
        "store.write(store.read(stack='s'))\n"
        f"store.append([{{'op': 'set', 'name': 'alpha', 'entry': {{'parent': {PARENT!r}}}}}])\n"
        "store.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / STATE)], check=True, timeout=60)
    assert mode(tmp_path / f"{STATE}.journal") == 0o600
    assert mode(tmp_path / f"{STATE}.lock") == 0o600
    assert mode(tmp_path / STATE) == 0o600


def test_a_lock_file_left_readable_by_an_older_version_is_narrowed_to_0600(cli: Cli, emulator):
    cli.manifest("alpha")
    lock = cli.workdir / f"{STATE}.lock"
    lock.write_text("")
    lock.chmod(0o644)
    cli.ok("apply", "--auto-approve")
    assert mode(lock) == 0o600


# -- properties: any bytes as the state, any lines in the journal ---------------------------------
def json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def state_like() -> st.SearchStrategy[dict]:
    """Dicts close to a state: the right keys with values of any type."""
    entry = st.fixed_dictionaries({"parent": st.text(max_size=10) | json_values()},
                                  optional={"job": json_values(), "state": json_values(), "specHash": json_values(),
                                            "tunedModel": json_values(), "protect": json_values(),
                                            "parents": json_values(), "adopted": json_values()})
    return st.fixed_dictionaries(
        {"version": st.sampled_from([1, 1, 1, 2, 0, "1", True, 1.0, None])},
        optional={"serial": json_values() | st.integers(), "lineage": json_values(), "stack": st.just("test") | json_values(),
                  "models": st.dictionaries(st.text(max_size=8), entry | json_values(), max_size=3) | json_values(),
                  "journal": json_values()},
    )


STATE_BYTES = (st.binary(max_size=200)
               | json_values().map(lambda v: json.dumps(v).encode())
               | state_like().map(lambda v: json.dumps(v).encode())
               # what the parser itself may choke on: deep nesting, numbers of thousands of digits
               | st.integers(1_000, 100_000).map(lambda n: b"[" * n)
               | st.integers(4_400, 6_000).map(lambda n: b'{"version": 1, "serial": ' + b"9" * n + b"}")
               # names that would break an error message over several lines
               | st.dictionaries(st.text(alphabet="ab\n\r\t\x1b", min_size=1, max_size=4), json_values(),
                                 min_size=1, max_size=2).map(lambda m: json.dumps(state_doc(models=m)).encode()))


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=STATE_BYTES)
def test_any_bytes_as_the_state_read_or_fail_in_one_line(offline: Cli, data: bytes):
    (offline.workdir / STATE).write_bytes(data)
    r = offline("output")
    if r.code != 0:
        assert_one_line_error(r, f"{STATE}")


def op_like() -> st.SearchStrategy[object]:
    op = st.fixed_dictionaries(
        {"lineage": st.just(LINEAGE) | json_values(), "serial": st.just(3) | json_values(),
         "op": st.sampled_from(["set", "drop", "intent", "settle", "zzz"]) | json_values()},
        optional={"name": st.text(max_size=8) | json_values(), "requestId": st.text(max_size=8) | json_values(),
                  "entry": json_values() | st.fixed_dictionaries({"parent": st.text(max_size=8)}) | st.fixed_dictionaries(
                      {"name": st.text(max_size=8), "requestId": st.text(max_size=8), "parent": st.text(max_size=8),
                       "specHash": st.text(max_size=8), "started": st.text(max_size=8)})},
    )
    return op | json_values()


JOURNAL_LINES = st.lists(st.text(max_size=60) | op_like().map(json.dumps), max_size=5)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=JOURNAL_LINES)
def test_any_lines_in_the_journal_read_or_fail_in_one_line(offline: Cli, lines: list[str]):
    (offline.workdir / STATE).write_text(json.dumps(state_doc()))
    (offline.workdir / f"{STATE}.journal").write_text("\n".join(lines) + ("\n" if lines else ""),
                                                      encoding="utf-8", errors="surrogatepass")
    r = offline("output")
    if r.code != 0:
        assert_one_line_error(r, f"{STATE}.journal:")
