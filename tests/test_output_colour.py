"""Colour only on a terminal; NO_COLOR and --no-color honoured there (no escape at all); JSON
and piped output plain."""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clihelp import Cli

# -- 3. colour only on a terminal ------------------------------------------------------------------
_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colour_codes(text: str) -> list[str]:
    """The SGR parameters that set a foreground or background colour."""
    found = []
    for match in _SGR.finditer(text):
        params = [int(p) for p in match[1].split(";") if p]
        for p in params:
            if 30 <= p <= 38 or 40 <= p <= 48 or 90 <= p <= 97 or 100 <= p <= 107:
                found.append(match[0])
    return found


def _reconciler_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def run_in_pty(workdir: Path, args: list[str], env: dict[str, str], timeout: float = 20) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return (exit code, all it wrote)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], cwd=workdir, env=env,
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"{args} did not finish in {timeout} s: {b''.join(chunks)!r}"
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def colour_workdir(cli: Cli) -> Path:
    """A work dir whose plan has a change (a create) and a warning (an unknown base model)."""
    cli.manifest("alpha")
    cli.manifest("novel", base="gemini-9.9-ultra-001")
    return cli.workdir


def test_plan_is_coloured_on_a_terminal(colour_workdir: Path):
    code, text = run_in_pty(colour_workdir, ["plan"], _reconciler_env())
    assert code == 0, text
    assert "2 to create" in text and "is not in the reconciler's catalog" in text
    assert colour_codes(text), repr(text)


@pytest.mark.parametrize("how", ["NO_COLOR=1", "--no-color"])
def test_no_colour_on_a_terminal_when_asked(colour_workdir: Path, how: str):
    env = _reconciler_env(NO_COLOR="1") if how == "NO_COLOR=1" else _reconciler_env()
    args = ["--no-color", "plan"] if how == "--no-color" else ["plan"]
    code, text = run_in_pty(colour_workdir, args, env)
    assert code == 0, text
    assert "2 to create" in text and "is not in the reconciler's catalog" in text
    assert "\x1b" not in text, repr(text)  # no colour, and no bold either: no escape at all


def test_json_plan_on_a_terminal_is_plain_json(colour_workdir: Path):
    code, text = run_in_pty(colour_workdir, ["plan", "--format", "json"], _reconciler_env())
    assert code == 0, text
    body = text[text.index("{"):]  # the (coloured) warning on stderr comes first
    assert "\x1b" not in body, repr(body)
    assert json.loads(body.replace("\r\n", "\n"))["summary"]["create"] == 2


def test_no_escapes_at_all_when_piped(colour_workdir: Path):
    for args in (["plan"], ["status"]):
        r = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], cwd=colour_workdir,
                           env=_reconciler_env(), capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x1b" not in r.stderr, repr(r.stdout + r.stderr)
        assert r.stdout.strip()
    assert "is not in the reconciler's catalog" in r.stderr


