"""Plans and outcomes → text, JSON and markdown strings. Pure: no I/O, no colour decisions.

Text uses rich markup (`[green]…[/]`); the CLI prints it with or without colour. Markdown stays
under GitHub's comment limit however large the plan: the summary comes first, details are folded,
and anything cut is said plainly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.markup import escape

from reconciler.plan import ACTIONS, Change, FieldChange, Plan

SYMBOLS = {"create": "+", "replace": "-/+", "recreate": "+", "move": "→", "cancel": "-", "forget": "~", "noop": " "}
COLOURS = {"create": "green", "replace": "yellow", "recreate": "green", "move": "cyan", "cancel": "red",
           "forget": "cyan", "noop": "dim"}
GITHUB_COMMENT_LIMIT = 65_536
ORDER = ("replace", "recreate", "create", "move", "cancel", "forget", "noop")


def summary_line(plan: Plan) -> str:
    s = plan.summary()
    if not plan.has_changes:
        return f"No changes. {s['noop']} model(s) up to date or in progress (stack {plan.stack})."
    parts = [f"{s[a]} to {a}" for a in ("create", "replace", "recreate", "move", "cancel", "forget") if s[a]]
    line = f"Plan: {', '.join(parts)}; {s['noop']} unchanged (stack {plan.stack})."
    if s["jobs_to_cancel"]:
        line += f" This plan cancels {s['jobs_to_cancel']} running job(s)."
    if any(c.cost_usd is not None for c in plan.changes):
        unknown = f", {s['cost_unknown']} without estimate" if s["cost_unknown"] else ""
        line += f" Estimated tuning cost: ${s['estimated_cost_usd']:,.2f}{unknown} (an estimate)."
    return line


def _value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v


def diff_line(f: FieldChange) -> str:
    if f.kind == "added":
        return f"+ {f.path}: {_value(f.new)}"
    if f.kind == "removed":
        return f"- {f.path}: {_value(f.old)}"
    return f"~ {f.path}: {_value(f.old)} → {_value(f.new)}"


def _short(name: str | None) -> str:
    return name or ""


def _grouped(changes: Iterable[Change]) -> list[tuple[str, list[Change]]]:
    changes = list(changes)
    return [(a, [c for c in changes if c.action == a]) for a in ORDER if any(c.action == a for c in changes)]


def scope_line(plan: Plan) -> str:
    """Which models the plan may remove: said in every format, since a subset of manifests must
    never read as the whole stack."""
    if plan.prune:
        text = "Scope: the whole manifest set; models without a manifest are removed."
    else:
        text = "Scope: a subset of the manifests; models without a manifest here are left alone (--prune removes them)."
    if plan.prune_unrecorded:
        text += " Running jobs this state has no record of are cancelled too (--prune-unrecorded)."
    return text


def plan_text(plan: Plan, *, show_noop: bool = False) -> str:
    """Human-readable plan with rich markup, grouped by action, counts in the first line."""
    lines = [f"[bold]{escape(summary_line(plan))}[/]", f"[dim]{escape(scope_line(plan))}[/]"]
    for action, changes in _grouped(plan.changes):
        if action == "noop" and not show_noop and not any(c.notes or c.error for c in changes):
            continue
        lines.append("")
        colour = COLOURS[action]
        for c in changes:
            if action == "noop" and not (show_noop or c.notes or c.error):
                continue
            head = f"  [{colour}]{SYMBOLS[action]:>3} {action:<8}[/] [bold]{escape(c.name)}[/]"
            lines.append(head + f"  [dim]{escape(c.reason)}[/]")
            if c.job:
                lines.append(f"        job: {escape(c.job)}" + (f" ({c.job_state.removeprefix('JOB_STATE_')})" if c.job_state else ""))
            if action in ("create", "replace", "recreate") and c.request:
                lines.append(f"        into: {escape(c.parent or '')}  base model: {escape(str(c.request.get('baseModel')))}")
                if c.cost_usd is not None:
                    lines.append(f"        est. cost: ${c.cost_usd:,.2f} ({escape(c.cost_note or '')})")
            for f in c.diff:
                lines.append(f"        [yellow]{escape(diff_line(f))}[/]")
            for job in c.cancel_jobs:
                if action != "cancel":
                    lines.append(f"        [red]cancels {escape(job)}[/]")
            if c.error:
                lines.append(f"        [red]error: {escape(c.error)}[/]")
            for note in c.notes:
                lines.append(f"        [cyan]note: {escape(note)}[/]")
    for w in plan.warnings:
        lines.append(f"[yellow]Warning: {escape(w)}[/]")
    return "\n".join(lines)


def plan_json(plan: Plan) -> str:
    """The documented JSON form (docs/plan-format.md): `changes` and `summary` at the top."""
    body = plan.model_dump(mode="json")
    body["summary"] = plan.summary()
    order = ["format_version", "tool_version", "stack", "summary", "changes", "warnings", "parents",
             "targets", "replace", "prune", "prune_unrecorded", "state_lineage", "state_serial", "fingerprint"]
    return json.dumps({k: body[k] for k in order if k in body}, indent=2, ensure_ascii=False)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def plan_markdown(plan: Plan, *, limit: int = GITHUB_COMMENT_LIMIT - 1_536) -> str:
    """A PR comment: summary first, a table, details folded; never longer than `limit`."""
    s = plan.summary()
    head = [f"### Tuning plan for stack `{plan.stack}`", "", f"**{_md_escape(summary_line(plan))}**", "",
            _md_escape(scope_line(plan)), ""]
    counts = " · ".join(f"{s[a]} {a}" for a in ACTIONS)
    head += [counts, ""]
    body: list[str] = []
    for action, changes in _grouped(plan.changes):
        if action == "noop" and not any(c.notes or c.error for c in changes):
            body.append(f"<details><summary>{len(changes)} unchanged</summary>\n")
            body += [f"- `{c.name}`: {_md_escape(c.reason)}" for c in changes]
            body.append("\n</details>\n")
            continue
        body.append(f"#### {action} ({len(changes)})\n")
        costed = any(c.cost_usd is not None for c in changes)
        body.append("| model | reason | job |" + (" est. cost |" if costed else ""))
        body.append("|---|---|---|" + ("---|" if costed else ""))
        for c in changes:
            cost = (f" ${c.cost_usd:,.2f} |" if c.cost_usd is not None else " – |") if costed else ""
            body.append(f"| `{c.name}` | {_md_escape(c.reason)} | {_md_escape(_short(c.job))} |{cost}")
        details = [c for c in changes if c.diff or c.notes or c.error or c.cancel_jobs]
        if details:
            body.append("\n<details><summary>details</summary>\n")
            for c in details:
                body.append(f"**`{c.name}`**\n")
                lines = [diff_line(f) for f in c.diff] + [f"cancels {j}" for j in c.cancel_jobs if c.action != "cancel"]
                lines += [f"error: {c.error}"] if c.error else []
                lines += [f"note: {n}" for n in c.notes]
                body.append("```diff\n" + "\n".join(lines).replace("```", "'''") + "\n```\n")
            body.append("</details>\n")
    if plan.warnings:
        body.append("#### warnings\n")
        body += [f"- {_md_escape(w)}" for w in plan.warnings]
    text = "\n".join(head + body)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size = len("\n".join(head))
    for line in body:
        if size + len(line) + 400 > limit:
            break
        kept.append(line)
        size += len(line) + 1
    cut = len(body) - len(kept)
    note = (f"\n\n> **Cut:** {cut} of {len(body)} detail lines are not shown (GitHub comments are limited "
            "to 65,536 characters). Run `reconciler plan --format json` for the full plan.")
    # Close a fold left open by the cut.
    opened = sum(line.count("<details>") for line in kept) - sum(line.count("</details>") for line in kept)
    fences = sum(line.count("```") for line in kept)
    closing = ("\n```" if fences % 2 else "") + ("\n</details>" * max(0, opened))
    return "\n".join(head + kept) + closing + note
