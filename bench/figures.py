"""Each figure of the benchmark: what is run, what is counted, and the bound it is compared to."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.emulator import EmulatorProcess, arrivals_between, quota_429_delta, request_delta
from bench.measure import ChildRun, ratio, run_child, summary, timed
from bench.workload import PROJECT, Workspace, page_bound, parents, write_config
from reconciler.config import Settings
from reconciler.observe import observe
from reconciler.vertex.client import VertexClient

CLI = (sys.executable, "-m", "reconciler.cli")
PAGER = Path(__file__).resolve().parent / "pager.py"
FLOOR_CODE = "import pydantic, yaml"  # the start-up floor: the libraries any run needs
ONE_MODEL_CODE = f"{FLOOR_CODE}; pydantic.create_model('M', x=(int, ...))"  # any use of pydantic pays that
FLOOR = f'python -c "{FLOOR_CODE}"'
ONE_MODEL = f'python -c "{ONE_MODEL_CODE}"'
PAGE_SIZE = 1000
APPLY_CONCURRENCY = Settings().concurrency  # the reconciler's default, which the harness keeps
T = TypeVar("T")
_HEAVY = ("httpx", "google.auth", "deepdiff", "uvicorn", "starlette")
_IMPORT_MARK = "BENCH-HEAVY-IMPORTS "
_IMPORT_PROBE = (
    "import json, sys\n"
    "from reconciler.cli import main\n"
    "main(sys.argv[1:])\n"
    f"print({_IMPORT_MARK!r} + json.dumps([m for m in {_HEAVY!r} if m in sys.modules]),"
    " file=sys.stderr)\n"
)


@dataclass(frozen=True)
class Bench:
    """What every figure needs: the emulator, the regions, repeats and the children's env."""

    emulator: EmulatorProcess
    regions: tuple[str, ...]
    repeat: int
    baseline: Path | None = None  # another checkout whose `plan` is measured beside this one's

    @property
    def env(self) -> dict[str, str]:
        """The environment of reconciler children: only the emulator's endpoint is set."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        env.update(RECONCILER_API_ENDPOINT=self.emulator.url, NO_COLOR="1")
        return env

    @property
    def baseline_env(self) -> dict[str, str]:
        """`env` with the baseline checkout first on the path (its `reconciler` package wins)."""
        return {**self.env, "PYTHONPATH": str(self.baseline)}

    def counted(self, action: Callable[[], T]) -> tuple[T, dict[str, int]]:
        """Run `action`; return its result and the API requests the emulator saw meanwhile."""
        before = self.emulator.stats()
        result = action()
        return result, request_delta(before, self.emulator.stats())

    def repeated(
        self, action: Callable[[], tuple[float, T]]
    ) -> tuple[list[float], T, dict[str, int]]:
        """An in-process measurement: one untimed warm-up run (imports, first connections), then
        `repeat` runs of `action` (which returns its wall time and result). Returns the walls, the
        last result and the last run's API requests."""
        action()
        walls: list[float] = []
        for _ in range(self.repeat):
            (wall, result), delta = self.counted(action)
            walls.append(wall)
        return walls, result, delta


def check_exit(run: ChildRun, expected: int, what: str) -> ChildRun:
    """`run`, or RuntimeError with its output's tail when it did not exit `expected`."""
    if run.code != expected:
        raise RuntimeError(
            f"{what}: exit {run.code}, expected {expected}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        )
    return run


# -- (a) listing lower bound ---------------------------------------------------------------------
def _raw_list_region(http: httpx.Client, region: str) -> int:
    """Every page of one region (pageSize 1000, following nextPageToken); the number of jobs."""
    jobs = 0
    token = ""
    while True:
        params = {"pageSize": str(PAGE_SIZE)}
        if token:
            params["pageToken"] = token
        response = http.get(f"/v1/projects/{PROJECT}/locations/{region}/tuningJobs", params=params)
        body = response.raise_for_status().json()
        jobs += len(body.get("tuningJobs", []))
        token = body.get("nextPageToken", "")
        if not token:
            return jobs


def raw_listing(url: str, regions: Sequence[str]) -> tuple[float, int]:
    """The minimal client: one httpx.Client, one thread per region. (wall s, jobs)."""
    with httpx.Client(base_url=url, timeout=120) as http:
        wall, counts = timed(partial(_thread_per_item, partial(_raw_list_region, http), regions))
    return wall, sum(counts)


def _thread_per_item(action: Callable[[Any], int], items: Sequence[Any]) -> list[int]:
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(action, items))


def listing_bound(bench: Bench, jobs_per_region: dict[str, int]) -> dict[str, Any]:
    """(a) The pages that must be read, and the time the minimal raw client takes to read them.

    Clients ask for PAGE_SIZE; the server's `max_page_size` may cap it lower."""
    config = bench.emulator.config()
    max_page_size = int(config["max_page_size"])
    page_size = int(config.get("forced_page_size") or 0) or min(max_page_size, PAGE_SIZE)
    region_pages = [page_bound(jobs_per_region, [r], page_size) for r in bench.regions]
    cpu_before = bench.emulator.cpu_seconds()
    walls, jobs, delta = bench.repeated(partial(raw_listing, bench.emulator.url, bench.regions))
    cpu_after = bench.emulator.cpu_seconds()
    server_cpu = None
    if cpu_before is not None and cpu_after is not None:
        server_cpu = (cpu_after - cpu_before) / (bench.repeat + 1)  # the warm-up run included
    return {
        "jobs_by_region": jobs_per_region,
        "jobs": jobs,
        "max_page_size": max_page_size,
        "pages": sum(region_pages),
        "page_size": page_size,
        "latency_ms": float(config["latency_ms"]),
        "latency_floor_s": max(region_pages) * float(config["latency_ms"]) / 1000,
        "emulator_cpu_s": server_cpu,
        "raw_client": {"wall_s": summary(walls), "requests": delta},
    }


# -- (b) plan, and observe in-process -------------------------------------------------------------
def _phases(runs: Sequence[ChildRun], arrivals: Sequence[list[float]]) -> dict[str, Any]:
    """When each run's first request reached the emulator after its spawn (start-up: imports,
    settings, the first manifests), and how long after its last request it exited (the last
    page's latency and conversion, planning, printing, exit)."""
    pairs = [(run, times) for run, times in zip(runs, arrivals, strict=True) if times]
    if not pairs:
        return {"first_request_s": None, "between_requests_s": None, "after_last_request_s": None}
    return {"first_request_s": summary([times[0] - run.spawned_at for run, times in pairs]),
            "between_requests_s": summary([times[-1] - times[0] for _, times in pairs]),
            "after_last_request_s": summary([run.spawned_at + run.wall_s - times[-1] for run, times in pairs])}


def _timed_runs(bench: Bench, command: Sequence[str], what: str, *, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> tuple[list[ChildRun], list[dict[str, int]], dict[str, Any]]:
    """`bench.repeat` runs of a child that must exit 0: the runs, the requests of each, and the
    start-up and finish split (`_phases`) from the emulator's arrival times."""
    runs: list[ChildRun] = []
    deltas: list[dict[str, int]] = []
    arrivals: list[list[float]] = []
    for _ in range(bench.repeat):
        run, delta = bench.counted(lambda: check_exit(run_child(command, cwd=cwd, env=env or bench.env), 0, what))
        runs.append(run)
        deltas.append(delta)
        arrivals.append(arrivals_between(bench.emulator.stats(), run.spawned_at, run.spawned_at + run.wall_s))
    return runs, deltas, _phases(runs, arrivals)


def plan_command(workspace: Workspace) -> list[str]:
    """`reconciler plan --detailed-exitcode` of the workspace (exit 0: no change)."""
    return [*CLI, "plan", str(workspace.root), "--detailed-exitcode"]


def pager_command(bench: Bench, *, preload: Sequence[str] = (), after: bool = False) -> list[str]:
    """The stdlib pager over the bench's regions; with `preload`, importing those libraries first
    (or, with `after`, once its first requests have left)."""
    options = ["--preload-after" if after else "--preload", ",".join(preload)] if preload else []
    return [sys.executable, str(PAGER), *options, bench.emulator.url, PROJECT, *bench.regions]


def plan(bench: Bench, workspace: Workspace, *, baseline: bool = False) -> dict[str, Any]:
    """(b) `reconciler plan --detailed-exitcode` of the unchanged folder (exit 0: no change); with
    `baseline`, the baseline checkout's."""
    command = plan_command(workspace)
    env = bench.baseline_env if baseline else bench.env
    runs, deltas, phases = _timed_runs(bench, command, "plan", cwd=workspace.root, env=env)
    return {
        "wall_s": summary([r.wall_s for r in runs]),
        "cpu_s": summary([r.cpu_s for r in runs]),
        "peak_rss_mb": summary([r.peak_rss_mb for r in runs]),
        "requests": deltas[0],
        "requests_same_every_run": all(d == deltas[0] for d in deltas),
        "exit_code": runs[0].code,
        **phases,
    }


# The libraries `reconciler plan` cannot send its first request without (the command line, the
# models, the manifests' YAML, the HTTP client): what the library-floor pager imports first.
LIBRARIES = ("typer", "pydantic", "yaml", "httpx", "httpcore")
LIBRARY_FLOOR = f"importing {', '.join(LIBRARIES)} and building one pydantic model first"
LIBRARY_AFTER = "importing the same once its first requests have left (while the pages arrive)"


def process_bound(bench: Bench, *, preload: Sequence[str] = (), after: bool = False) -> dict[str, Any]:
    """(a') The minimal pager as a whole process (bench/pager.py: stdlib only, a thread and a
    keep-alive connection per region, json.loads of each page): the API's pages plus Python's
    start-up, the like-for-like bound of a whole `plan` process. Wall, CPU and peak RSS. With
    `preload`, the pager imports those modules first (the floor of those libraries; with pydantic,
    one model class built, since `import pydantic` alone leaves its model machinery unloaded).
    With `after`, those imports come once the first requests have left (`--preload-after`)."""
    command = pager_command(bench, preload=preload, after=after)
    runs, deltas, phases = _timed_runs(bench, command, "pager")
    return {
        "wall_s": summary([r.wall_s for r in runs]),
        "cpu_s": summary([r.cpu_s for r in runs]),
        "peak_rss_mb": summary([r.peak_rss_mb for r in runs]),
        "requests": deltas[-1],
        "jobs": int(runs[-1].stdout.strip() or 0),
        **phases,
    }


def page_regime(bench: Bench, workspace: Workspace, jobs_per_region: dict[str, int], page_size: int,
                latency_ms: float) -> dict[str, Any]:
    """One page-size regime on the seeded workload: the emulator's max page size and latency set,
    then the bound (in-process raw client, and the stdlib pager as a process), plan as a whole
    process, and observe in-process; every ratio to the bounds of this same regime."""
    bench.emulator.config(max_page_size=page_size, latency_ms=latency_ms)
    bound = listing_bound(bench, jobs_per_region)
    process = process_bound(bench)
    libraries = process_bound(bench, preload=LIBRARIES)
    libraries_after = process_bound(bench, preload=LIBRARIES, after=True)
    planned = plan(bench, workspace)
    observed = observe_in_process(bench)
    bound_wall = bound["raw_client"]["wall_s"]["median"]
    jobs = sum(jobs_per_region.values())
    before = plan(bench, workspace, baseline=True) if bench.baseline else None
    return {
        "plan_baseline": before,
        "plan_baseline_ratio_to_bound": ratio(before["wall_s"]["median"], bound_wall) if before else None,
        "page_size": page_size,
        "latency_ms": latency_ms,
        "regions": list(bench.regions),
        "jobs": jobs,
        "manifests": len(workspace.models),
        "listing_bound": bound,
        "process_bound": process,
        "library_bound": libraries,
        "library_after_bound": libraries_after,
        "plan": planned,
        "observe": observed,
        "plan_ratio_to_bound": ratio(planned["wall_s"]["median"], bound_wall),
        "plan_ratio_to_process_bound": ratio(planned["wall_s"]["median"], process["wall_s"]["median"]),
        "plan_ratio_to_library_bound": ratio(planned["wall_s"]["median"], libraries["wall_s"]["median"]),
        "observe_ratio_to_bound": ratio(observed["wall_s"]["median"], bound_wall),
        "plan_rss_kb_per_job": planned["peak_rss_mb"]["median"] * 1024 / jobs if jobs else None,
    }


def big_page(bench: Bench, workspace: Workspace, jobs: int) -> dict[str, Any]:
    """One page of every job of one region (the emulator answers with all of them whatever
    pageSize asks): plan's wall and peak RSS against the stdlib pager's, as processes, once."""
    bench.emulator.config(forced_page_size=jobs)
    try:
        body = httpx.get(f"{bench.emulator.url}/v1/{parents(bench.regions)[0]}/tuningJobs",
                         params={"pageSize": str(PAGE_SIZE)}, timeout=1800).raise_for_status()
        page_mb = len(body.content) / 1e6
        del body
        process = process_bound(bench)
        planned = plan(bench, workspace)
        before = plan(bench, workspace, baseline=True) if bench.baseline else None
    finally:
        bench.emulator.config(forced_page_size=0)
    return {
        "plan_baseline": before,
        "jobs": jobs,
        "page_mb": page_mb,
        "process_bound": process,
        "plan": planned,
        "plan_ratio_to_process_bound": ratio(planned["wall_s"]["median"], process["wall_s"]["median"]),
        "plan_rss_kb_per_job": planned["peak_rss_mb"]["median"] * 1024 / jobs,
        "pager_rss_kb_per_job": process["peak_rss_mb"]["median"] * 1024 / jobs,
        "page_bytes_per_job": page_mb * 1e6 / jobs,
    }


def _observe_once(url: str, regions: Sequence[str]) -> tuple[float, int]:
    with VertexClient(endpoint=url) as client:
        wall, observation = timed(partial(observe, client, parents(regions)))
    return wall, len(observation.jobs)


def observe_in_process(bench: Bench) -> dict[str, Any]:
    """(b) `reconciler.observe.observe` alone, the listing part of plan, like-for-like with (a):
    a new VertexClient per run, as the raw client gets a new httpx.Client."""
    walls, jobs, delta = bench.repeated(partial(_observe_once, bench.emulator.url, bench.regions))
    return {"wall_s": summary(walls), "requests": delta, "jobs": jobs}


# -- (c) the official SDK -------------------------------------------------------------------------
def _sdk_clients(url: str, regions: Sequence[str]) -> list[Any]:
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    return [
        genai.Client(
            vertexai=True,
            project=PROJECT,
            location=region,
            credentials=Credentials(token="bench"),  # type: ignore[no-untyped-call]
            http_options=types.HttpOptions(base_url=url, api_version="v1"),
        )
        for region in regions
    ]


def _sdk_list(client: Any) -> int:
    from google.genai import types

    return sum(1 for _ in client.tunings.list(config=types.ListTuningJobsConfig(page_size=PAGE_SIZE)))


def _sdk_sequential(clients: Sequence[Any]) -> list[int]:
    return [_sdk_list(client) for client in clients]


def sdk_listing(bench: Bench) -> dict[str, Any]:
    """(c) google-genai `tunings.list` over every region, in parallel threads and in sequence."""
    try:
        clients = _sdk_clients(bench.emulator.url, bench.regions)
    except ImportError as exc:
        return {"available": False, "reason": f"google-genai is not installed ({exc})"}
    modes: dict[str, Callable[[], list[int]]] = {
        "parallel": partial(_thread_per_item, _sdk_list, clients),
        "sequential": partial(_sdk_sequential, clients),
    }
    out: dict[str, Any] = {"available": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the SDK's tuning implementation is experimental"
        for mode, action in modes.items():
            walls, counts, delta = bench.repeated(partial(timed, action))
            out[mode] = {"wall_s": summary(walls), "requests": delta, "jobs": sum(counts)}
    for client in clients:
        client.close()
    return out


# -- (d) apply under a per-region rate limit ------------------------------------------------------
def rate_bound_s(requests: int, per_minute: int, latency_ms: float, concurrency: int) -> float:
    """Least time for `requests` admitted requests under a sliding 60 s window of `per_minute`:
    (⌈T/Q⌉ − 1) full windows, plus sending the last window's requests `concurrency` at a time."""
    if requests <= 0:
        return 0.0
    windows = math.ceil(requests / per_minute)
    last = requests - (windows - 1) * per_minute
    return (windows - 1) * 60.0 + math.ceil(last / concurrency) * latency_ms / 1000


def client_rate_limit_status(bench: Bench, root: Path, rate: int, wanted: bool) -> dict[str, Any]:
    """Write reconciler.yaml with the client-side limiter if wanted and accepted by this
    reconciler (`reconciler validate` tells); otherwise without it. Say which was used."""
    if not wanted:
        write_config(root, None)
        return {"setting": "default"}  # no rateLimit: the reconciler's own defaults apply
    write_config(root, rate)
    run = run_child([*CLI, "validate", str(root)], cwd=root, env=bench.env)
    if run.code == 0:
        return {"setting": "configured", "requests_per_minute": rate, "creates_per_minute": rate}
    write_config(root, None)
    return {"setting": "unsupported", "reason": run.stderr.strip().splitlines()[-1:]}


def apply(
    bench: Bench, workspace: Workspace, rate: int, client_rate_limit: bool, timeout_s: float
) -> dict[str, Any]:
    """(d) `reconciler apply --auto-approve` of C creates in one region, the emulator's request
    and submission quotas both set to `rate` per minute. Resets the emulator first. An apply
    still running after `timeout_s` is killed and reported as timed out."""
    emulator = bench.emulator
    emulator.reset()
    emulator.config(requests_per_minute=rate, submissions_per_minute=rate)
    limiter = client_rate_limit_status(bench, workspace.root, rate, client_rate_limit)
    command = [*CLI, "apply", str(workspace.root), "--auto-approve"]
    creates = len(workspace.models)
    before = emulator.stats()
    run = run_child(command, cwd=workspace.root, env=bench.env, timeout_s=timeout_s)
    after = emulator.stats()
    emulator.config(requests_per_minute=0, submissions_per_minute=0)
    delta = request_delta(before, after)
    refused = quota_429_delta(before, after)
    admitted = sum(delta.values()) - refused
    bound = rate_bound_s(admitted, rate, emulator.latency_ms, APPLY_CONCURRENCY)
    return {
        "creates_planned": creates,
        "rate_per_minute": rate,
        "client_rate_limit": limiter,
        "concurrency": APPLY_CONCURRENCY,
        "exit_code": run.code,
        "timed_out": run.timed_out,
        "wall_s": run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "requests": delta,
        "requests_admitted": admitted,
        "quota_429": refused,
        "jobs_created": int(after["jobs"]),
        "quota_windows": math.ceil(admitted / rate),
        "bound_s": bound,
        "ratio_to_bound": ratio(run.wall_s, bound),
        "summary_line": next(
            (line for line in run.stderr.splitlines() if line.startswith("Apply finished")), ""
        ),
    }


# -- (e) start-up and validate --------------------------------------------------------------------
def console_script() -> str | None:
    """The `reconciler` console script next to this interpreter or on PATH, if any."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which("reconciler", path=search)


def heavy_imports(bench: Bench, args: Sequence[str], cwd: Path) -> list[str]:
    """Which of httpx, google.auth, deepdiff, uvicorn, starlette a CLI invocation imports."""
    run = run_child([sys.executable, "-c", _IMPORT_PROBE, *args], cwd=cwd, env=bench.env)
    lines = [line for line in run.stderr.splitlines() if line.startswith(_IMPORT_MARK)]
    if not lines:
        raise RuntimeError(f"import probe of {list(args)} failed: {run.stderr[-2000:]}")
    found: list[str] = json.loads(lines[-1].removeprefix(_IMPORT_MARK))
    return found


def validate(bench: Bench, workspace: Workspace) -> dict[str, Any]:
    """`reconciler validate` of the workspace's files: wall time and peak RSS."""
    runs = [
        check_exit(run_child([*CLI, "validate", str(workspace.root)], cwd=workspace.root, env=bench.env), 0, "validate")
        for _ in range(bench.repeat)
    ]
    return {"wall_s": summary([r.wall_s for r in runs]), "peak_rss_mb": summary([r.peak_rss_mb for r in runs])}


def startup(bench: Bench, workspace: Workspace) -> dict[str, Any]:
    """(e) Medians of `python -c pass`, the floor (`python -c "import pydantic, yaml"`), `--help`
    (module and console script) and `validate` of the workspace, measured round-robin so that
    drift hits all alike; ratios to `python -c pass` and to the floor."""
    commands: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        FLOOR: [sys.executable, "-c", FLOOR_CODE],
        ONE_MODEL: [sys.executable, "-c", ONE_MODEL_CODE],
        "python -m reconciler.cli --help": [*CLI, "--help"],
    }
    script = console_script()
    if script:
        commands["reconciler --help"] = [script, "--help"]
    validate_name = f"reconciler validate ({len(workspace.models)} files)"
    commands[validate_name] = [*CLI, "validate", str(workspace.root)]
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(bench.repeat):
        for name, command in commands.items():
            walls[name].append(check_exit(run_child(command, cwd=workspace.root, env=bench.env), 0, name).wall_s)
    python = summary(walls["python -c pass"])["median"]
    floor = summary(walls[FLOOR])["median"]
    figures = {
        name: {"wall_s": summary(values), "ratio_to_python": ratio(summary(values)["median"], python),
               "ratio_to_floor": ratio(summary(values)["median"], floor)}
        for name, values in walls.items()
    }
    return {
        "commands": figures,
        "validate": validate_name,
        "heavy_imports": {
            "--help": heavy_imports(bench, ["--help"], workspace.root),
            "validate": heavy_imports(bench, ["validate", str(workspace.root)], workspace.root),
        },
    }
