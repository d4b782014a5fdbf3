"""`reconciler status`: desired versus actual, per model, and the unmanaged jobs seen."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from reconciler.models import short_state
from reconciler.plan import Observation, Plan
from reconciler.state.model import State


def status_rows(plan: Plan, observation: Observation, state: State) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per model name the plan covers; plus every job not owned by this stack."""
    rows: list[dict[str, Any]] = []
    for change in plan.changes:
        entry = state.models.get(change.name)
        rows.append({
            "name": change.name,
            "action": change.action,
            "reason": change.reason,
            "job": change.job,
            "state": change.job_state,
            "endpoint": entry.tuned_model.endpoint if entry and entry.tuned_model else None,
            "error": change.error,
        })
    others = [
        {"job": j.name, "state": j.state, "display_name": j.display_name,
         "owner": f"stack {j.stack}" if j.managed else "unmanaged"}
        for j in observation.jobs
        if not (j.managed and j.stack == plan.stack)
    ]
    return rows, others


def status_table(rows: list[dict[str, Any]], others: list[dict[str, Any]], stack: str) -> Table:
    table = Table(title=f"stack {stack}: {len(rows)} model(s); {len(others)} other job(s) in the same regions")
    for column in ("model", "state", "next action", "job", "endpoint"):
        table.add_column(column, overflow="fold")
    for r in rows:
        action = r["action"] if r["action"] != "noop" else "-"
        table.add_row(escape(r["name"]), short_state(r["state"]) if r["state"] else "-", escape(f"{action}: {r['reason']}"),
                      escape(r["job"] or "-"), escape(r["endpoint"] or "-"))
    for o in others[:50]:
        table.add_row(f"[dim]({escape(o['owner'])})[/]", short_state(o["state"]), "-", escape(o["job"]), "-")
    if len(others) > 50:
        table.add_row(f"[dim]… {len(others) - 50} more[/]", "", "", "", "")
    return table
