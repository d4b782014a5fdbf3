"""Commands that manage the state and the manifests: import, state …, fmt, schema, force-unlock,
and the local emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reconciler.cli.app import (
    AT_LEAST_0,
    EXIT_ERROR,
    EXIT_OK,
    FRACTION,
    LockTimeoutOpt,
    PathsArg,
    _rt,
    app,
)
from reconciler.errors import ConfigError

if TYPE_CHECKING:
    pass


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
