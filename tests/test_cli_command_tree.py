"""The CLI builds only the command it runs (start-up, issue 15): whatever precedes the command's
name, the command parsed is the one the whole app would parse, with the same help and errors."""

from __future__ import annotations

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import app, main
from reconciler.cli.app import GLOBAL_FLAGS, GLOBAL_OPTIONS

WHOLE = typer.main.get_command(app)
COMMANDS = sorted(WHOLE.commands)  # type: ignore[attr-defined]
VALUED = [opt for opt in GLOBAL_OPTIONS if opt not in GLOBAL_FLAGS]


def _whole_app(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str]:
    """What the app built whole does with `args` (as the CLI did before it built only the command
    run): an exit code, or a usage error's message; and what it printed on stdout."""
    capsys.readouterr()
    try:
        WHOLE.main(args=args, prog_name="reconciler", standalone_mode=False)
        outcome: int | str = 0
    except Exception as exc:  # click's Exit (help) and usage errors
        outcome = exc.format_message() if hasattr(exc, "format_message") else exc.exit_code  # type: ignore[attr-defined]
    return outcome, capsys.readouterr().out


def test_global_options_and_flags_are_those_of_the_app():
    """The lists the command is found by are the app's global options, flags told from values."""
    params = {opt: p for p in WHOLE.params for opt in p.opts}
    assert set(GLOBAL_OPTIONS) <= set(params)
    assert {opt for opt in GLOBAL_OPTIONS if params[opt].is_flag} == set(GLOBAL_FLAGS)
    # (an option not listed, --show-completion say, only means the whole app is built)


prefix = st.lists(st.one_of(
    st.sampled_from(GLOBAL_FLAGS).map(lambda f: [f]),
    st.tuples(st.sampled_from(VALUED), st.sampled_from([*COMMANDS, "x", "state", "-", "a=b"])).map(list),
    st.tuples(st.sampled_from(VALUED), st.sampled_from([*COMMANDS, "x"])).map(lambda t: [f"{t[0]}={t[1]}"]),
), max_size=3).map(lambda parts: [a for part in parts for a in part])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=prefix, command=st.sampled_from([*COMMANDS, "plna", "state"]),
       after=st.sampled_from([["--help"], ["-h"], ["--no-such-option"]]))
def test_a_command_reads_as_the_whole_app_reads_it(capsys, before, command, after):
    args = [*before, command, *after]
    capsys.readouterr()
    code = main(args)
    out = capsys.readouterr()
    outcome, whole_out = _whole_app(args, capsys)
    assert out.out == whole_out, args
    if isinstance(outcome, int):
        assert code == outcome, args
    else:  # a usage error: the app's own message (main adds its hints and exits 1)
        assert code == 1 and outcome in out.err, (args, out.err)
