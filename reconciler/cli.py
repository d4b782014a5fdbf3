"""The command line: `reconciler validate | fmt | plan | apply | refresh | status | output | models |
emulator | schema | force-unlock`.

This is the only module that prints or reads `os.environ`/`argv`. Exit codes: 0 success,
1 error, 2 (with `plan --detailed-exitcode`) success with changes — as terraform. Expected errors
print one `Error: …` block; an unexpected one says how to get details (`--debug`).
Heavy libraries (httpx, google-auth, deepdiff, uvicorn) are imported only by the commands that
need them, so `--help` and `validate` start fast.
"""

from __future__ import annotations

import contextlib
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
from reconciler.errors import ConfigError, ManifestError, PlanError, ReconcilerError

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.config import Settings
    from reconciler.plan import Plan
    from reconciler.session import Session
    from reconciler.state.model import State

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



# -- commands -------------------------------------------------------------------------------------
@app.command()
def validate(ctx: typer.Context, paths: PathsArg = None, allow_empty: AllowEmptyOpt = False) -> int:
    """Check manifests offline (no API call): syntax, fields, names, models."""
    rt = _rt(ctx)
    result = rt.session.load(paths or [], allow_empty=allow_empty)
    rt.out.print(f"{len(result.models)} manifest(s) in {len(result.files)} file(s) are valid.", markup=False)
    return EXIT_OK


@app.command()
def plan(
    ctx: typer.Context,
    paths: PathsArg = None,
    out: Annotated[Path | None, typer.Option("--out", help="Save the plan to apply it later exactly.", show_default=False, metavar="FILE")] = None,
    fmt: FormatOpt = "text",
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes, 1 error.")] = False,
    target: TargetOpt = None,
    replace: ReplaceOpt = None,
    allow_empty: AllowEmptyOpt = False,
    show_unchanged: Annotated[bool, typer.Option("--show-unchanged", help="List unchanged models too (text).")] = False,
    estimate_cost: Annotated[bool, typer.Option("--estimate-cost", help="Read dataset sizes from Cloud Storage to estimate what new tuning jobs cost.")] = False,
    prune: PruneOpt = False,
    prune_unrecorded: PruneUnrecordedOpt = False,
    destroy: DestroyOpt = False,
) -> int:
    """Show what apply would do: observe the API (one list per region) and diff."""
    from reconciler.session import PlanOptions

    rt = _rt(ctx)
    _check_format(fmt)
    try:
        the_plan = rt.session.plan(paths or [], PlanOptions(
            targets=target or [], replace=replace or [], prune=prune, prune_unrecorded=prune_unrecorded,
            estimate_cost=estimate_cost, allow_empty=allow_empty, destroy=destroy))
    except ReconcilerError as exc:
        _print_plan_error(rt, exc, fmt)  # a PR comment or a CI parser needs the error too
        raise
    _print_plan(rt, the_plan, fmt, show_noop=show_unchanged)
    if out is not None:
        from reconciler.state.codec import atomic_write

        atomic_write(out, the_plan.model_dump_json(indent=2).encode())
        rt.info(f"Saved the plan to {out}; run `reconciler apply {out}` to apply exactly this plan.")
    return EXIT_CHANGES if detailed_exitcode and the_plan.has_changes else EXIT_OK


@app.command()
def show(
    ctx: typer.Context,
    planfile: Annotated[Path, typer.Argument(help="A plan saved with `plan --out`.")],
    fmt: FormatOpt = "text",
) -> int:
    """Print a saved plan (no API call): what `apply PLANFILE` would run, if it is not stale."""
    from reconciler.session import read_saved_plan

    rt = _rt(ctx)
    _check_format(fmt)
    saved = read_saved_plan(planfile)
    if saved is None:
        raise ConfigError(f"{planfile} is not a saved plan (make one with `reconciler plan --out FILE`)")
    _print_plan(rt, saved, fmt)
    return EXIT_OK


@app.command()
def apply(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(help="A saved plan file, or manifest files/folders (default: manifests/).", show_default=False, metavar="PATHS")] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")] = False,
    max_cancel: Annotated[int | None, typer.Option("--max-cancel", help="Refuse a plan that cancels more jobs than this (default 5, or maxCancel).", show_default=False, min=0, metavar="N")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the jobs to a final state, then write the state.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", help="Seconds --wait may take (default: no limit).", show_default=False, callback=WAIT_LIMIT, metavar="SECONDS")] = None,
    poll_interval: Annotated[float | None, typer.Option("--poll-interval", help="Seconds between polls of --wait (default 30).", show_default=False, callback=INTERVAL, metavar="SECONDS")] = None,
    target: TargetOpt = None,
    replace: ReplaceOpt = None,
    allow_empty: AllowEmptyOpt = False,
    lock_timeout: LockTimeoutOpt = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Actions at once (default 8).", show_default=False, min=1, max=256, metavar="N")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Refuse a plan whose estimated tuning cost (USD) is above this.", show_default=False, callback=AT_LEAST_0, metavar="USD")] = None,
    prune: PruneOpt = False,
    prune_unrecorded: PruneUnrecordedOpt = False,
    destroy: DestroyOpt = False,
    events: Annotated[bool, typer.Option("--json", help="JSON Lines events on stdout (plan, outcome, applied, poll, done) for CI tooling; messages stay on stderr.")] = False,
) -> int:
    """Create, replace, recreate, cancel and forget so that the API matches the manifests."""
    from reconciler import render
    from reconciler.session import Limits, PlanOptions

    rt = _rt(ctx)
    rt.events = events
    session = rt.session
    session.client()  # credentials and the endpoint are checked before the lock is taken

    def show(the_plan: Plan) -> None:
        if rt.events:
            rt.emit({"event": "plan", **json.loads(render.plan_json(the_plan))})
        else:
            rt.out.print(render.plan_text(the_plan))

    def run(given: list[Path]) -> Any:
        return session.apply(
            given, PlanOptions(targets=target or [], replace=replace or [], prune=prune,
                               prune_unrecorded=prune_unrecorded, allow_empty=allow_empty, destroy=destroy),
            Limits(max_cancel=max_cancel, max_cost=max_cost), lock_timeout=lock_timeout, concurrency=concurrency,
            show=show, approve=lambda p: _approve(auto_approve),
            on_outcome=_outcome_reporter(rt), on_probe=_probe_reporter(rt))

    outcome = run(paths or [])
    if outcome is None:
        rt.info("Apply cancelled; nothing was changed.")
        return EXIT_ERROR
    planned, result = outcome
    _report_apply(rt, planned.plan, result)
    if not wait:
        return EXIT_ERROR if result.failed else EXIT_OK
    failed = bool(result.failed) or bool(_wait(rt, planned, poll_interval, wait_timeout, lock_timeout))
    if failed or _is_saved_plan(paths or []):
        return EXIT_ERROR if failed else EXIT_OK  # a saved plan runs as it is: `apply` again for the rest
    follow = lambda p: _wait(rt, p, poll_interval, wait_timeout, lock_timeout)  # noqa: E731
    return EXIT_ERROR if _continuations(rt, lambda: run(paths or []), planned, follow) else EXIT_OK


def _continuations(rt: Runtime, run: Any, planned: Any, follow: Any) -> bool:
    """`apply --wait` with continuations: once the parents' tuned models exist, plan and apply the
    held children, and wait for them, round after round. True if anything failed."""
    held = _held(planned)
    for round_ in range(2, MAX_ROUNDS + 1):
        if not held:
            return False
        rt.info(f"{', '.join(held)}: the parent's tuned model is ready; planning the continuation (round {round_}).")
        outcome = run()
        if outcome is None:
            return True
        planned, result = outcome
        _report_apply(rt, planned.plan, result)
        if result.failed or follow(planned):
            return True
        now = _held(planned)
        held = now if now != held else []  # nothing moved: a parent failed; the plan says why
    return False


MAX_ROUNDS = 10  # a chain of continuations deeper than this needs another apply


def _held(planned: Any) -> list[str]:
    from reconciler.plan.continuation import waiting

    return waiting(planned.plan.changes)


def _is_saved_plan(paths: list[Path]) -> bool:
    from reconciler.session import read_saved_plan

    return len(paths) == 1 and read_saved_plan(paths[0]) is not None


def _approve(auto_approve: bool) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise PlanError("apply needs --auto-approve when it is not run interactively (no TTY)")
    answer = typer.prompt("Apply this plan? Only 'yes' will be accepted", default="", show_default=False)
    return bool(answer.strip() == "yes")


def _report_apply(rt: Runtime, the_plan: Plan, result: Any) -> None:
    done = len(result.outcomes) - len(result.failed)
    serial = result.state.serial if result.state else "?"
    if rt.events:
        rt.emit({"event": "applied", "done": done, "failed": len(result.failed),
                 "state_serial": result.state.serial if result.state else None})
    counts = rt.session.client().transport.counts
    api = f"API: {counts['attempts']} request(s), {counts['retries']} retried"
    where = rt.session.store().describe()
    if not the_plan.has_changes:
        rt.info(f"Nothing to apply. State: {where} (serial {serial}). {api}.")
    else:
        rt.info(f"Apply finished: {done} action(s) done, {len(result.failed)} failed. "
                f"State: {where} (serial {serial}). {api}.")


def _wait(rt: Runtime, planned: Any, poll_interval: float | None, timeout: float | None,
          lock_timeout: float | None) -> list[str]:
    """Follow the plan's jobs to a final state, write the state; the models whose tuning failed."""
    from reconciler.progress import JobProgress, JsonProgress

    def progress(names: set[str], state: State) -> JobProgress:
        if rt.events:
            return JsonProgress(rt.emit, planned.plan.stack, names, state)
        return JobProgress(rt.err, planned.plan.stack, names, state)

    try:
        new_state, failed = rt.session.wait(planned, poll_interval=poll_interval, timeout=timeout,
                                            lock_timeout=lock_timeout, progress=progress,
                                            on_probe=_probe_reporter(rt), on_outcome=_outcome_reporter(rt))
    except KeyboardInterrupt:
        rt.info("Stopped waiting. The tuning jobs go on in Vertex AI: follow them with `reconciler status "
                "--watch`; `reconciler refresh` records their endpoints.")
        raise
    rt.info(f"All jobs reached a final state; state written (serial {new_state.serial}).")
    if rt.events:
        rt.emit({"event": "done", "failed": failed, "state_serial": new_state.serial})
    if failed:
        rt.err.print(f"[red]Tuning did not succeed for: {', '.join(failed)}[/] (see `reconciler status`)")
    return failed


@app.command()
def probe(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Models to probe (default: every model in the state).", show_default=False, metavar="NAME")] = None,
    manifests: Annotated[list[Path] | None, typer.Option("--manifests", help="Manifest files or folders (default: manifests/).", show_default=False, metavar="PATH")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Prompt for every model (default: its smokeTest.prompt).", show_default=False, metavar="TEXT")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.", metavar="FORMAT")] = "text",
) -> int:
    """Send a prompt to each tuned model's endpoint in service and report pass or fail."""
    from rich.markup import escape
    from rich.table import Table

    from reconciler.status import short_name

    rt = _rt(ctx)
    results = rt.session.probe(names or [], manifests, prompt)
    if fmt == "json":
        typer.echo(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        table = Table(title=f"probe: {sum(r.passed for r in results)}/{len(results)} passed")
        for column in ("model", "result", "endpoint", "reply or error"):
            table.add_column(column, overflow="fold")
        for r in results:
            mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
            table.add_row(escape(r.name), mark, escape(short_name(r.endpoint)),
                          escape(str(r.reply if r.passed else r.error)))
        rt.out.print(table)
    return EXIT_OK if all(r.passed for r in results) else EXIT_ERROR


@app.command()
def refresh(ctx: typer.Context, paths: PathsArg = None, allow_empty: AllowEmptyOpt = False,
            lock_timeout: LockTimeoutOpt = None) -> int:
    """Update the state from the API (job states, endpoints); change no job."""
    rt = _rt(ctx)
    new_state = rt.session.refresh(paths or [], allow_empty=allow_empty, lock_timeout=lock_timeout,
                                   on_probe=_probe_reporter(rt))
    rt.info(f"State refreshed: {len(new_state.models)} model(s), serial {new_state.serial}.")
    return EXIT_OK


@app.command()
def status(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(help="Manifest files/folders (default: manifests/), and/or model names to show in depth.", show_default=False, metavar="[PATHS|NAME]...")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.", metavar="FORMAT")] = "text",
    watch: Annotated[bool, typer.Option("--watch", help="Keep refreshing until no job of the models is running.")] = False,
    metrics: Annotated[bool, typer.Option("--metrics", help="With NAME: read the tuning metrics files (gcsMetricsUri) from Cloud Storage.")] = False,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between refreshes of --watch (default: pollInterval).", show_default=False, callback=INTERVAL, metavar="SECONDS")] = None,
    allow_empty: AllowEmptyOpt = False,
) -> int:
    """Desired versus actual: one row per model, plus the unmanaged jobs found; NAME in depth."""
    rt = _rt(ctx)
    if fmt not in ("text", "json"):
        raise ConfigError(f"--format must be text or json, not {fmt!r}")
    given = args or []
    paths = [Path(a) for a in given if Path(a).exists()]
    names = [a for a in given if not Path(a).exists()]
    query = rt.session.status(paths, names, allow_empty=allow_empty, metrics=metrics)

    def take() -> tuple[Any, Any]:
        snap = query.snapshot()
        return _status_view(rt, snap, fmt, watching=watch), snap

    if not watch:
        view, _ = take()
        if isinstance(view, str):
            typer.echo(view)
        else:
            rt.out.print(view)
        return EXIT_OK
    return _watch_status(rt, take, fmt, interval or rt.session.settings.poll_interval)


def _status_view(rt: Runtime, snap: Any, fmt: str, watching: bool = False) -> Any:
    """A status snapshot as JSON text or as rich renderables."""
    from reconciler.status import model_detail_text, status_table

    if snap.details is not None:
        if fmt == "json":
            return json.dumps(snap.details, separators=(",", ":")) if watching else json.dumps(snap.details, indent=2)
        from rich.console import Group

        return Group(*[model_detail_text(d) for d in snap.details])
    if fmt == "json":
        body = {"models": snap.rows, "unmanaged": snap.others, "errors": snap.errors}
        return json.dumps(body, separators=(",", ":")) if watching else json.dumps(body, indent=2)
    return status_table(snap.rows, snap.others, rt.session.settings.stack)


def _watch_status(rt: Runtime, take: Any, fmt: str, pause: float) -> int:
    """`status --watch`: a live table on a terminal, a log of the changes otherwise."""
    import time

    from reconciler.progress import elapsed_text

    start = time.monotonic()
    view, snap = take()
    if rt.out.is_terminal and fmt == "text":
        from rich.console import Group
        from rich.live import Live
        from rich.text import Text

        def framed() -> Any:
            head = f"{snap.done}/{snap.total} model(s) final · {elapsed_text(time.monotonic() - start)} elapsed"
            return Group(Text(head + (" · done" if snap.finished else ""), style="bold"), view)

        with Live(framed(), console=rt.out, refresh_per_second=2) as live:
            while not snap.finished:
                # Sleep in short steps so the elapsed time keeps moving between refreshes.
                until = time.monotonic() + pause
                while (left := until - time.monotonic()) > 0:
                    time.sleep(min(left, 1.0))
                    live.update(framed())
                view, snap = take()
                live.update(framed())
        return EXIT_OK
    last = None
    while True:
        text = view if isinstance(view, str) else _plain(rt, view)
        if text != last:
            if fmt == "text":  # a log: each new table under its time and progress
                typer.echo(f"[{elapsed_text(time.monotonic() - start)}] {snap.done}/{snap.total} model(s) final")
            typer.echo(text)
            last = text
        if snap.finished:
            return EXIT_OK
        time.sleep(pause)
        view, snap = take()


def _plain(rt: Runtime, renderable: Any) -> str:
    with rt.out.capture() as capture:
        rt.out.print(renderable)
    return capture.get()


@app.command()
def output(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One model (default: all).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or env (KEY=value lines).", metavar="FORMAT")] = "json",
) -> int:
    """Print the tuned models' endpoints from the state (no API call)."""
    rt = _rt(ctx)
    if fmt not in ("json", "env"):
        raise ConfigError(f"--format must be json or env, not {fmt!r}")
    data = rt.session.outputs(name)
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2))
        return EXIT_OK
    for n, d in data.items():
        key = n.upper().replace("-", "_")
        if d.get("serving") is False:  # its base model retired: no endpoint to call
            rt.warn(f"{n}: {d['note']}")
        typer.echo(f"{key}_ENDPOINT={(d['endpoint'] if d.get('serving', True) else None) or ''}")
        typer.echo(f"{key}_MODEL={d['model'] or ''}")
    return EXIT_OK


@app.command()
def models(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Models to show (default: all).", show_default=False, metavar="NAME")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.", metavar="FORMAT")] = "text",
) -> int:
    """Print the model catalog: stage, dates, successor, methods, adapter sizes, price, sources."""
    rt = _rt(ctx)
    if fmt not in ("text", "json"):
        raise ConfigError(f"--format must be text or json, not {fmt!r}")
    entries = rt.session.models(names or [])
    if fmt == "json":
        typer.echo(json.dumps(entries, indent=2))
    else:
        from reconciler.catalog import format_text

        typer.echo(format_text(entries, rt.session.catalog().read))
    return EXIT_OK


@app.command("import")
def import_(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The tuning job's resource name: projects/P/locations/R/tuningJobs/ID.")],
    name: Annotated[str, typer.Option("--name", help="The manifest (metadata.name) that adopts the job.", metavar="NAME")],
    paths: PathsArg = None,
    lock_timeout: LockTimeoutOpt = None,
) -> int:
    """Adopt an existing tuning job into the state and into management, without re-creating it."""
    rt = _rt(ctx)
    rt.info(rt.session.import_job(job, name, paths or [], lock_timeout))
    return EXIT_OK


state_app = typer.Typer(help="Inspect and edit the state; move it between a local file and remote storage.",
                        no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("pull")
def state_pull(ctx: typer.Context) -> int:
    """Print the current state (local or gs://) as JSON on stdout, e.g. `> local.json`."""
    typer.echo(_rt(ctx).session.state_pull().decode(), nl=False)
    return EXIT_OK


@state_app.command("list")
def state_list(ctx: typer.Context, fmt: Annotated[str, typer.Option("--format", help="text or json.", metavar="FORMAT")] = "text") -> int:
    """The models the state records, with their job, state and endpoint."""
    rt = _rt(ctx)
    models = rt.session.state_list()
    if fmt == "json":
        typer.echo(json.dumps(models, indent=2))
        return EXIT_OK
    from reconciler.render import natural

    for name in sorted(models, key=natural):
        m = models[name]
        typer.echo(f"{name}\t{(m['state'] or '-').removeprefix('JOB_STATE_')}\t{m['job'] or '-'}\t{m['endpoint'] or '-'}")
    return EXIT_OK


@state_app.command("show")
def state_show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="A model of the state.")]) -> int:
    """Everything the state records of one model, as JSON."""
    typer.echo(json.dumps(_rt(ctx).session.state_show(name), indent=2))
    return EXIT_OK


@state_app.command("rm")
def state_rm(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Models the state forgets (their jobs are not touched).", metavar="NAME")],
    lock_timeout: LockTimeoutOpt = None,
) -> int:
    """Forget models in the state without touching their jobs (as terraform's `state rm`)."""
    rt = _rt(ctx)
    serial = rt.session.state_rm(names, lock_timeout=lock_timeout)
    rt.info(f"Removed {', '.join(names)} from the state (serial {serial}); their jobs were not touched.")
    return EXIT_OK


@state_app.command("mv")
def state_mv(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The model's name in the state.")],
    new: Annotated[str, typer.Argument(help="Its new name (the manifest's metadata.name).")],
    lock_timeout: LockTimeoutOpt = None,
) -> int:
    """Rename a model in the state; its jobs are adopted by the new name, nothing is re-tuned."""
    rt = _rt(ctx)
    serial = rt.session.state_mv(old, new, lock_timeout=lock_timeout)
    rt.info(f"Moved {old} to {new} in the state (serial {serial}); plan a manifest named {new} to keep it.")
    return EXIT_OK


@state_app.command("push")
def state_push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A state file to upload to the configured --state.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite even a state of another lineage or a newer serial.")] = False,
    lock_timeout: LockTimeoutOpt = None,
) -> int:
    """Replace the configured state with a local state file (as terraform's `state push`):
    refused when the target has another lineage or a newer serial, unless --force."""
    rt = _rt(ctx)
    where, serial = rt.session.state_push(path, force=force, lock_timeout=lock_timeout)
    rt.info(f"Pushed {path} to {where} (serial {serial}).")
    return EXIT_OK


@app.command()
def fmt(
    ctx: typer.Context,
    paths: PathsArg = None,
    check: Annotated[bool, typer.Option("--check", help="Change nothing; exit 1 if a manifest is not in the canonical layout (CI).")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print what would change, as a unified diff.")] = False,
) -> int:
    """Rewrite manifests in the canonical layout (key order, indentation); comments and values kept."""
    from reconciler.fmt import unified, write

    rt = _rt(ctx)
    changes = rt.session.fmt(paths or [])
    for path, old, new in changes:
        if diff:
            typer.echo(unified(path, old, new), nl=False)
        elif check:
            typer.echo(str(path))
    if check or diff:
        if changes:
            rt.info(f"{len(changes)} manifest file(s) not in the canonical layout; `reconciler fmt` rewrites them.")
        return EXIT_ERROR if changes and check else EXIT_OK
    write(changes)
    for path, _old, _new in changes:
        typer.echo(str(path))
    return EXIT_OK


@app.command()
def schema(ctx: typer.Context) -> int:
    """Print the JSON Schema of a manifest (for editors and CI)."""
    from reconciler.manifest import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))
    return EXIT_OK


@app.command("force-unlock")
def force_unlock(ctx: typer.Context, lock_id: Annotated[str, typer.Argument(help="The lock id an error message named.")]) -> int:
    """Remove a state lock left by a run that died. Only when that run is surely gone."""
    rt = _rt(ctx)
    where = rt.session.force_unlock(lock_id)
    rt.info(f"Lock {lock_id} on {where} removed.")
    return EXIT_OK


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.", metavar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).", min=0, max=65535, metavar="N")] = 8080,
    data: Annotated[Path | None, typer.Option(help="Keep jobs in this file across restarts.", show_default=False, metavar="FILE")] = None,
    pending_seconds: Annotated[float, typer.Option(help="Seconds a job stays PENDING.", callback=AT_LEAST_0, metavar="SECONDS")] = 5.0,
    running_seconds: Annotated[float, typer.Option(help="Seconds a job stays RUNNING.", callback=AT_LEAST_0, metavar="SECONDS")] = 60.0,
    cancelling_seconds: Annotated[float, typer.Option(help="Seconds a job stays CANCELLING.", callback=AT_LEAST_0, metavar="SECONDS")] = 2.0,
    clock: Annotated[str, typer.Option(help="real, or manual (time moves only by POST /_emulator/advance).", metavar="real|manual")] = "real",
    latency_ms: Annotated[float, typer.Option(help="Latency added to every API request.", callback=AT_LEAST_0, metavar="MS")] = 0.0,
    rate_503: Annotated[float, typer.Option("--rate-503", help="Fraction of API requests answered 503.", callback=FRACTION, metavar="FRACTION")] = 0.0,
    rate_429: Annotated[float, typer.Option("--rate-429", help="Fraction answered 429 with Retry-After.", callback=FRACTION, metavar="FRACTION")] = 0.0,
    lost_create_rate: Annotated[float, typer.Option(help="Fraction of creates whose response is lost (the job is made).", callback=FRACTION, metavar="FRACTION")] = 0.0,
    fault_seed: Annotated[int | None, typer.Option(help="Seed for fault injection.", show_default=False, metavar="N")] = None,
    submissions_per_minute: Annotated[int, typer.Option(help="Create quota per project and region (0: none).", min=0, metavar="N")] = 60,
    requests_per_minute: Annotated[int, typer.Option(help="Request quota per project and region (0: none).", min=0, metavar="N")] = 600,
) -> int:
    """Serve a local emulator of the Vertex AI tuning-jobs API (no Google account needed)."""
    from reconciler.emulator.backend import Backend, EmulatorConfig
    from reconciler.emulator.server import serve

    if clock not in ("real", "manual"):
        raise ConfigError("--clock must be real or manual")
    config = EmulatorConfig(
        pending_seconds=pending_seconds, running_seconds=running_seconds, cancelling_seconds=cancelling_seconds,
        clock="manual" if clock == "manual" else "real", latency_ms=latency_ms, rate_503=rate_503, rate_429=rate_429,
        lost_create_rate=lost_create_rate, fault_seed=fault_seed, submissions_per_minute=submissions_per_minute,
        requests_per_minute=requests_per_minute, data_path=str(data) if data else None,
    )
    try:
        serve(host, port, Backend(config))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port, "
                          "or 0 for a free one)") from None
    return EXIT_OK


# -- entry point ----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (never raise for expected errors)."""

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    with _terminate_as_interrupt():
        return _run(args, debug)


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
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


GLOBAL_OPTIONS = ("--api-endpoint", "--state", "--project", "--region", "--stack", "--env", "--config",
                  "--allow-insecure-http", "--no-color", "--debug")


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
        result = typer.main.get_command(app).main(args=args, prog_name="reconciler", standalone_mode=False)
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
    sys.exit(main())


if __name__ == "__main__":
    run()
