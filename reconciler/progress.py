"""Live progress of running tuning jobs (`apply --wait`): a rich table on a TTY, else one line
per state change (CI logs stay readable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from reconciler.models import StateClass, short_state
from reconciler.plan import Observation, tracked
from reconciler.state.model import State

STYLE = {
    StateClass.LIVE: "yellow",
    StateClass.CANCELLING: "magenta",
    StateClass.SUCCEEDED: "green",
    StateClass.FAILED: "red",
    StateClass.CANCELLED: "dim",
    StateClass.UNKNOWN: "red",
}


def elapsed_text(seconds: float) -> str:
    """H:MM:SS."""
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class JobProgress:
    """Context manager fed with observations; renders the newest job this state tracks per model
    (`plan.tracked`: never another checkout's job, nor a duplicate being cancelled). Give it
    `Plan.watched_names`."""

    def __init__(self, console: Console, stack: str, names: set[str], state: State) -> None:
        self.console = console
        self.state = state
        self.stack = stack
        self.names = names
        self.start = time.monotonic()
        self.last: dict[str, str] = {}
        self.live: Live | None = None

    def __enter__(self) -> JobProgress:
        if self.console.is_terminal:
            self.live = Live(Table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.__exit__(et, e, tb)

    def _rows(self, observation: Observation) -> list[tuple[str, Any]]:
        owned = tracked(observation, self.stack, self.state)
        newest = {name: max(owned[name], key=lambda j: j.sort_key) for name in self.names if owned.get(name)}
        return sorted(newest.items())

    def update(self, observation: Observation) -> None:
        rows = self._rows(observation)
        done = sum(1 for _, j in rows if j.state_class not in (StateClass.LIVE, StateClass.CANCELLING))
        elapsed = elapsed_text(time.monotonic() - self.start)
        if self.live is not None:
            table = Table(title=f"stack {self.stack}: {done}/{len(rows)} final · {elapsed} elapsed")
            for column in ("model", "state", "job"):
                table.add_column(column, overflow="fold")
            for name, job in rows:
                table.add_row(escape(name), f"[{STYLE[job.state_class]}]{short_state(job.state)}[/]", escape(job.name))
            self.live.update(table)
            return
        for name, job in rows:
            label = f"{short_state(job.state)} {job.name}"
            if self.last.get(name) != label:
                self.last[name] = label
                self.console.print(f"[{elapsed}] {escape(name)}: {escape(label)}", highlight=False)


class JsonProgress(JobProgress):
    """The same progress as JSON Lines events (`apply --wait --json`): one `poll` event each time
    a model's newest job changes state, for CI tooling that reads stdout line by line."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], stack: str, names: set[str], state: State) -> None:
        super().__init__(Console(file=None, quiet=True), stack, names, state)
        self.emit = emit

    def __enter__(self) -> JobProgress:
        return self

    def update(self, observation: Observation) -> None:
        rows = self._rows(observation)
        models = {name: {"job": job.name, "state": job.state} for name, job in rows}
        snapshot = {name: m["state"] for name, m in models.items()}
        if snapshot == self.last:
            return
        self.last = snapshot
        done = sum(1 for _, j in rows if j.state_class not in (StateClass.LIVE, StateClass.CANCELLING))
        self.emit({"event": "poll", "elapsed_s": round(time.monotonic() - self.start, 1), "final": done,
                   "total": len(rows), "models": models})
