"""The command line: `reconciler validate | plan | apply | refresh | status | output | emulator |
schema | force-unlock`.

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
from reconciler.errors import ConfigError, ManifestError, PlanError, ReconcilerError, StalePlanError

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.config import Settings
    from reconciler.manifest import LoadResult
    from reconciler.plan import Observation, Plan
    from reconciler.state.model import State
    from reconciler.state.store import StateStore
    from reconciler.storage import StorageClient
    from reconciler.vertex.client import VertexClient

app = typer.Typer(
    name="reconciler",
    help="Declarative plan/apply for Vertex AI tuned models (supervised tuning jobs).",
    no_args_is_help=True,
    add_completion=False,
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
    _storage: StorageClient | None = None
    exit_stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from reconciler.config import load_settings

            self._settings = load_settings(
                config_file=self.config_file, cwd=Path.cwd(), env=os.environ, flags=self.flags
            )
        return self._settings

    def _make_console(self, stderr: bool) -> Console:
        from rich.console import Console

        return Console(stderr=stderr, no_color=self.no_color or bool(os.environ.get("NO_COLOR")),
                       highlight=False, soft_wrap=True, emoji=False)

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
    api_endpoint: Annotated[str | None, typer.Option("--api-endpoint", help="API root URL for every region (env RECONCILER_API_ENDPOINT); 'embedded' or 'embedded:FILE' runs a local emulator in-process.", show_default=False)] = None,
    state: Annotated[str | None, typer.Option("--state", help="State file path (default reconciler.state.json).", show_default=False)] = None,
    project: Annotated[str | None, typer.Option("--project", help="Default project for manifests without spec.project.", show_default=False)] = None,
    region: Annotated[str | None, typer.Option("--region", help="Default region for manifests without spec.region.", show_default=False)] = None,
    stack: Annotated[str | None, typer.Option("--stack", help="Stack name: which managed jobs this run owns.", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Settings file (default ./reconciler.yaml).", show_default=False)] = None,
    allow_insecure_http: Annotated[bool, typer.Option("--allow-insecure-http", help="Allow a plain http:// endpoint on a non-loopback host.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour (NO_COLOR is honoured too).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks and a log of API calls on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version, expose_value=False)] = False,
) -> None:
    """Global options come before the command: `reconciler --stack prod plan manifests/`."""
    flags = {"api_endpoint": api_endpoint, "state": state, "project": project, "region": region, "stack": stack}
    runtime = Runtime(flags=flags, config_file=config, debug=debug, no_color=no_color,
                      allow_insecure_http=allow_insecure_http)
    ctx.obj = runtime
    ctx.call_on_close(runtime.exit_stack.close)
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        for noisy in ("httpcore", "urllib3", "google"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# -- shared steps ---------------------------------------------------------------------------------
def _manifest_root(rt: Runtime) -> Path:
    """The folder holding the stack's whole manifest set (`manifests:` in reconciler.yaml)."""
    return Path(rt.settings.manifests)


def _prunes(rt: Runtime, paths: Sequence[Path], prune: bool) -> bool:
    """Whether a run may remove models whose manifest is absent: only when it reads the whole
    manifest set (no paths, or the manifest root itself among them) or is told to (--prune).
    A subset of files, or another folder, acts on the models it names and nothing else."""
    if prune or not paths:
        return True
    root = _manifest_root(rt).resolve()
    return any(p.resolve() == root for p in paths)


def _load(rt: Runtime, paths: Sequence[Path], *, allow_empty: bool = False,
          on_model: Any = None) -> LoadResult:
    from reconciler.manifest import Defaults, load_manifests

    s = rt.settings
    paths = list(paths) or [_manifest_root(rt)]
    result = load_manifests(paths, Defaults(project=s.project, region=s.region), on_model)
    for warning in result.warnings:
        rt.warn(warning)
    if not result.models and not allow_empty:
        where = ", ".join(str(p) for p in paths)
        raise PlanError(
            f"no manifests found in {where}: refusing to plan for zero models (a wrong path or a bad "
            "checkout would cancel every job). Pass --allow-empty if that is really intended."
        )
    return result


def _client(rt: Runtime) -> VertexClient:
    from reconciler.vertex.auth import check_endpoint, resolve_auth
    from reconciler.vertex.client import VertexClient

    s = rt.settings
    endpoint = s.api_endpoint
    if endpoint is not None and (endpoint == "embedded" or endpoint.startswith("embedded:")):
        from reconciler.emulator.server import start_embedded

        data = Path(endpoint.partition(":")[2] or "reconciler-emulator.json")
        server = start_embedded(data)
        rt.exit_stack.callback(server.stop)
        endpoint = server.url
        if rt.debug:
            rt.info(f"embedded emulator at {endpoint}, data in {data}")
    root = check_endpoint(endpoint, allow_insecure_http=rt.allow_insecure_http) if endpoint else None
    token = os.environ.get("RECONCILER_ACCESS_TOKEN") or None
    auth = resolve_auth(root, token)
    client = VertexClient(
        endpoint=root,
        auth=auth,
        retry=s.retry,
        max_connections=max(8, s.concurrency * 2),
        requests_per_minute=s.requests_per_minute,
        creates_per_minute=s.creates_per_minute,
    )
    client.transport.notify = rt.warn
    rt.exit_stack.callback(client.close)
    return client


def _storage(rt: Runtime) -> StorageClient:
    """The Cloud Storage client (state in gs://, dataset pinning), made once per run."""
    if rt._storage is None:
        from reconciler.storage import StorageClient, emulator_endpoint
        from reconciler.vertex.auth import resolve_auth

        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        # As Google's own storage clients do, an emulator gets no credentials.
        auth = None if emulator else resolve_auth(None, os.environ.get("RECONCILER_ACCESS_TOKEN") or None,
                                                  service="Cloud Storage")
        rt._storage = StorageClient(
            endpoint=emulator_endpoint(emulator) if emulator else None, auth=auth, retry=rt.settings.retry)
        rt._storage.transport.notify = rt.warn
        rt.exit_stack.callback(rt._storage.close)
    return rt._storage


def _store(rt: Runtime) -> StateStore:
    location = rt.settings.state
    if location.startswith("gs://"):
        from reconciler.state.gcs import GcsStateStore
        from reconciler.storage import parse_gs_uri

        parse_gs_uri(location)  # a malformed URI is reported as such, before any credentials are sought
        return GcsStateStore(location, _storage(rt))
    if "://" in location:
        raise ConfigError(f"state {location!r}: use a local path or gs://BUCKET/OBJECT")
    from reconciler.state.local import LocalStateStore

    return LocalStateStore(Path(location))


def _observer(rt: Runtime, client: VertexClient) -> Any:
    from reconciler.observe import observe

    def run(parents: Sequence[str]) -> Observation:
        return observe(client, parents, workers=rt.settings.concurrency)

    return run


def _make_plan(
    rt: Runtime,
    client: VertexClient,
    state: State,
    desired: Sequence[Any],
    *,
    targets: Sequence[str],
    replace: Sequence[str],
    observation: Observation | None = None,
    estimate_cost: bool = False,
    prune: bool = True,
    prune_unrecorded: bool = False,
) -> tuple[Plan, Observation, list[Any]]:
    """Observe (unless given), resolve dataset pins and sizes, plan. Returns the models as
    planned (pins and sizes filled in): apply and the state must use exactly those."""
    from reconciler.observe import parents_to_observe
    from reconciler.plan import compute_plan

    if observation is None:
        observation = _observer(rt, client)(parents_to_observe(desired, state))
    desired = _with_datasets(rt, desired)
    def planned(models: Sequence[Any]) -> Plan:
        return compute_plan(models, observation, state, stack=rt.settings.stack, targets=targets, replace=replace,
                            prices=rt.settings.prices, prune=prune, prune_unrecorded=prune_unrecorded)

    plan = planned(desired)
    if estimate_cost:
        creating = {c.name for c in plan.creates if c.cost_usd is None}
        if creating:
            desired = _with_datasets(rt, desired, sizes_for=creating)
            plan = planned(desired)
    # Creates an interrupted run started: said in the plan itself (text, JSON, the PR comment),
    # since a reviewer must know that an earlier apply died half-way.
    resumed = []
    for entry in state.journal:
        found = any(j.labels.get("reconciler-request") == entry.request_id for j in observation.jobs)
        if found:
            outcome = "its job exists and is taken into account."
        elif entry.parent in observation.parents:
            outcome = "no job was made; it is planned again if still wanted."
        else:
            outcome = f"{entry.parent} was not listed, so whether its job exists is unknown."
        resumed.append(f"{entry.name}: an interrupted run started a create at {entry.started} "
                       f"(request {entry.request_id}); {outcome}")
    if resumed:
        plan = plan.model_copy(update={"warnings": [*resumed, *plan.warnings]})
    return plan, observation, list(desired)


def _with_datasets(rt: Runtime, desired: Sequence[Any], sizes_for: set[str] | None = None) -> list[Any]:
    """Pins of `pinDatasets` models (and sizes, for `sizes_for`) read from Cloud Storage."""
    if not sizes_for and not any(d.pin_datasets for d in desired):
        return list(desired)
    from reconciler.datasets import resolve

    return resolve(desired, _storage(rt), sizes_for=sizes_for or (), workers=rt.settings.concurrency)


def _load_and_observe(
    rt: Runtime, paths: Sequence[Path], state: State, *, allow_empty: bool
) -> tuple[LoadResult, Observation, VertexClient]:
    """Load the manifests while their regions are being listed: each (project, region) is listed
    as soon as the state or the first manifest naming it is read — listing waits on the network,
    loading uses the CPU. Each parent is still listed once; manifest errors still come first."""
    import threading
    from concurrent.futures import Future, ThreadPoolExecutor

    from reconciler.observe import merge, observe_parent, parents_to_observe

    rt.settings  # noqa: B018 (read once, before the listing threads need them)
    lock = threading.Lock()
    clients: list[VertexClient] = []
    started: dict[str, Future[Observation]] = {}

    def listing(parent: str) -> Observation:
        with lock:
            if not clients:
                clients.append(_client(rt))
        return observe_parent(clients[0], parent)

    with ThreadPoolExecutor(max_workers=rt.settings.concurrency) as pool:
        def start(parent: str) -> None:
            if parent not in started:
                started[parent] = pool.submit(listing, parent)

        for parent in parents_to_observe([], state):
            start(parent)
        loaded = _load(rt, paths, allow_empty=allow_empty, on_model=lambda d: start(d.parent))
        observation = merge(future.result() for future in started.values())
    with lock:
        client = clients[0] if clients else _client(rt)
    return loaded, observation, client


def _print_plan(rt: Runtime, plan: Plan, fmt: str) -> None:
    from reconciler import render

    if fmt == "json":
        typer.echo(render.plan_json(plan))
    elif fmt == "markdown":
        typer.echo(render.plan_markdown(plan))
    else:
        rt.out.print(render.plan_text(plan))


@contextlib.contextmanager
def _locked(rt: Runtime, store: StateStore, operation: str, timeout: float | None) -> Iterator[str]:
    lock_id = store.lock(operation, timeout=rt.settings.lock_timeout if timeout is None else timeout, warn=rt.warn)
    try:
        yield lock_id
    finally:
        store.unlock(lock_id)


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


AT_LEAST_0 = _number(0)
ABOVE_0 = _number(0, inclusive=False)
FRACTION = _number(0, high=1)
LockTimeoutOpt = Annotated[float | None, typer.Option("--lock-timeout", help="Seconds to wait for the state lock (default 0, or lockTimeout).", show_default=False, callback=AT_LEAST_0)]
PruneOpt = Annotated[bool, typer.Option("--prune", help="Remove models whose manifest is gone even though only some manifests were given (paths other than the manifest root).")]
PruneUnrecordedOpt = Annotated[bool, typer.Option("--prune-unrecorded", help="Also cancel running jobs of the stack that this state has no record of (another checkout's, or a lost state).")]
FormatOpt = Annotated[str, typer.Option("--format", help="text, json or markdown.")]
PathsArg = Annotated[list[Path] | None, typer.Argument(help="Manifest files or folders (default: manifests/).", show_default=False)]
TargetOpt = Annotated[list[str] | None, typer.Option("--target", help="Limit the run to these model names (repeatable).", show_default=False)]
ReplaceOpt = Annotated[list[str] | None, typer.Option("--replace", help="Force a new tuning job for this model (repeatable).", show_default=False)]
AllowEmptyOpt = Annotated[bool, typer.Option("--allow-empty", help="Allow planning with zero manifests (would cancel every managed job).")]


def _check_format(fmt: str) -> str:
    if fmt not in ("text", "json", "markdown"):
        raise ConfigError(f"--format must be text, json or markdown, not {fmt!r}")
    return fmt


# -- commands -------------------------------------------------------------------------------------
@app.command()
def validate(ctx: typer.Context, paths: PathsArg = None) -> int:
    """Check manifests offline (no API call): syntax, fields, names, models."""
    rt = _rt(ctx)
    result = _load(rt, paths or [])
    rt.out.print(f"{len(result.models)} manifest(s) in {len(result.files)} file(s) are valid.", markup=False)
    return EXIT_OK


@app.command()
def plan(
    ctx: typer.Context,
    paths: PathsArg = None,
    out: Annotated[Path | None, typer.Option("--out", help="Save the plan to apply it later exactly.", show_default=False)] = None,
    fmt: FormatOpt = "text",
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes, 1 error.")] = False,
    target: TargetOpt = None,
    replace: ReplaceOpt = None,
    allow_empty: AllowEmptyOpt = False,
    show_unchanged: Annotated[bool, typer.Option("--show-unchanged", help="List unchanged models too (text).")] = False,
    estimate_cost: Annotated[bool, typer.Option("--estimate-cost", help="Read dataset sizes from Cloud Storage to estimate what new tuning jobs cost.")] = False,
    prune: PruneOpt = False,
    prune_unrecorded: PruneUnrecordedOpt = False,
) -> int:
    """Show what apply would do: observe the API (one list per region) and diff."""
    rt = _rt(ctx)
    _check_format(fmt)
    store = _store(rt)
    state = store.read(stack=rt.settings.stack)
    loaded, observation, client = _load_and_observe(rt, paths or [], state, allow_empty=allow_empty)
    the_plan, _, _ = _make_plan(rt, client, state, loaded.models, targets=target or [], replace=replace or [],
                                observation=observation, estimate_cost=estimate_cost,
                                prune=_prunes(rt, paths or [], prune), prune_unrecorded=prune_unrecorded)
    if fmt == "text" and show_unchanged:
        from reconciler import render

        rt.out.print(render.plan_text(the_plan, show_noop=True))
    else:
        _print_plan(rt, the_plan, fmt)
    if out is not None:
        from reconciler.state.local import atomic_write

        atomic_write(out, the_plan.model_dump_json(indent=2).encode())
        rt.info(f"Saved the plan to {out}; run `reconciler apply {out}` to apply exactly this plan.")
    if detailed_exitcode and the_plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def _read_saved_plan(path: Path) -> Plan | None:
    """The plan in `path` if it is a saved plan file, else None (it is a manifest path)."""
    from pydantic import ValidationError

    from reconciler.plan import Plan

    if not path.is_file():
        return None
    head = path.read_bytes()[:4096].lstrip()
    if not head.startswith(b"{"):
        return None
    from reconciler.plan import PLAN_FORMAT_VERSION, fingerprint

    try:
        saved = Plan.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise PlanError(f"{path}: not a saved plan of this version ({exc.error_count()} problems)") from None
    if saved.format_version != PLAN_FORMAT_VERSION:
        raise PlanError(f"{path}: a saved plan of format {saved.format_version}, this version reads "
                        f"{PLAN_FORMAT_VERSION}. Run plan again.")
    if fingerprint(saved) != saved.fingerprint:
        raise PlanError(f"{path} was edited after it was made (its content no longer matches its "
                        "fingerprint); nothing was applied. Run plan again.")
    return saved


@app.command()
def apply(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(help="A saved plan file, or manifest files/folders (default: manifests/).", show_default=False)] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")] = False,
    max_cancel: Annotated[int | None, typer.Option("--max-cancel", help="Refuse a plan that cancels more jobs than this (default 5, or maxCancel).", show_default=False, min=0)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the jobs to a final state, then write the state.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", help="Seconds --wait may take (default: no limit).", show_default=False, callback=ABOVE_0)] = None,
    poll_interval: Annotated[float | None, typer.Option("--poll-interval", help="Seconds between polls of --wait (default 30).", show_default=False, callback=ABOVE_0)] = None,
    target: TargetOpt = None,
    replace: ReplaceOpt = None,
    allow_empty: AllowEmptyOpt = False,
    lock_timeout: LockTimeoutOpt = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Actions at once (default 8).", show_default=False, min=1, max=256)] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Refuse a plan whose estimated tuning cost (USD) is above this.", show_default=False, callback=AT_LEAST_0)] = None,
    prune: PruneOpt = False,
    prune_unrecorded: PruneUnrecordedOpt = False,
) -> int:
    """Create, replace, recreate, cancel and forget so that the API matches the manifests."""
    from reconciler import render
    from reconciler.apply import apply_plan
    from reconciler.models import DesiredModel
    from reconciler.plan import compute_plan

    rt = _rt(ctx)
    s = rt.settings
    plan_file = paths[0] if paths and len(paths) == 1 else None
    saved = _read_saved_plan(plan_file) if plan_file else None
    if saved is not None:
        if target or replace or prune or prune_unrecorded:
            raise ConfigError("--target, --replace and --prune… cannot be combined with a saved plan: "
                              "they were decided when it was made")
        desired: list[DesiredModel] = [DesiredModel.from_dict(d) for d in saved.desired]
        if saved.stack != s.stack:
            raise StalePlanError(f"{plan_file}: the plan is for stack {saved.stack!r}, not {s.stack!r}")
    else:
        desired = list(_load(rt, paths or [], allow_empty=allow_empty).models)
    client = _client(rt)
    store = _store(rt)
    with _locked(rt, store, "apply", lock_timeout):
        state = store.read(stack=s.stack)
        if saved is not None:
            from reconciler.observe import parents_to_observe

            observation = _observer(rt, client)(parents_to_observe(desired, state, saved.parents))
            current = {d.name: d.identity for d in _with_datasets(rt, desired)}
            moved = sorted(d.name for d in desired if current[d.name] != d.identity)
            if moved:
                raise StalePlanError(f"{plan_file} is stale: the data of {', '.join(moved)} changed in Cloud "
                                     "Storage since the plan was made. Run plan again.")
            fresh = compute_plan(desired, observation, state, stack=s.stack, targets=saved.targets,
                                 replace=saved.replace, prices=s.prices, prune=saved.prune,
                                 prune_unrecorded=saved.prune_unrecorded)
            if fresh.fingerprint != saved.fingerprint:
                raise StalePlanError(
                    f"{plan_file} is stale: the jobs or the state changed since it was made "
                    f"({render.summary_line(saved)} → now {render.summary_line(fresh)}). Run plan again."
                )
            # What runs is what this version computes from the plan's models (the same actions,
            # the fingerprint says): never a request read from the file.
            the_plan = fresh
        else:
            the_plan, _, desired = _make_plan(rt, client, state, desired, targets=target or [], replace=replace or [],
                                              estimate_cost=max_cost is not None,
                                              prune=_prunes(rt, paths or [], prune), prune_unrecorded=prune_unrecorded)
            rt.out.print(render.plan_text(the_plan))
        if max_cost is not None:
            if the_plan.cost_unknown:
                unknown = ", ".join(c.name for c in the_plan.creates if c.cost_usd is None)
                raise PlanError(f"--max-cost {max_cost:g}: no estimate for {unknown}; cannot check the limit")
            if the_plan.estimated_cost > max_cost:
                raise PlanError(f"this plan's estimated tuning cost is ${the_plan.estimated_cost:,.2f}, above "
                                f"--max-cost {max_cost:,.2f}; nothing was changed")
        limit = s.max_cancel if max_cancel is None else max_cancel
        if the_plan.cancel_count > limit:
            raise PlanError(
                f"this plan cancels {the_plan.cancel_count} running job(s), more than --max-cancel {limit}; "
                "check the plan, then raise --max-cancel if it is intended"
            )
        if the_plan.has_changes and not auto_approve and saved is None:  # a saved plan was reviewed
            if not sys.stdin.isatty():
                raise PlanError("apply needs --auto-approve when it is not run interactively (no TTY)")
            answer = typer.prompt("Apply this plan? Only 'yes' will be accepted", default="", show_default=False)
            if answer.strip() != "yes":
                rt.info("Apply cancelled; nothing was changed.")
                return EXIT_ERROR
        def report(outcome: Any) -> None:
            from rich.markup import escape

            c = outcome.change
            colour = "green" if outcome.ok else "red"
            mark = "✓" if outcome.ok else "✗"
            rt.err.print(f"[{colour}]{mark}[/] {c.action.value} {escape(c.name)}: {escape(outcome.message)}")

        result = apply_plan(
            the_plan, desired, client, store, state, _observer(rt, client),
            concurrency=concurrency or s.concurrency, on_outcome=report, on_probe=_probe_reporter(rt),
        )
        done = len(result.outcomes) - len(result.failed)
        serial = result.state.serial if result.state else "?"
        counts = client.transport.counts
        api = f"API: {counts['attempts']} request(s), {counts['retries']} retried"
        if not the_plan.has_changes:
            rt.info(f"Nothing to apply. State: {store.describe()} (serial {serial}). {api}.")
        else:
            rt.info(f"Apply finished: {done} action(s) done, {len(result.failed)} failed. "
                    f"State: {store.describe()} (serial {serial}). {api}.")
        tuning_failed = _wait(rt, client, store, desired, the_plan, poll_interval, wait_timeout) if wait else False
    return EXIT_ERROR if result.failed or tuning_failed else EXIT_OK


def _wait(rt: Runtime, client: VertexClient, store: StateStore, desired: Sequence[Any], the_plan: Plan,
          poll_interval: float | None, timeout: float | None) -> bool:
    """Follow the plan's jobs to a final state, write the state; True if a model's tuning failed."""
    from reconciler.apply import refresh_state, wait_for_jobs
    from reconciler.models import StateClass, classify_state
    from reconciler.progress import JobProgress

    names = {c.name for c in the_plan.changes}
    observer = _observer(rt, client)
    state = store.read(stack=the_plan.stack)
    with JobProgress(rt.err, the_plan.stack, names, state) as progress:
        observation = wait_for_jobs(
            observer, the_plan.parents, the_plan.stack, names, state,
            poll_interval=poll_interval or rt.settings.poll_interval, timeout=timeout, on_poll=progress.update,
        )
    new_state = refresh_state(store, desired, observation, stack=the_plan.stack, names=names, state=state,
                              api=client, on_probe=_probe_reporter(rt))
    wanted = {d.name for d in desired}
    failed = sorted(
        n for n, e in new_state.models.items()
        if n in names and n in wanted and classify_state(e.state) in (StateClass.FAILED, StateClass.CANCELLED)
    )
    rt.info(f"All jobs reached a final state; state written (serial {new_state.serial}).")
    if failed:
        rt.err.print(f"[red]Tuning did not succeed for: {', '.join(failed)}[/] (see `reconciler status`)")
    return bool(failed)


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


@app.command()
def probe(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Models to probe (default: every model in the state).", show_default=False)] = None,
    manifests: Annotated[list[Path] | None, typer.Option("--manifests", help="Manifest files or folders (default: manifests/).", show_default=False)] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Prompt for every model (default: its smokeTest.prompt).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> int:
    """Send a prompt to each tuned model's endpoint in service and report pass or fail."""
    from rich.markup import escape
    from rich.table import Table

    from reconciler.probe import DEFAULT_PROMPT
    from reconciler.probe import probe as run_probe

    rt = _rt(ctx)
    # Manifests only add smokeTest prompts: without --manifests and without a manifests/ folder,
    # the state alone says what to probe.
    paths = manifests or [p for p in [_manifest_root(rt)] if p.exists()]
    desired = {d.name: d for d in _load(rt, paths, allow_empty=True).models} if paths else {}
    state = _store(rt).read(stack=rt.settings.stack)
    chosen = names or sorted(state.models)
    unknown = [n for n in chosen if n not in state.models]
    if unknown:
        raise ReconcilerError(f"not in the state {rt.settings.state}: {', '.join(unknown)} (apply first)")
    client = _client(rt)
    results = []
    for name in chosen:
        entry, d = state.models[name], desired.get(name)
        text = prompt or (d.smoke_prompt if d and d.smoke_prompt else DEFAULT_PROMPT)
        expect = d.smoke_expect if d and not prompt else None
        endpoint = entry.tuned_model.endpoint if entry.tuned_model else None
        results.append(run_probe(client, name, entry.serving_job, endpoint, text, expect))
    if fmt == "json":
        typer.echo(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        table = Table(title=f"probe: {sum(r.passed for r in results)}/{len(results)} passed")
        for column in ("model", "result", "endpoint", "reply or error"):
            table.add_column(column, overflow="fold")
        from reconciler.status import short_name

        for r in results:
            mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
            table.add_row(escape(r.name), mark, escape(short_name(r.endpoint)),
                          escape(str(r.reply if r.passed else r.error)))
        rt.out.print(table)
    return EXIT_OK if all(r.passed for r in results) else EXIT_ERROR


@app.command()
def refresh(ctx: typer.Context, paths: PathsArg = None, allow_empty: AllowEmptyOpt = False) -> int:
    """Update the state from the API (job states, endpoints); change no job."""
    from reconciler.apply import refresh_state
    from reconciler.observe import parents_to_observe

    rt = _rt(ctx)
    desired = _with_datasets(rt, _load(rt, paths or [], allow_empty=allow_empty).models)
    client = _client(rt)
    store = _store(rt)
    with _locked(rt, store, "refresh", None):
        state = store.read(stack=rt.settings.stack)
        observation = _observer(rt, client)(parents_to_observe(desired, state))
        new_state = refresh_state(store, desired, observation, stack=rt.settings.stack, state=state,
                                  api=client, on_probe=_probe_reporter(rt))
    rt.info(f"State refreshed: {len(new_state.models)} model(s), serial {new_state.serial}.")
    return EXIT_OK


@app.command()
def status(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(help="Manifest files/folders (default: manifests/), and/or model names to show in depth.", show_default=False, metavar="[PATHS|NAME]...")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    watch: Annotated[bool, typer.Option("--watch", help="Keep refreshing until no job of the models is running.")] = False,
    metrics: Annotated[bool, typer.Option("--metrics", help="With NAME: read the tuning metrics files (gcsMetricsUri) from Cloud Storage.")] = False,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between refreshes of --watch (default: pollInterval).", show_default=False, callback=ABOVE_0)] = None,
    allow_empty: AllowEmptyOpt = False,
) -> int:
    """Desired versus actual: one row per model, plus the unmanaged jobs found; NAME in depth."""
    import time

    from reconciler.models import StateClass
    from reconciler.observe import parents_to_observe
    from reconciler.plan import compute_plan, jobs_by_name
    from reconciler.status import model_detail, model_detail_text, status_rows, status_table

    rt = _rt(ctx)
    given = args or []
    paths = [Path(a) for a in given if Path(a).exists()]
    names = [a for a in given if not Path(a).exists()]
    desired = _with_datasets(rt, _load(rt, paths, allow_empty=allow_empty or bool(names)).models)
    client = _client(rt)
    state = _store(rt).read(stack=rt.settings.stack)
    known = {d.name for d in desired} | set(state.models)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ReconcilerError(f"no file, folder or model named {', '.join(map(repr, unknown))}")
    observe = _observer(rt, client)
    parents = parents_to_observe(desired, state)
    def snapshot() -> tuple[Any, int, int]:
        """The view, and how many of the models with jobs have only final jobs, of how many."""
        observation = observe(parents)
        the_plan = compute_plan(desired, observation, state, stack=rt.settings.stack, strict=False,
                                prune=_prunes(rt, paths, False))
        owned = jobs_by_name(observation, rt.settings.stack, state)
        watched = [n for n in owned if not names or n in names]
        running = sum(1 for n in watched
                      if any(j.state_class in (StateClass.LIVE, StateClass.CANCELLING) for j in owned[n]))
        done, total = len(watched) - running, len(watched)
        if names:
            details = [model_detail(n, owned.get(n, []), the_plan, state) for n in names]
            if metrics:
                from reconciler.metrics import read_metrics

                for detail in details:
                    uri = next((j["gcs_metrics_uri"] for j in detail["jobs"] if j["gcs_metrics_uri"]), None)
                    detail["metrics"] = read_metrics(_storage(rt), uri).lines() if uri else []
            if fmt == "json":
                return json.dumps(details, indent=2), done, total
            from rich.console import Group

            return Group(*[model_detail_text(d) for d in details]), done, total
        rows, others = status_rows(the_plan, observation, state)
        if fmt == "json":
            return json.dumps({"models": rows, "unmanaged": others, "errors": the_plan.errors}, indent=2), done, total
        return status_table(rows, others, rt.settings.stack), done, total

    if fmt not in ("text", "json"):
        raise ConfigError(f"--format must be text or json, not {fmt!r}")
    view, done, total = snapshot()
    if not watch:
        if isinstance(view, str):
            typer.echo(view)
        else:
            rt.out.print(view)
        return EXIT_OK
    from reconciler.progress import elapsed_text

    pause = interval or rt.settings.poll_interval
    start = time.monotonic()
    if rt.out.is_terminal and fmt == "text":
        from rich.console import Group
        from rich.live import Live
        from rich.text import Text

        def framed() -> Any:
            head = f"{done}/{total} model(s) final · {elapsed_text(time.monotonic() - start)} elapsed"
            return Group(Text(head + (" · done" if done == total else ""), style="bold"), view)

        with Live(framed(), console=rt.out, refresh_per_second=2) as live:
            while done < total:
                # Sleep in short steps so the elapsed time keeps moving between refreshes.
                until = time.monotonic() + pause
                while (left := until - time.monotonic()) > 0:
                    time.sleep(min(left, 1.0))
                    live.update(framed())
                view, done, total = snapshot()
                live.update(framed())
        return EXIT_OK
    last = None
    while True:
        text = view if isinstance(view, str) else _plain(rt, view)
        if text != last:
            if fmt == "text":  # a log: each new table under its time and progress
                typer.echo(f"[{elapsed_text(time.monotonic() - start)}] {done}/{total} model(s) final")
            typer.echo(text)
            last = text
        if done == total:
            return EXIT_OK
        time.sleep(pause)
        view, done, total = snapshot()


def _plain(rt: Runtime, renderable: Any) -> str:
    with rt.out.capture() as capture:
        rt.out.print(renderable)
    return capture.get()


@app.command()
def output(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One model (default: all).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or env (KEY=value lines).")] = "json",
) -> int:
    """Print the tuned models' endpoints from the state (no API call)."""
    rt = _rt(ctx)
    state = _store(rt).read(stack=rt.settings.stack)
    entries = state.models
    if name is not None:
        if name not in entries:
            raise ReconcilerError(f"no model named {name!r} in the state {rt.settings.state}")
        entries = {name: entries[name]}
    data = {
        n: {"endpoint": e.tuned_model.endpoint if e.tuned_model else None,
            "model": e.tuned_model.model if e.tuned_model else None,
            "job": e.serving_job, "state": e.state}
        for n, e in entries.items()
    }
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2))
    elif fmt == "env":
        for n, d in data.items():
            key = n.upper().replace("-", "_")
            typer.echo(f"{key}_ENDPOINT={d['endpoint'] or ''}")
            typer.echo(f"{key}_MODEL={d['model'] or ''}")
    else:
        raise ConfigError(f"--format must be json or env, not {fmt!r}")
    return EXIT_OK


@app.command("import")
def import_(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The tuning job's resource name: projects/P/locations/R/tuningJobs/ID.")],
    name: Annotated[str, typer.Option("--name", help="The manifest (metadata.name) that adopts the job.")],
    paths: PathsArg = None,
    lock_timeout: LockTimeoutOpt = None,
) -> int:
    """Adopt an existing tuning job into the state and into management, without re-creating it."""
    from reconciler.adopt import adopt_job

    rt = _rt(ctx)
    desired = {d.name: d for d in _with_datasets(rt, _load(rt, paths or []).models)}
    if name not in desired:
        raise ReconcilerError(f"no manifest named {name!r}: write its manifest first, then import the job into it")
    client = _client(rt)
    store = _store(rt)
    with _locked(rt, store, "import", lock_timeout):
        state = store.read(stack=rt.settings.stack)
        result = adopt_job(client, store, state, desired[name], job, stack=rt.settings.stack,
                           observe=_observer(rt, client))
    rt.info(result)
    return EXIT_OK


state_app = typer.Typer(help="Move the state between a local file and remote storage.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("pull")
def state_pull(ctx: typer.Context) -> int:
    """Print the current state (local or gs://) as JSON on stdout, e.g. `> local.json`."""
    from reconciler.state.local import serialize_state

    rt = _rt(ctx)
    state = _store(rt).read(stack=rt.settings.stack)
    if not state.serial:
        raise ReconcilerError(f"no state at {rt.settings.state}")
    typer.echo(serialize_state(state).decode(), nl=False)
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
    from reconciler.state.local import parse_state, read_regular

    rt = _rt(ctx)
    data = read_regular(path, "state file to push")  # never blocks on a FIFO, never reads a huge file
    if data is None:
        raise ReconcilerError(f"{path}: no such file")
    pushed = parse_state(data, str(path))
    if pushed.stack != rt.settings.stack:
        raise ReconcilerError(f"{path} is the state of stack {pushed.stack!r}, not {rt.settings.stack!r}")
    store = _store(rt)
    with _locked(rt, store, "state push", lock_timeout):
        current = store.read(stack=rt.settings.stack)
        if current.serial and not force:
            if current.lineage != pushed.lineage:
                raise ReconcilerError(f"{store.describe()} has another lineage ({current.lineage}) than {path} "
                                      f"({pushed.lineage}): they are different states. Use --force to overwrite.")
            if current.serial > pushed.serial:
                raise ReconcilerError(f"{store.describe()} is newer (serial {current.serial}) than {path} "
                                      f"(serial {pushed.serial}). Use --force to overwrite.")
            if current.serial == pushed.serial and current.models != pushed.models:
                raise ReconcilerError(f"{store.describe()} and {path} have the same serial ({current.serial}) but "
                                      "different content: they diverged. Use --force to overwrite.")
        written = store.write(pushed.model_copy(update={"serial": max(current.serial, pushed.serial)}))
    rt.info(f"Pushed {path} to {store.describe()} (serial {written.serial}).")
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
    store = _store(rt)
    store.force_unlock(lock_id)
    rt.info(f"Lock {lock_id} on {store.describe()} removed.")
    return EXIT_OK


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).", min=0, max=65535)] = 8080,
    data: Annotated[Path | None, typer.Option(help="Keep jobs in this file across restarts.", show_default=False)] = None,
    pending_seconds: Annotated[float, typer.Option(help="Seconds a job stays PENDING.", callback=AT_LEAST_0)] = 5.0,
    running_seconds: Annotated[float, typer.Option(help="Seconds a job stays RUNNING.", callback=AT_LEAST_0)] = 60.0,
    cancelling_seconds: Annotated[float, typer.Option(help="Seconds a job stays CANCELLING.", callback=AT_LEAST_0)] = 2.0,
    clock: Annotated[str, typer.Option(help="real, or manual (time moves only by POST /_emulator/advance).")] = "real",
    latency_ms: Annotated[float, typer.Option(help="Latency added to every API request.", callback=AT_LEAST_0)] = 0.0,
    rate_503: Annotated[float, typer.Option("--rate-503", help="Fraction of API requests answered 503.", callback=FRACTION)] = 0.0,
    rate_429: Annotated[float, typer.Option("--rate-429", help="Fraction answered 429 with Retry-After.", callback=FRACTION)] = 0.0,
    lost_create_rate: Annotated[float, typer.Option(help="Fraction of creates whose response is lost (the job is made).", callback=FRACTION)] = 0.0,
    fault_seed: Annotated[int | None, typer.Option(help="Seed for fault injection.", show_default=False)] = None,
    submissions_per_minute: Annotated[int, typer.Option(help="Create quota per project and region (0: none).", min=0)] = 60,
    requests_per_minute: Annotated[int, typer.Option(help="Request quota per project and region (0: none).", min=0)] = 600,
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
    serve(host, port, Backend(config))
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
        # A usage error (unknown option, bad value): the message and where to read more. Exit 1,
        # not click's 2: with `plan --detailed-exitcode`, 2 means "changes", and a mistyped flag in
        # CI must not read as a plan with changes.
        if type(exc).__name__ == "NoArgsIsHelpError":  # no command given: the help, as click shows it
            typer.echo(exc.format_message(), err=True)  # type: ignore[attr-defined]
            return EXIT_ERROR
        typer.echo(f"Error: {exc.format_message()}", err=True)  # type: ignore[attr-defined]
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            typer.echo(f"Try '{ctx.command_path} --help' for help.", err=True)
        return EXIT_ERROR
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
