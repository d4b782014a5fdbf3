"""Plans and outcomes → text, JSON and markdown strings. Pure: no I/O, no colour decisions.

Text uses rich markup (`[green]…[/]`); the CLI prints it with or without colour. Markdown stays
under GitHub's comment limit however large the plan: the summary comes first, details are folded,
and anything cut is said plainly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from rich.markup import escape
from typing_extensions import assert_never

from reconciler.plan import ACTIONS, Action, Change, CreateJob, FieldChange, Plan

GITHUB_COMMENT_LIMIT = 65_536


class Style(NamedTuple):
    symbol: str
    colour: str
    rank: int  # order of the groups in a plan


def style(action: Action) -> Style:
    """How an action is shown. Exhaustive: a new action without a style fails the type check."""
    match action:
        case Action.REPLACE:
            return Style("-/+", "yellow", 0)
        case Action.RECREATE:
            return Style("+", "green", 1)
        case Action.CREATE:
            return Style("+", "green", 2)
        case Action.MOVE:
            return Style("→", "cyan", 3)
        case Action.CANCEL:
            return Style("-", "red", 4)
        case Action.FORGET:
            return Style("~", "cyan", 5)
        case Action.NOOP:
            return Style(" ", "dim", 6)
        case _:
            assert_never(action)


ORDER: tuple[Action, ...] = tuple(sorted(ACTIONS, key=lambda a: style(a).rank))


def _where(plan: Plan) -> str:
    return f"stack {plan.stack}" + (f", environment {plan.environment}" if plan.environment else "")


def summary_line(plan: Plan) -> str:
    s = plan.summary()
    failed = sum(1 for c in plan.changes if c.action is Action.NOOP and c.error)
    if not plan.has_changes:
        if failed:
            return (f"No changes. {s['noop'] - failed} model(s) up to date or in progress, {failed} failed "
                    f"({_where(plan)}).")
        return f"No changes. {s['noop']} model(s) up to date or in progress ({_where(plan)})."
    parts = [f"{s[a.value]} to {a.value}" for a in ACTIONS if a is not Action.NOOP and s[a.value]]
    line = f"Plan: {', '.join(parts)}; {s['noop']} unchanged ({_where(plan)})."
    if s["jobs_to_cancel"]:
        line += f" This plan cancels {s['jobs_to_cancel']} running job(s)."
    if any(c.cost_usd is not None for c in plan.creates):
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


def natural(name: str) -> tuple[Any, ...]:
    """`model-2` before `model-10`: names sort by their numbers as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _grouped(changes: Iterable[Change]) -> list[tuple[Action, list[Change]]]:
    changes = sorted(changes, key=lambda c: natural(c.name))
    return [(a, [c for c in changes if c.action is a]) for a in ORDER if any(c.action is a for c in changes)]


def _change_lines(c: Change) -> list[str]:
    """The detail lines of one change in the text plan (markup)."""
    lines = []
    if c.job:
        lines.append(f"        job: {escape(c.job)}" + (f" ({c.job_state.removeprefix('JOB_STATE_')})" if c.job_state else ""))
    if isinstance(c, CreateJob):
        lines.append(f"        into: {escape(c.parent or '')}  base model: {escape(str(c.request.get('baseModel')))}")
        if c.cost_usd is not None:
            lines.append(f"        est. cost: ${c.cost_usd:,.2f} ({escape(c.cost_note or '')})")
        lines += [f"        [yellow]{escape(diff_line(f))}[/]" for f in c.diff]
        lines += [f"        [red]cancels {escape(job)}[/]" for job in c.cancel_jobs]
    if c.error:
        lines.append(f"        [red]error: {escape(c.error)}[/]")
    lines += [f"        [cyan]note: {escape(note)}[/]" for note in c.notes]
    return lines


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
        shown = [c for c in changes if action is not Action.NOOP or show_noop or c.notes or c.error]
        if not shown:
            continue
        lines.append("")
        look = style(action)
        for c in shown:
            head = f"  [{look.colour}]{look.symbol:>3} {action.value:<8}[/] [bold]{escape(c.name)}[/]"
            lines.append(head + f"  [dim]{escape(c.reason)}[/]")
            lines += _change_lines(c)
    for w in plan.warnings:
        lines.append(f"[yellow]Warning: {escape(w)}[/]")
    return "\n".join(lines)


def plan_json(plan: Plan) -> str:
    """The documented JSON form (docs/plan-format.md): `changes` and `summary` at the top."""
    body = plan.model_dump(mode="json")
    body["summary"] = plan.summary()
    order = ["format_version", "tool_version", "stack", "summary", "changes", "warnings", "parents",
             "targets", "replace", "prune", "prune_unrecorded", "environment", "state_lineage", "state_serial", "fingerprint"]
    return json.dumps({k: body[k] for k in order if k in body}, indent=2, ensure_ascii=False)


def _diff(c: Change) -> list[FieldChange]:
    return c.diff if isinstance(c, CreateJob) else []


FENCE = "`" * 3


def error_markdown(stack: str, message: str, problems: list[str]) -> str:
    """A PR comment for a plan that could not be made."""
    body = "\n".join([*problems, f"Error: {message}"]).replace(FENCE, "'" * 3)
    return (f"### Tuning plan for stack `{stack}`\n\n**The plan could not be made.** Nothing will be applied "
            f"until this is fixed:\n\n{FENCE}\n{body}\n{FENCE}")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def plan_markdown(plan: Plan, *, limit: int = GITHUB_COMMENT_LIMIT - 1_536) -> str:
    """A PR comment: summary first, a table, details folded; never longer than `limit`."""
    s = plan.summary()
    head = [f"### Tuning plan for stack `{plan.stack}`" + (f" (environment `{plan.environment}`)" if plan.environment else ""), "", f"**{_md_escape(summary_line(plan))}**", "",
            _md_escape(scope_line(plan)), ""]
    counts = " · ".join(f"{s[a.value]} {a.value}" for a in ACTIONS)
    head += [counts, ""]
    body: list[str] = []
    for action, changes in _grouped(plan.changes):
        if action is Action.NOOP and not any(c.notes or c.error for c in changes):
            body.append(f"<details><summary>{len(changes)} unchanged</summary>\n")
            body += [f"- `{c.name}`: {_md_escape(c.reason)}" for c in changes]
            body.append("\n</details>\n")
            continue
        body.append(f"#### {action.value} ({len(changes)})\n")
        costed = any(isinstance(c, CreateJob) and c.cost_usd is not None for c in changes)
        body.append("| model | reason | job |" + (" est. cost |" if costed else ""))
        body.append("|---|---|---|" + ("---|" if costed else ""))
        for c in changes:
            usd = c.cost_usd if isinstance(c, CreateJob) else None
            cost = (f" ${usd:,.2f} |" if usd is not None else " – |") if costed else ""
            body.append(f"| `{c.name}` | {_md_escape(c.reason)} | {_md_escape(_short(c.job))} |{cost}")
        details = [c for c in changes if _diff(c) or c.notes or c.error or c.jobs_to_cancel]
        if details:
            body.append("\n<details><summary>details</summary>\n")
            for c in details:
                body.append(f"**`{c.name}`**\n")
                lines = [diff_line(f) for f in _diff(c)]
                lines += [f"cancels {j}" for j in c.jobs_to_cancel if c.action is not Action.CANCEL]
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
