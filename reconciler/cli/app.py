"""The typer application: global options, the run's `Runtime`, shared options and printing,
and the entry point (exit codes, usage and error messages, signals). Commands live in the
sibling modules; this package's `__init__` registers them."""

from __future__ import annotations

import _imp
import contextlib
import copy
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler import __version__
from reconciler.errors import ConfigError, ManifestError, ReconcilerError

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.config import Settings
    from reconciler.plan import Plan
    from reconciler.session import Session

app = typer.Typer(
    name="reconciler",
    help="Declarative plan/apply for Vertex AI tuned models (supervised tuning jobs).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion [bash|zsh|fish|powershell]
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


@dataclass
class Runtime:
    """What the global options decide, shared by every command of one invocation."""

    flags: dict[str, Any]
    config_file: Path | None
    debug: bool
    no_color: bool
    allow_insecure_http: bool
    _settings: Settings | None = None
    _console: Console | None = None
    _err_console: Console | None = None
    _session: Session | None = None
    exit_stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from reconciler.config import load_settings

            self._settings = load_settings(
                config_file=self.config_file, cwd=Path.cwd(), env=os.environ, flags=self.flags
            )
        return self._settings

    @property
    def session(self) -> Session:
        """The run's session: the settings, and the credentials the environment holds."""
        if self._session is None:
            from reconciler.session import Session

            self._session = Session(
                self.settings, token=os.environ.get("RECONCILER_ACCESS_TOKEN") or None,
                storage_emulator=os.environ.get("STORAGE_EMULATOR_HOST") or None,
                allow_insecure_http=self.allow_insecure_http, debug=self.debug, warn=self.warn, info=self.info,
                exit_stack=self.exit_stack)
        return self._session

    def _make_console(self, stderr: bool) -> Console:
        from rich.console import Console

        plain = self.no_color or bool(os.environ.get("NO_COLOR"))
        # NO_COLOR means no escape sequences at all (bold included), not only no colours.
        console = Console(stderr=stderr, no_color=plain, color_system=None if plain else "auto",
                          highlight=False, soft_wrap=True, emoji=False)
        if not console.is_terminal:  # a log or a pipe: tables as wide as their content, ids never folded
            console.width = 400
        return console

    @property
    def out(self) -> Console:
        if self._console is None:
            self._console = self._make_console(False)
        return self._console

    @property
    def err(self) -> Console:
        if self._err_console is None:
            self._err_console = self._make_console(True)
        return self._err_console

    events: bool = False  # --json: JSON Lines events on stdout

    def emit(self, event: dict[str, Any]) -> None:
        """One JSON Lines event on stdout (compact, one line, flushed: a CI reader follows it live)."""
        typer.echo(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        sys.stdout.flush()

    def warn(self, message: str) -> None:
        from rich.markup import escape

        self.err.print(f"[yellow]Warning:[/] {escape(message)}")

    def info(self, message: str) -> None:
        from rich.markup import escape

        self.err.print(escape(message))


def _rt(ctx: typer.Context) -> Runtime:
    runtime = ctx.find_object(Runtime)
    assert runtime is not None
    return runtime


def _print_version(value: bool) -> None:
    """`--version`: answered while the options are read, before a command is required."""
    if value:
        typer.echo(f"vertex-tuning-reconciler {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    api_endpoint: Annotated[str | None, typer.Option("--api-endpoint", help="API root URL for every region (env RECONCILER_API_ENDPOINT); 'embedded' or 'embedded:FILE' runs a local emulator in-process.", show_default=False, metavar="URL")] = None,
    state: Annotated[str | None, typer.Option("--state", help="State file path (default reconciler.state.json).", show_default=False, metavar="PATH")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Default project for manifests without spec.project.", show_default=False, metavar="PROJECT")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Default region for manifests without spec.region.", show_default=False, metavar="REGION")] = None,
    stack: Annotated[str | None, typer.Option("--stack", help="Stack name: which managed jobs this run owns.", show_default=False, metavar="STACK")] = None,
    environment: Annotated[str | None, typer.Option("--env", help="An environment of reconciler.yaml's environments: (its project, region, stack, state and manifest overrides; env RECONCILER_ENV).", show_default=False, metavar="NAME")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Settings file (default ./reconciler.yaml).", show_default=False, metavar="FILE")] = None,
    allow_insecure_http: Annotated[bool, typer.Option("--allow-insecure-http", help="Allow a plain http:// endpoint on a non-loopback host.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour (NO_COLOR is honoured too).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks and a log of API calls on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version, expose_value=False)] = False,
) -> None:
    """Global options come before the command: `reconciler --stack prod plan manifests/`."""
    flags = {"api_endpoint": api_endpoint, "state": state, "project": project, "region": region, "stack": stack,
             "environment": environment}
    runtime = Runtime(flags=flags, config_file=config, debug=debug, no_color=no_color,
                      allow_insecure_http=allow_insecure_http)
    ctx.obj = runtime
    ctx.call_on_close(runtime.exit_stack.close)
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        for noisy in ("httpx", "httpcore", "urllib3", "google"):  # one line per request: ours (reconciler.api)
            logging.getLogger(noisy).setLevel(logging.WARNING)


# -- printing -------------------------------------------------------------------------------------
def _print_plan(rt: Runtime, plan: Plan, fmt: str, *, show_noop: bool = False) -> None:
    from reconciler import render

    if fmt == "json":
        typer.echo(render.plan_json(plan))
    elif fmt == "markdown":
        typer.echo(render.plan_markdown(plan))
    else:
        rt.out.print(render.plan_text(plan, show_noop=show_noop))


def _print_plan_error(rt: Runtime, exc: ReconcilerError, fmt: str) -> None:
    """A plan that failed, on stdout in the format asked for (text prints nothing: stderr says it)."""
    problems = exc.problems if isinstance(exc, ManifestError) else []
    message = exc.summary if isinstance(exc, ManifestError) else str(exc)
    if fmt == "json":
        typer.echo(json.dumps({"error": message, "problems": problems, "stack": rt.settings.stack}, indent=2))
    elif fmt == "markdown":
        from reconciler.render import error_markdown

        typer.echo(error_markdown(rt.settings.stack, message, problems))


def _outcome_reporter(rt: Runtime) -> Any:
    from rich.markup import escape

    def report(outcome: Any) -> None:
        c = outcome.change
        if rt.events:
            rt.emit({"event": "outcome", "action": c.action.value, "name": c.name, "ok": outcome.ok,
                     "message": outcome.message, "job": outcome.job})
        colour, mark = ("green", "✓") if outcome.ok else ("red", "✗")
        rt.err.print(f"[{colour}]{mark}[/] {c.action.value} {escape(c.name)}: {escape(outcome.message)}")

    return report


def _probe_reporter(rt: Runtime) -> Any:
    from rich.markup import escape

    def report(result: Any) -> None:
        if result.passed:
            rt.err.print(f"[green]✓[/] smoke test {escape(result.name)}: {escape(str(result.job))} passed; "
                         "its endpoint now serves")
        else:
            rt.err.print(f"[red]✗[/] smoke test {escape(result.name)}: {escape(str(result.job))} failed "
                         f"({escape(str(result.error))}); the previous endpoint keeps serving")

    return report


def _number(low: float, *, inclusive: bool = True, high: float | None = None) -> Any:
    """A typer callback that refuses NaN, infinities and numbers out of range as usage errors
    (click's ranges let NaN through: every comparison with NaN is false)."""
    def check(value: float | None) -> float | None:
        if value is None:
            return None
        bad = not math.isfinite(value) or value < low or (not inclusive and value == low) or (
            high is not None and value > high)
        if bad:
            bound = f"{'≥' if inclusive else '>'} {low:g}" + (f" and ≤ {high:g}" if high is not None else "")
            raise typer.BadParameter(f"{value!r} is not a finite number {bound}")
        return value

    return check


DAY = 86_400.0
AT_LEAST_0 = _number(0)
FRACTION = _number(0, high=1)
INTERVAL = _number(0, inclusive=False, high=DAY)  # seconds between polls: at most a day
WAIT_LIMIT = _number(0, inclusive=False, high=30 * DAY)
LOCK_WAIT = _number(0, high=DAY)
LockTimeoutOpt = Annotated[float | None, typer.Option("--lock-timeout", help="Seconds to wait for the state lock (default 0, or lockTimeout).", show_default=False, callback=LOCK_WAIT, metavar="SECONDS")]
DestroyOpt = Annotated[bool, typer.Option("--destroy", help="Remove every model the state records: cancel running jobs (not protected ones), forget the entries; manifests are not read.")]
PruneOpt = Annotated[bool, typer.Option("--prune", help="Remove models whose manifest is gone even though only some manifests were given (paths other than the manifest root).")]
PruneUnrecordedOpt = Annotated[bool, typer.Option("--prune-unrecorded", help="Also cancel running jobs of the stack that this state has no record of (another checkout's, or a lost state).")]
FormatOpt = Annotated[str, typer.Option("--format", help="text, json or markdown.", metavar="FORMAT")]
PathsArg = Annotated[list[Path] | None, typer.Argument(help="Manifest files or folders (default: manifests/).", show_default=False, metavar="PATHS")]
TargetOpt = Annotated[list[str] | None, typer.Option("--target", help="Limit the run to these model names (repeatable).", show_default=False, metavar="NAME")]
ReplaceOpt = Annotated[list[str] | None, typer.Option("--replace", help="Force a new tuning job for this model (repeatable).", show_default=False, metavar="NAME")]
AllowEmptyOpt = Annotated[bool, typer.Option("--allow-empty", help="Allow planning with zero manifests (would cancel every managed job).")]


def _check_format(fmt: str) -> str:
    if fmt not in ("text", "json", "markdown"):
        raise ConfigError(f"--format must be text, json or markdown, not {fmt!r}")
    return fmt



# -- entry point ----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (never raise for expected errors)."""

    args = list(sys.argv[1:] if argv is None else argv)
    _lean_process()
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    with _terminate_as_interrupt():
        return _run(args, debug)


def _lean_process() -> None:
    """The process tuned for one run.

    A run builds its objects once and keeps them to the end (the listed jobs, the manifests, the
    plan): the collector's full passes over that heap find nothing to free. Young objects are
    still collected as usual; a full pass comes after 1,000 young passes instead of 10. Measured
    on a plan of 1,000 manifests and 10,000 listed jobs: 4 full passes cost ~300 ms of its ~2.5 s
    of CPU; with this, none ran and the young passes stayed ~75 ms (docs/performance.md)."""
    import gc

    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)
    # httpx imports its own command line (click, rich.progress, pygments: ~27 ms) unless that
    # module is missing; this process never runs httpx's command line.
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled or timed out) ends the run like Ctrl-C: every wait of every
    thread (retry back-off, quota pacing, page loops, polling) ends at once, nothing new starts,
    the state is written and the lock released."""
    import signal
    import threading

    from reconciler import interrupt as stop

    stop.reset()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        stop.request_stop()
        if _import_lock_held():
            # Raised inside importlib's own critical section (a module lock's weakref callback
            # between taking and releasing the global import lock), the exception is swallowed
            # and the lock stays held for ever: every other thread's next import blocks, the
            # listing never ends and the main thread waits on it. Here the stop request alone
            # ends every thread's wait, and the main thread sees it through them.
            return
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _import_lock_held() -> bool:
    """Whether some thread is inside the import system's global lock right now (CPython's
    `_imp.lock_held`; False where the interpreter has none). Called from a signal handler: imports
    nothing."""
    held = getattr(_imp, "lock_held", None)
    return bool(held()) if held is not None else False


def _click_exceptions() -> tuple[tuple[type[BaseException], ...], ...]:
    """(Exit, Abort, ClickException) classes: typer ≥ 0.16 raises its own and those of the copy of
    click it carries (`typer._click`), older typer those of click itself; all are caught."""
    found: dict[str, list[type[BaseException]]] = {"Exit": [typer.Exit], "Abort": [typer.Abort], "ClickException": []}
    for module_name in ("typer._click.exceptions", "click.exceptions"):
        module = sys.modules.get(module_name)  # whichever typer uses is loaded; importing the
        if module is None:                     # other would only cost start-up time
            continue
        for name, classes in found.items():
            cls = getattr(module, name, None)
            if isinstance(cls, type) and cls not in classes:
                classes.append(cls)
    return tuple(tuple(classes) for classes in found.values())


GLOBAL_FLAGS = ("--allow-insecure-http", "--no-color", "--debug")
GLOBAL_OPTIONS = ("--api-endpoint", "--state", "--project", "--region", "--stack", "--env", "--config", *GLOBAL_FLAGS)


def _command_named(args: Sequence[str]) -> str | None:
    """The command `args` run, read past the global options: None when anything else comes first
    (an option not listed here, help, --version)."""
    valued = [opt for opt in GLOBAL_OPTIONS if opt not in GLOBAL_FLAGS]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in valued:
            i += 2
        elif arg in GLOBAL_FLAGS or arg.partition("=")[0] in valued:
            i += 1
        else:
            return None if arg.startswith("-") else arg
    return None


def _command_tree(args: Sequence[str]) -> Any:
    """The click command of the app for `args`: the global options and only the command they run
    when it is a plain one (building all of them reads every command's signature: ~25 ms of each
    start), the whole app otherwise (no command, a group, a typo to suggest for, help, shell
    completion)."""
    name = _command_named(args)
    chosen = [c for c in app.registered_commands
              if name is not None and (c.name or typer.main.get_command_name(c.callback.__name__)) == name]
    if len(chosen) != 1 or any(key.startswith("_") and key.endswith("_COMPLETE") for key in os.environ):
        return typer.main.get_command(app)
    part = copy.copy(app)
    part.registered_commands, part.registered_groups = chosen, []
    return typer.main.get_command(part)


def _global_option_after_command(args: list[str], exc: BaseException) -> str | None:
    """The global option a usage error is about, when it was given after the command."""
    text = str(getattr(exc, "message", "")) + str(getattr(exc, "option_name", "") or "")
    return next((opt for opt in GLOBAL_OPTIONS if opt in text and opt in args), None)


def _usage_error(args: list[str], exc: Any) -> int:
    """A usage error (unknown option, bad value): the message and where to read more. Exit 1, not
    click's 2: with `plan --detailed-exitcode`, 2 means "changes", and a mistyped flag in CI must
    not read as a plan with changes."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # no command given: the help, as click shows it
        typer.echo(exc.format_message(), err=True)
        return EXIT_ERROR
    typer.echo(f"Error: {exc.format_message()}", err=True)
    misplaced = _global_option_after_command(args, exc)
    if misplaced:
        typer.echo(f"{misplaced} is a global option: put it before the command, e.g. "
                   f"`reconciler {misplaced} … plan`.", err=True)
        return EXIT_ERROR
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        typer.echo(f"Try '{ctx.command_path} --help' for help.", err=True)
    return EXIT_ERROR


def _run(args: list[str], debug: bool) -> int:
    exit_types, abort_types, click_errors = _click_exceptions()
    try:
        result = _command_tree(args).main(args=args, prog_name="reconciler", standalone_mode=False)
    except exit_types as exc:
        return int(getattr(exc, "exit_code", 0))
    except abort_types:
        typer.echo("Aborted.", err=True)
        return EXIT_ERROR
    except click_errors as exc:
        return _usage_error(args, exc)
    except ReconcilerError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(exc, ManifestError):
            typer.echo("\n".join(exc.problems), err=True)
            typer.echo(f"Error: {exc.summary}", err=True)
        else:
            typer.echo(f"Error: {exc}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # a bug: say so briefly, with the way to the details
        if debug:
            raise
        typer.echo(
            f"Error: unexpected {type(exc).__name__}: {exc}\n(this is a bug; run again with --debug for a traceback)",
            err=True,
        )
        return EXIT_ERROR
    return int(result) if isinstance(result, int) else EXIT_OK


def run() -> None:
    """The process's entry point (`reconciler`, `python -m reconciler.cli`): `main`, then the
    process ends at once. By then every resource of the run is closed (the state written and
    fsynced, the lock released, the clients and an embedded emulator stopped: the command's
    context closed them); the exit handlers run and the output is flushed here. What is skipped is
    the interpreter freeing each object one by one: ~90 ms after a plan over 10,000 listed jobs
    (docs/performance.md). Under a tracer or a profiler (coverage, cProfile), which write their
    results as the interpreter ends, it ends as usual."""
    code = main()
    if sys.gettrace() is not None or sys.getprofile() is not None:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): as Python's own exit says it
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    run()
