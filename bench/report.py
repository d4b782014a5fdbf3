"""The markdown report, rendered from the results dictionary (the same data as the JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.figures import LIBRARY_AFTER, LIBRARY_FLOOR


def seconds(value: float | None) -> str:
    """`0.0123` → `12.3 ms`, `61.2` → `61.20 s`."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def times(value: float | None) -> str:
    """A ratio as `1.23×`."""
    return "—" if value is None else f"{value:.2f}×"


def requests(counts: dict[str, int]) -> str:
    """`{"list": 12, "get": 0, …}` → `12 (12 list)`; list and get are always shown."""
    parts = [f"{n} {op}" for op, n in counts.items() if n or op in ("list", "get")]
    return f"{sum(counts.values())} ({', '.join(parts)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _wall(figure: dict[str, Any]) -> list[str]:
    return [seconds(figure["wall_s"]["median"]), seconds(figure["wall_s"]["min"])]


def _header(results: dict[str, Any]) -> list[str]:
    m, p = results["machine"], results["parameters"]
    bound = results["listing_bound"]
    commit = m["commit"] or "unknown"
    if m["uncommitted_changes"]:
        commit += " + uncommitted changes"
    managed = p["n"]
    return [
        "# vertex-tuning-reconciler benchmark",
        "",
        f"- Machine: {m['platform']} · Python {m['python']} · {m['cpus']} CPUs · {m['date']} · "
        f"commit {commit}",
        f"- Workload: N = {managed:,} manifests in {len(p['regions'])} regions "
        f"({', '.join(p['regions'])}); M = {managed + p['others']:,} jobs ({managed:,} of this stack, "
        f"matching; {p['others']:,} others, unmanaged or of another stack); {p['latency_ms']:g} ms "
        f"per API request; max page size {bound['max_page_size']:,}.",
        *([f"- Baseline (its `plan` measured beside this one's): {p['baseline']}"] if p.get("baseline") else []),
        *([f"- Bytecode of the measured `reconciler` compiled before timing, as an installed copy has it "
           f"(PYTHONDONTWRITEBYTECODE={m['PYTHONDONTWRITEBYTECODE']} here): {', '.join(m['bytecode_compiled'])}"]
          if m.get("bytecode_compiled") else []),
        f"- Each figure measured k = {p['repeat']} times in this run: median and min. Load average "
        f"(1, 5, 15 min) at start {m['load_average_at_start']}, at end {m['load_average_at_end']}.",
    ]


def _listing(results: dict[str, Any]) -> list[str]:
    bound, plan, observe, sdk = (results[k] for k in ("listing_bound", "plan", "observe", "sdk"))
    per_region = ", ".join(f"{r} {n:,}" for r, n in bound["jobs_by_region"].items())
    raw = bound["raw_client"]
    rows = [
        ["bound: minimal raw client (one httpx.Client, a thread per region)", *_wall(raw),
         requests(raw["requests"]), "1.00×", ""],
        ["`reconciler.observe.observe` in-process (plan's listing)", *_wall(observe),
         requests(observe["requests"]), times(observe["ratio_to_bound"]), ""],
        ["bound as a process: stdlib pager (bench/pager.py), Python start-up included",
         *_wall(bound["process"]), requests(bound["process"]["requests"]),
         times(ratio_of(bound["process"], raw)), f"{bound['process']['peak_rss_mb']['median']:.0f} MB"],
        *([[f"the same pager {LIBRARY_FLOOR} (their floor)", *_wall(bound["libraries"]),
            requests(bound["libraries"]["requests"]), times(ratio_of(bound["libraries"], raw)),
            f"{bound['libraries']['peak_rss_mb']['median']:.0f} MB"]] if bound.get("libraries") else []),
        *([[f"the same pager {LIBRARY_AFTER}", *_wall(bound["libraries_after"]),
            requests(bound["libraries_after"]["requests"]), times(ratio_of(bound["libraries_after"], raw)),
            f"{bound['libraries_after']['peak_rss_mb']['median']:.0f} MB"]] if bound.get("libraries_after") else []),
        [f"`reconciler plan --detailed-exitcode` (CLI process, exit {plan['exit_code']})", *_wall(plan),
         requests(plan["requests"]), times(plan["ratio_to_bound"]),
         f"{plan['peak_rss_mb']['median']:.0f} MB"],
    ]  # fmt: skip
    if sdk.get("available"):
        for mode, label in (("parallel", "regions in parallel threads"), ("sequential", "regions in sequence")):
            figure = sdk[mode]
            rows.append([f"google-genai `tunings.list`, {label}", *_wall(figure),
                         requests(figure["requests"]), times(figure["ratio_to_bound"]), ""])  # fmt: skip
    lines = [
        "",
        "## Listing: plan against the API's lower bound, and the official SDK",
        "",
        f"Pages that must be read: Σ over regions ⌈jobs/{bound['max_page_size']:,}⌉ = "
        f"**{bound['pages']} list requests** (jobs per region: {per_region}). Latency floor (the "
        f"deepest region's pages one after another): {seconds(bound['latency_floor_s'])}. "
        f"CPU the emulator spends serving one full listing: {seconds(bound['emulator_cpu_s'])} "
        "(its own cost, in a separate process, part of every listing below).",
        "",
        *_table(["what", "wall median", "wall min", "API requests", "ratio to bound", "peak RSS"], rows),
    ]
    if not sdk.get("available"):
        lines += ["", f"google-genai: {sdk['reason']}."]
    floor = (f"; against the pager {LIBRARY_FLOOR}: "
             f"{times(plan['ratio_to_library_bound'])}" if plan.get("ratio_to_library_bound") else "")
    lines += ["", f"Whole `plan` process against the bound as a process: "
              f"{times(plan['ratio_to_process_bound'])}{floor}; its CPU: {seconds(plan['cpu_s']['median'])} "
              f"(the stdlib pager's: {seconds(bound['process']['cpu_s']['median'])})."]
    lists = plan["requests"]["list"]
    verdict = "yes" if lists == bound["pages"] and plan["requests"]["get"] == 0 else "**no**"
    lines += [
        "",
        f"plan's list requests equal the page bound, with no per-job GET: {verdict} ({lists} list, "
        f"{plan['requests']['get']} get; the same in every run: {plan['requests_same_every_run']}).",
    ]
    return lines


def ratio_of(figure: dict[str, Any], base: dict[str, Any]) -> float | None:
    """The median wall of `figure` over that of `base`."""
    denominator = base["wall_s"]["median"]
    return figure["wall_s"]["median"] / denominator if denominator else None


def _regime_row(r: dict[str, Any]) -> list[str]:
    bound, process, plan = r["listing_bound"], r["process_bound"], r["plan"]
    same = plan["requests"]["list"] == bound["pages"] and plan["requests"]["get"] == 0
    return [
        f"{r['page_size']:,}", str(bound["pages"]), seconds(bound["latency_floor_s"]),
        seconds(bound["emulator_cpu_s"]), seconds(bound["raw_client"]["wall_s"]["median"]),
        seconds(process["wall_s"]["median"]), seconds(r["observe"]["wall_s"]["median"]),
        times(r["observe_ratio_to_bound"]), seconds(plan["wall_s"]["median"]),
        f"**{times(r['plan_ratio_to_bound'])}**", times(r["plan_ratio_to_process_bound"]),
        times(r.get("plan_ratio_to_library_bound")),
        times(ratio_of(r["library_after_bound"], process)) if r.get("library_after_bound") else "-",
        seconds(plan["cpu_s"]["median"]), f"{plan['peak_rss_mb']['median']:.0f} MB",
        f"{r['plan_rss_kb_per_job']:.1f} KB", f"{plan['requests']['list']} list, {plan['requests']['get']} get"
        + ("" if same else " (**not the bound**)"),
    ] + ([_before(r["plan_baseline"], r["plan_baseline_ratio_to_bound"], r["jobs"])] if r.get("plan_baseline")
         else [])  # fmt: skip


def _before(plan: dict[str, Any], to_bound: float | None, jobs: int) -> str:
    """The baseline checkout's plan: wall (ratio to the bound), CPU, peak RSS per job."""
    return (f"{seconds(plan['wall_s']['median'])} ({times(to_bound)}), CPU {seconds(plan['cpu_s']['median'])}, "
            f"{plan['peak_rss_mb']['median'] * 1024 / jobs:.1f} KB/job")


def _phase_row(what: str, process: str, figure: dict[str, Any]) -> list[str]:
    parts = [figure.get(k) for k in ("first_request_s", "between_requests_s", "after_last_request_s")]
    shown = [seconds(part["median"]) if part else "-" for part in parts]
    return [what, process, *shown, seconds(figure["wall_s"]["median"])]


def _phases(results: dict[str, Any]) -> list[str]:
    """Start-up, listing and finish of the whole processes, from the emulator's arrival times."""
    rows: list[list[str]] = []
    bound = results["listing_bound"]
    workloads = [("main", bound["process"], bound.get("libraries"), bound.get("libraries_after"), results["plan"],
                  None)]
    workloads += [(f"{r['page_size']:,}-job pages", r["process_bound"], r.get("library_bound"),
                   r.get("library_after_bound"), r["plan"], r.get("plan_baseline"))
                  for r in results.get("page_regimes") or []]
    for what, pager, libraries, after, plan, baseline in workloads:
        rows.append(_phase_row(what, "stdlib pager", pager))
        if libraries:
            rows.append(_phase_row(what, f"pager {LIBRARY_FLOOR}", libraries))
        if after:
            rows.append(_phase_row(what, f"pager {LIBRARY_AFTER}", after))
        rows.append(_phase_row(what, "`reconciler plan`", plan))
        if baseline:
            rows.append(_phase_row(what, "baseline `reconciler plan`", baseline))
    return [
        "",
        "## Where a whole process spends its time",
        "",
        "Medians of the same runs as above, split by when the emulator saw the process's requests "
        "arrive: from spawn to its first request (interpreter, imports, settings, the first "
        "manifests), from its first to its last request, and from its last request to its exit "
        "(the last page's latency and conversion, planning, printing, exit). Each part is a median "
        "over the runs: they need not add up to the median wall exactly. The pager importing the "
        "libraries `plan` cannot start without and building one pydantic model (using none of "
        "them) is the floor those libraries set, whatever the reconciler's own code does, as long "
        "as its first request needs them; the same pager importing them once its first requests "
        "have left shows what they would cost a process whose first request did not.",
        "",
        *_table(["workload", "process", "spawn → first request", "first → last request",
                 "last request → exit", "wall"], rows),
    ]


def _regimes(results: dict[str, Any]) -> list[str]:
    regimes = results.get("page_regimes") or []
    if not regimes:
        return []
    first = regimes[0]
    jobs = ", ".join(f"{region} {n:,}" for region, n in first["listing_bound"]["jobs_by_region"].items())
    return [
        "",
        "## Page sizes: the whole plan process against the bound",
        "",
        f"One workload ({first['manifests']:,} manifests; jobs per region: {jobs}; "
        f"{first['latency_ms']:g} ms per request) listed at each max page size of the emulator. "
        "Bound: the in-process raw client as in the table above; bound as a process: the stdlib "
        "pager (bench/pager.py) from spawn to exit. Peak RSS per job: the plan process's peak over the "
        "jobs listed.",
        "",
        *_table(["max page size", "pages", "latency floor", "emulator CPU / listing", "bound",
                 "bound (process)", "observe", "observe / bound", "plan", "plan / bound",
                 "plan / bound (process)", "plan / library pager", "library pager, imports after the first requests / "
                 "bound (process)", "plan CPU", "plan peak RSS", "RSS / job", "plan requests",
                 *(["baseline plan (ratio), CPU, RSS / job"] if first.get("plan_baseline") else [])],
                [_regime_row(r) for r in regimes]),
    ]  # fmt: skip


def _big_page(results: dict[str, Any]) -> list[str]:
    big = results.get("big_page")
    if not big:
        return []
    pager, plan = big["process_bound"], big["plan"]
    rows = [
        ["stdlib pager (process)", seconds(pager["wall_s"]["median"]), seconds(pager["cpu_s"]["median"]),
         f"{pager['peak_rss_mb']['median']:.0f} MB", f"{big['pager_rss_kb_per_job']:.2f} KB"],
        ["`reconciler plan` (process)", seconds(plan["wall_s"]["median"]), seconds(plan["cpu_s"]["median"]),
         f"{plan['peak_rss_mb']['median']:.0f} MB", f"{big['plan_rss_kb_per_job']:.2f} KB"],
    ]  # fmt: skip
    before = big.get("plan_baseline")
    if before:
        rows.append(["baseline `reconciler plan` (process)", seconds(before["wall_s"]["median"]),
                     seconds(before["cpu_s"]["median"]), f"{before['peak_rss_mb']['median']:.0f} MB",
                     f"{before['peak_rss_mb']['median'] * 1024 / big['jobs']:.2f} KB"])  # fmt: skip
    return [
        "",
        f"## One page of {big['jobs']:,} jobs",
        "",
        f"The emulator answers every job of one region in one page ({big['page_mb']:.0f} MB of JSON, "
        f"{big['page_bytes_per_job']:.0f} bytes per job; `forced_page_size`), measured once.",
        "",
        *_table(["what", "wall", "CPU", "peak RSS", "peak RSS / job"], rows),
        "",
        f"plan / pager: {times(big['plan_ratio_to_process_bound'])} in wall time; "
        f"requests: {requests(plan['requests'])}.",
    ]


def _apply_rows(applies: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for a in applies:
        limiter = a["client_rate_limit"]["setting"]
        rows.append([
            f"{a['creates_planned']:,}", f"{a['rate_per_minute']:,}", limiter, seconds(a["wall_s"]),
            requests(a["requests"]), str(a["requests_admitted"]), str(a["quota_429"]),
            seconds(a["bound_s"]), times(a["ratio_to_bound"]), f"{a['jobs_created']:,}",
            "killed: timed out" if a["timed_out"] else str(a["exit_code"]),
        ])  # fmt: skip
    return rows


_APPLY_HEADER = ["C", "Q /min", "client limiter", "wall", "API requests", "admitted T",
                 "429s", "bound", "wall / bound", "jobs created", "exit"]  # fmt: skip


def _apply(results: dict[str, Any]) -> list[str]:
    a = results["apply"]
    if a is None:
        return ["", "## Apply", "", "Skipped (--skip-apply)."]
    lines = [
        "",
        "## Apply: creates in one region under a per-region rate limit",
        "",
        f"The emulator's quotas (a sliding 60 s window per project and region) are set to Q requests "
        f"and Q submissions per minute. Bound for the T requests the quota admitted: "
        f"(⌈T/Q⌉ − 1) × 60 s + the last window's requests sent {a['concurrency']} at a time "
        f"(the reconciler's concurrency) at the request latency.",
        "",
        *_table(_APPLY_HEADER, _apply_rows([a])),
    ]
    if a["quota_windows"] <= 1:
        lines += ["", "At this size the quota does not bind (T ≤ Q): the bound is only the send "
                  "time, so the ratio mostly measures process start-up and manifest loading."]  # fmt: skip
    limiter = a["client_rate_limit"]
    if limiter["setting"] == "configured":
        lines += ["", f"Client limiter: `rateLimit: {{requestsPerMinute: {a['rate_per_minute']}, "
                  f"createsPerMinute: {a['rate_per_minute']}}}` in reconciler.yaml."]  # fmt: skip
    elif limiter["setting"] == "default":
        lines += ["", "Client limiter: no `rateLimit` in reconciler.yaml (--no-client-rate-limit): "
                  "the reconciler's own defaults apply."]  # fmt: skip
    else:
        lines += ["", "Client limiter: `rateLimit` was rejected by this reconciler "
                  f"({' '.join(limiter['reason'])}); apply ran without it."]  # fmt: skip
    if a["summary_line"]:
        lines += ["", f"The reconciler's own summary: `{a['summary_line']}`"]
    return lines


def _startup(results: dict[str, Any]) -> list[str]:
    s = results["startup"]
    rows = [
        [f"`{name}`", *_wall(figure), times(figure["ratio_to_python"]), times(figure.get("ratio_to_floor"))]
        for name, figure in s["commands"].items()
    ]
    heavy = s["heavy_imports"]
    imported = "; ".join(f"`{cmd}`: {', '.join(mods) or 'none'}" for cmd, mods in heavy.items())
    return [
        "",
        "## Start-up and validate",
        "",
        *_table(["command", "wall median", "wall min", "ratio to `python -c pass`",
                 "ratio to the floor (`import pydantic, yaml`)"], rows),
        "",
        f"Heavy modules imported (httpx, google.auth, deepdiff, uvicorn, starlette): {imported}.",
    ]


def _growth_ratio(values: Sequence[float], index: int) -> str:
    return "" if index == 0 else f" ({values[index] / values[index - 1]:.1f}×)"


def _growth(results: dict[str, Any]) -> list[str]:
    g = results["growth"]
    if g is None:
        return []
    rows_in = g["plan"]
    validate = [r["validate"]["wall_s"]["median"] for r in rows_in]
    plan = [r["plan"]["wall_s"]["median"] for r in rows_in]
    rss = [r["plan"]["peak_rss_mb"]["median"] for r in rows_in]
    rows = [
        [f"{r['n']:,}", f"{r['jobs']:,}", str(r["pages"]),
         seconds(validate[i]) + _growth_ratio(validate, i), seconds(plan[i]) + _growth_ratio(plan, i),
         requests(r["plan"]["requests"]), f"{rss[i]:.0f} MB" + _growth_ratio(rss, i),
         f"{rss[i] * 1024 / r['jobs']:.1f} KB",
         seconds(r["bound_wall_s"]["median"]), times(r["plan_ratio_to_bound"])]
        for i, r in enumerate(rows_in)
    ]  # fmt: skip
    lines = [
        "",
        "## Growth",
        "",
        f"N managed jobs + {g['others']:,} others; in brackets the ratio to the previous row.",
        "",
        *_table(["N", "jobs", "pages", "validate", "plan wall", "plan requests", "plan peak RSS",
                 "RSS / job", "listing bound", "plan / bound"], rows),  # fmt: skip
    ]
    if g["apply"]:
        lines += ["", *_table(_APPLY_HEADER, _apply_rows(g["apply"]))]
        if any(a["quota_windows"] <= 1 for a in g["apply"]):
            lines += ["", "Where T ≤ Q the quota does not bind: the bound is only the send time."]
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole report as markdown."""
    return "\n".join(
        [*_header(results), *_listing(results), *_regimes(results), *_phases(results), *_big_page(results), *_apply(results),
         *_startup(results), *_growth(results)]
    )
