"""Commands that look: probe, status (and --watch), output, models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler.cli.app import (
    EXIT_ERROR,
    EXIT_OK,
    INTERVAL,
    AllowEmptyOpt,
    Runtime,
    _rt,
    app,
)
from reconciler.errors import ConfigError

if TYPE_CHECKING:
    pass


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
