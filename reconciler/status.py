"""`reconciler status`: desired versus actual, per model, and the unmanaged jobs seen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from reconciler.models import ObservedJob, short_state
from reconciler.plan import Observation, OwnedJob, Plan, cancelled
from reconciler.state.model import State


def status_rows(plan: Plan, observation: Observation, state: State) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per model name the plan covers; plus every job not owned by this stack."""
    from reconciler.render import natural

    rows: list[dict[str, Any]] = []
    for change in sorted(plan.changes, key=lambda c: natural(c.name)):
        entry = state.models.get(change.name)
        rows.append({
            "name": change.name,
            "action": change.action.value,
            "reason": change.reason,
            "job": change.job,
            "state": change.job_state,
            "endpoint": entry.tuned_model.endpoint if entry and entry.tuned_model else None,
            "error": change.error,
        })
    adopted = {job for e in state.models.values() for job in e.adopted}  # shown in their model's row
    others = [
        {"job": j.name, "state": j.state, "display_name": j.display_name,
         "owner": f"stack {j.stack}" if j.managed else "unmanaged"}
        for j in observation.jobs
        if not (j.managed and j.stack == plan.stack) and j.name not in adopted
    ]
    return rows, others


def short_name(resource: str | None) -> str:
    """`projects/…/tuningJobs/123` → `tuningJobs/123` (tables; JSON keeps full names)."""
    if not resource:
        return "-"
    parts = resource.split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else resource


def short_time(timestamp: str | None) -> str:
    return timestamp[:19].replace("T", " ") if timestamp else "-"


def status_table(rows: list[dict[str, Any]], others: list[dict[str, Any]], stack: str) -> Table:
    table = Table(title=f"stack {stack}: {len(rows)} model(s); {len(others)} other job(s) in the same regions")
    for column in ("model", "state", "next action", "job", "endpoint"):
        table.add_column(column, overflow="fold")
    for r in rows:
        action = r["action"] if r["action"] != "noop" else "-"
        table.add_row(escape(r["name"]), short_state(r["state"]) if r["state"] else "-", escape(f"{action}: {r['reason']}"),
                      escape(short_name(r["job"])), escape(short_name(r["endpoint"])))
    for o in others[:50]:
        table.add_row(f"[dim]({escape(o['owner'])})[/]", short_state(o["state"]), "-", escape(short_name(o["job"])), "-")
    if len(others) > 50:
        table.add_row(f"[dim]… {len(others) - 50} more[/]", "", "", "", "")
    return table


def _num(value: Any) -> str:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def data_stats_lines(stats: dict[str, Any]) -> list[str]:
    """A summary of `tuningDataStats.supervisedTuningDataStats` (or, for preference tuning,
    `preferenceOptimizationDataStats`): counts and token distributions."""
    sup = stats.get("supervisedTuningDataStats") or stats.get("preferenceOptimizationDataStats") or {}
    if not isinstance(sup, dict) or not sup:
        return []
    labels = [
        ("tuningDatasetExampleCount", "examples"),
        ("totalBillableTokenCount", "billable tokens"),
        ("totalTuningCharacterCount", "characters"),
        ("tuningStepCount", "tuning steps"),
        ("totalTruncatedExampleCount", "truncated examples"),
    ]
    counts = [f"{label} {_num(sup[key])}" for key, label in labels if key in sup]
    lines = ["; ".join(counts)] if counts else []
    for key, label in (("userInputTokenDistribution", "input tokens per example"),
                       ("userOutputTokenDistribution", "output tokens per example"),
                       ("userMessagePerExampleDistribution", "messages per example")):
        dist = sup.get(key)
        if isinstance(dist, dict) and dist:
            parts = [f"{k} {_num(dist[k])}" for k in ("mean", "median", "p5", "p95", "max") if k in dist]
            lines.append(f"{label}: {', '.join(parts)}")
    dropped = sup.get("droppedExampleReasons")
    if isinstance(dropped, list) and dropped:
        lines.append(f"dropped examples: {'; '.join(str(d) for d in dropped[:5])}")
    return lines


def model_detail(name: str, owned: list[OwnedJob], plan: Plan, state: State) -> dict[str, Any]:
    """Everything known of one model: the planned action, the endpoint, its jobs over time."""
    change = next((c for c in plan.changes if c.name == name), None)
    entry = state.models.get(name)
    hashes = {o.name: o.spec_hash for o in owned}
    despite = {o.name for o in cancelled.completed_despite_cancel(owned, entry)} | set(
        entry.completed_despite_cancel if entry else [])
    ordered = sorted((o.job for o in owned), key=lambda j: j.sort_key, reverse=True)
    latest_stats = next((j for j in ordered if j.tuning_data_stats), None)
    return {
        "name": name,
        "action": change.action.value if change else None,
        "reason": change.reason if change else None,
        "endpoint": entry.tuned_model.endpoint if entry and entry.tuned_model else None,
        "serving_job": entry.serving_job if entry else None,
        "jobs": [
            {"job": j.name, "state": j.state, "spec_hash": hashes[j.name], "create_time": j.create_time,
             "start_time": j.start_time or None, "end_time": j.end_time or None,
             "error": j.error_message, "endpoint": j.endpoint, "experiment": j.experiment,
             "gcs_metrics_uri": j.gcs_metrics_uri, "completed_despite_cancel": j.name in despite}
            for j in ordered
        ],
        "tuning_data_stats": latest_stats.tuning_data_stats if latest_stats else None,
        "tuning_data_stats_job": latest_stats.name if latest_stats else None,
        **_checkpoints_and_evaluations(ordered, entry.serving_job if entry else None),
        "serving_checkpoint": (entry.tuned_model.model_extra or {}).get("checkpointId")
        if entry and entry.tuned_model else None,
    }


def _checkpoints_and_evaluations(ordered: list[ObservedJob], serving: str | None) -> dict[str, Any]:
    """The checkpoints (`tunedModel.checkpoints`) and evaluation runs (`evaluateDatasetRuns`) of
    the serving job, else of the newest job that has them, as the API shows them."""
    def pick(has: Callable[[ObservedJob], bool]) -> ObservedJob | None:
        return next((j for j in ordered if j.name == serving and has(j)), None) or next(
            (j for j in ordered if has(j)), None)

    with_checkpoints = pick(lambda j: bool(j.checkpoints))
    evaluated = pick(lambda j: bool(j.evaluations))
    return {
        "checkpoints": [dict(c) for c in with_checkpoints.checkpoints] if with_checkpoints else [],
        "checkpoints_job": with_checkpoints.name if with_checkpoints else None,
        "evaluations": [evaluation_summary(r) for r in evaluated.evaluations] if evaluated else [],
        "evaluations_job": evaluated.name if evaluated else None,
    }


_METRIC_RESULTS = ("pointwiseMetricResult", "pairwiseMetricResult", "exactMatchMetricValue", "bleuMetricValue",
                   "rougeMetricValue", "customCodeExecutionResult")


def evaluation_summary(run: dict[str, Any]) -> dict[str, Any]:
    """One `EvaluateDatasetRun` in short: its checkpoint, its aggregated scores, where the
    outputs are, its error."""
    response = run.get("evaluateDatasetResponse") or {}
    results = (response.get("aggregationOutput") or {}).get("aggregationResults") or []
    scores = []
    for result in results if isinstance(results, list) else []:
        kind = next((k for k in _METRIC_RESULTS if isinstance(result.get(k), dict)), None)
        value = (result.get(kind) or {}) if kind else {}
        scores.append({"metric": kind, "aggregation": result.get("aggregationMetric"),
                       "score": value.get("score")})
    error = run.get("error") or {}
    return {"checkpoint_id": run.get("checkpointId"), "scores": scores,
            "output": (response.get("outputInfo") or {}).get("gcsOutputDirectory"),
            "evaluation_run": run.get("evaluationRun") or run.get("operationName"),
            "error": error.get("message") if isinstance(error, dict) else None}


def _checkpoint_parts(d: dict[str, Any]) -> list[Any]:
    if not d.get("checkpoints"):
        return []
    table = Table(title=f"checkpoints of {short_name(d['checkpoints_job'])} (tunedModel.checkpoints)",
                  title_justify="left")
    for column in ("checkpoint", "epoch", "step", "endpoint", ""):
        table.add_column(column, overflow="fold")
    for c in d["checkpoints"]:
        mark = "serving" if d.get("serving_checkpoint") == str(c.get("checkpointId")) else ""
        table.add_row(escape(str(c.get("checkpointId", "-"))), _num(c.get("epoch", "-")), _num(c.get("step", "-")),
                      escape(short_name(c.get("endpoint"))), mark)
    return [table]


def _evaluation_parts(d: dict[str, Any]) -> list[Any]:
    if not d.get("evaluations"):
        return []
    table = Table(title=f"evaluation of {short_name(d['evaluations_job'])} (evaluateDatasetRuns)",
                  title_justify="left")
    for column in ("checkpoint", "scores", "output", "error"):
        table.add_column(column, overflow="fold")
    for run in d["evaluations"]:
        scores = "; ".join(f"{(s['metric'] or 'metric').removesuffix('Result').removesuffix('Value')} "
                           f"{(s['aggregation'] or '').lower()} {s['score'] if s['score'] is not None else '-'}"
                           for s in run["scores"]) or "-"
        table.add_row(escape(str(run["checkpoint_id"] or "-")), escape(scores), escape(run["output"] or "-"),
                      escape(run["error"] or ""))
    return [table]


def model_detail_text(d: dict[str, Any]) -> Group:
    """The in-depth view of `status NAME`."""
    parts: list[Any] = [
        f"[bold]{escape(d['name'])}[/]  next action: {escape(str(d['action']))} — {escape(str(d['reason']))}",
        f"endpoint in service: {escape(d['endpoint'] or '-')}" + (f"  (job {escape(d['serving_job'])})" if d["serving_job"] else "")
        + (f", checkpoint {escape(d['serving_checkpoint'])}" if d.get("serving_checkpoint") else ""),
    ]
    table = Table(title="jobs, newest first", title_justify="left")
    for column in ("created", "state", "spec", "ended", "job", "error"):
        table.add_column(column, overflow="fold")
    for j in d["jobs"]:
        state = short_state(j["state"]) + (" (despite cancel)" if j.get("completed_despite_cancel") else "")
        table.add_row(short_time(j["create_time"]), state, escape(j["spec_hash"] or "-"),
                      short_time(j["end_time"]), escape(short_name(j["job"])), escape(j["error"] or ""))
    parts.append(table)
    if d["tuning_data_stats"]:
        parts.append(f"tuning data (tuningDataStats of {escape(d['tuning_data_stats_job'])}):")
        parts += [f"  {escape(line)}" for line in data_stats_lines(d["tuning_data_stats"])]
    parts += _checkpoint_parts(d) + _evaluation_parts(d)
    metrics = [j for j in d["jobs"] if j["experiment"] or j["gcs_metrics_uri"]]
    if metrics:
        m = metrics[0]
        parts.append(
            "metrics (train/eval total loss, fraction of correct next-step predictions, number of "
            f"predictions) of {escape(m['job'])}: experiment {escape(m['experiment'] or '-')}; "
            f"files {escape(m['gcs_metrics_uri'] or '-')}"
        )
        if d.get("metrics") is not None:
            parts += [f"  {escape(line)}" for line in d["metrics"]]
        else:
            parts.append("  (add --metrics to read and summarise the files from Cloud Storage)")
    return Group(*parts)
