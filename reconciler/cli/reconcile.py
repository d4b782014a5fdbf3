"""Commands that reconcile: validate, plan, show, apply (with --wait and continuations), refresh."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli.app import (
    AT_LEAST_0,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    INTERVAL,
    WAIT_LIMIT,
    AllowEmptyOpt,
    DestroyOpt,
    FormatOpt,
    LockTimeoutOpt,
    PathsArg,
    PruneOpt,
    PruneUnrecordedOpt,
    ReplaceOpt,
    Runtime,
    TargetOpt,
    _check_format,
    _outcome_reporter,
    _print_plan,
    _print_plan_error,
    _probe_reporter,
    _rt,
    app,
)
from reconciler.errors import ConfigError, PlanError, ReconcilerError

if TYPE_CHECKING:
    from reconciler.plan import Plan
    from reconciler.state.model import State


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
def refresh(ctx: typer.Context, paths: PathsArg = None, allow_empty: AllowEmptyOpt = False,
            lock_timeout: LockTimeoutOpt = None) -> int:
    """Update the state from the API (job states, endpoints); change no job."""
    rt = _rt(ctx)
    new_state = rt.session.refresh(paths or [], allow_empty=allow_empty, lock_timeout=lock_timeout,
                                   on_probe=_probe_reporter(rt))
    rt.info(f"State refreshed: {len(new_state.models)} model(s), serial {new_state.serial}.")
    return EXIT_OK
