"""`python -m bench.run`: every figure of the benchmark in one run, as markdown and JSON.

Starts the emulator as a child process, seeds the workload through its admin routes, measures
(a) the listing lower bound, (b) plan and observe, (c) the official SDK, (d) apply under a rate
limit, (e) start-up and validate, and with `--growth` (f) how they grow with N. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import figures
from bench.emulator import EmulatorProcess
from bench.figures import Bench
from bench.measure import ratio
from bench.report import render
from bench.workload import (
    DEFAULT_REGIONS,
    Workspace,
    jobs_by_region,
    managed_jobs,
    other_jobs,
    write_workspace,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
REPOSITORY = Path(__file__).resolve().parent.parent  # the checkout whose reconciler is measured


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; the defaults are the issue's, `--quick` is a smoke run."""

    n: int
    others: int
    regions: int
    latency_ms: float
    repeat: int
    creates: int
    rate: int
    growth_n: tuple[int, ...]
    growth_creates: tuple[int, ...]
    growth_creates_big: int  # only with --growth-apply-10k, at rate C/2 per minute
    # the page-size regimes: max page sizes, on their own workload (regions × jobs, N, latency)
    page_sizes: tuple[int, ...] = (1000, 100, 50)
    pages_regions: int = 2
    pages_jobs_per_region: int = 2600
    pages_n: int = 200
    pages_latency_ms: float = 20.0
    big_page_jobs: int = 200_000  # one page of this many jobs (0: not measured)


FULL = Sizes(1000, 9000, 4, 25.0, 5, 1000, 600, (100, 1000, 10_000), (100, 1000), 10_000)
QUICK = Sizes(20, 180, 2, 5.0, 1, 15, 600, (10, 20, 40), (5, 10), 20,
              page_sizes=(1000, 10, 5), pages_jobs_per_region=30, pages_n=10, pages_latency_ms=5.0,
              big_page_jobs=2000)


@dataclass(frozen=True)
class Options:
    """The resolved command line."""

    sizes: Sizes
    regions: tuple[str, ...]
    growth: bool
    growth_apply_big: bool
    skip_apply: bool
    apply_timeout_s: float
    client_rate_limit: bool
    json_path: Path
    baseline: Path | None = None


def _regions(text: str) -> tuple[str, ...]:
    """`--regions`: a count (the first of the default four) or comma-separated names."""
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= len(DEFAULT_REGIONS):
            raise argparse.ArgumentTypeError(f"a count from 1 to {len(DEFAULT_REGIONS)}, or names")
        return DEFAULT_REGIONS[:count]
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("no region given")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options, with `--quick` changing the defaults (explicit options still win)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--n", type=_positive, help="manifests (default 1000)")
    parser.add_argument("--others", type=int, help="jobs not of this stack (default 9000: M = N + others)")
    parser.add_argument("--regions", type=_regions, help="count (1-4) or comma-separated names (default 4)")
    parser.add_argument("--latency-ms", type=float, help="latency of each API request (default 25)")
    parser.add_argument("--repeat", type=_positive, help="measurements per figure, k (default 5)")
    parser.add_argument("--creates", type=_positive, help="creates of the apply figure, C (default 1000)")
    parser.add_argument("--rate", type=_positive, help="per-region quota Q per minute (default 600)")
    parser.add_argument("--growth", action="store_true", help="also N = 100, 1000, 10000")
    parser.add_argument("--growth-apply-10k", action="store_true", help="growth: also apply 10000 creates")
    parser.add_argument("--skip-apply", action="store_true", help="no apply figure")
    parser.add_argument("--skip-big-page", action="store_true", help="no single page of 200,000 jobs")
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit: its plan measured beside "
                        "this one's in the page-size regimes and the big page (e.g. a git worktree)")
    parser.add_argument(
        "--apply-timeout", type=float, default=1800.0, help="seconds before an apply is killed (default 1800)"
    )
    parser.add_argument(
        "--client-rate-limit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="configure the reconciler's own limiter (rateLimit) for apply (default on)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke run)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    given = {
        "n": args.n,
        "others": args.others,
        "latency_ms": args.latency_ms,
        "repeat": args.repeat,
        "creates": args.creates,
        "rate": args.rate,
        "big_page_jobs": 0 if args.skip_big_page else None,
    }
    sizes = Sizes(**{**asdict(base), **{k: v for k, v in given.items() if v is not None}})
    return Options(
        sizes=sizes,
        regions=args.regions or DEFAULT_REGIONS[: sizes.regions],
        growth=args.growth,
        growth_apply_big=args.growth_apply_10k,
        skip_apply=args.skip_apply,
        apply_timeout_s=args.apply_timeout,
        client_rate_limit=args.client_rate_limit,
        json_path=args.json,
        baseline=args.baseline.resolve() if args.baseline else None,
    )


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """Where and when the run happened, and what was measured."""
    versions: dict[str, str | None] = {}
    for package in ("vertex-tuning-reconciler", "google-genai", "httpx"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(status) if status is not None else None,
        "versions": versions,
    }


def compile_bytecode(*checkouts: Path | None) -> dict[str, Any]:
    """Compile each checkout's `reconciler` package to bytecode before anything is timed, as pip does
    for a wheel and as any import does where bytecode may be written: where
    PYTHONDONTWRITEBYTECODE is set (some CI images and sandboxes), an editable checkout would
    otherwise compile every module from source in every measured process (~70 ms of a plan here),
    which no installed copy pays."""
    done = [str(root) for root in checkouts if root is not None
            and compileall.compile_dir(root / "reconciler", quiet=1, workers=1)]
    return {"bytecode_compiled": done, "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE")}


def seed_workload(bench: Bench, root: Path, n: int, others: int) -> tuple[Workspace, dict[str, int]]:
    """A fresh emulator holding N matching managed jobs and `others` other jobs, and the folder
    of N manifests; returns the workspace and the jobs per region."""
    bench.emulator.reset()
    workspace = write_workspace(root, n, bench.regions)
    jobs = managed_jobs(workspace.models) + other_jobs(others, bench.regions)
    bench.emulator.seed(jobs)
    return workspace, jobs_by_region(jobs)


def listing_figures(bench: Bench, root: Path, sizes: Sizes) -> dict[str, Any]:
    """(a), (b), (c) and (e) on the main workload."""
    workspace, per_region = seed_workload(bench, root, sizes.n, sizes.others)
    bound = figures.listing_bound(bench, per_region)
    bound_wall = bound["raw_client"]["wall_s"]["median"]
    process = figures.process_bound(bench)
    libraries = figures.process_bound(bench, preload=figures.LIBRARIES)
    libraries_after = figures.process_bound(bench, preload=figures.LIBRARIES, after=True)
    plan = figures.plan(bench, workspace)
    plan["ratio_to_bound"] = ratio(plan["wall_s"]["median"], bound_wall)
    plan["ratio_to_process_bound"] = ratio(plan["wall_s"]["median"], process["wall_s"]["median"])
    plan["ratio_to_library_bound"] = ratio(plan["wall_s"]["median"], libraries["wall_s"]["median"])
    bound["process"] = process
    bound["libraries"] = libraries
    bound["libraries_after"] = libraries_after
    observe = figures.observe_in_process(bench)
    observe["ratio_to_bound"] = ratio(observe["wall_s"]["median"], bound_wall)
    sdk = figures.sdk_listing(bench)
    for mode in ("parallel", "sequential"):
        if mode in sdk:
            sdk[mode]["ratio_to_bound"] = ratio(sdk[mode]["wall_s"]["median"], bound_wall)
    return {
        "listing_bound": bound,
        "plan": plan,
        "observe": observe,
        "sdk": sdk,
        "startup": figures.startup(bench, workspace),
    }


def page_regimes(bench: Bench, root: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """The same workload listed at each max page size (1,000 and the small pages real services
    often use): plan as a whole process against the bounds of each regime."""
    regional = Bench(bench.emulator, DEFAULT_REGIONS[: sizes.pages_regions], bench.repeat, bench.baseline)
    total = sizes.pages_jobs_per_region * sizes.pages_regions
    workspace, per_region = seed_workload(regional, root, sizes.pages_n, total - sizes.pages_n)
    return [figures.page_regime(regional, workspace, per_region, page, sizes.pages_latency_ms)
            for page in sizes.page_sizes]


def big_page(bench: Bench, root: Path, sizes: Sizes) -> dict[str, Any] | None:
    """Every job of one region in one page (`big_page_jobs`), measured once."""
    if not sizes.big_page_jobs:
        return None
    single = Bench(bench.emulator, bench.regions[:1], 1, bench.baseline)
    n = min(sizes.pages_n, sizes.big_page_jobs)
    workspace, _ = seed_workload(single, root, n, sizes.big_page_jobs - n)
    return figures.big_page(single, workspace, sizes.big_page_jobs)


def apply_figure(bench: Bench, root: Path, creates: int, rate: int, options: Options) -> dict[str, Any]:
    """(d) C creates in the first region under a quota of `rate` requests per minute."""
    workspace = write_workspace(root, creates, bench.regions[:1], prefix="a")
    return figures.apply(bench, workspace, rate, options.client_rate_limit, options.apply_timeout_s)


def growth(
    bench: Bench, tmp: Path, options: Options, apply_done: dict[str, Any] | None
) -> dict[str, Any]:
    """(f) validate and plan for each N (with `others` other jobs), apply for each C."""
    sizes = options.sizes
    rows = []
    for n in sizes.growth_n:
        workspace, per_region = seed_workload(bench, tmp / f"growth-{n}", n, sizes.others)
        bound = figures.listing_bound(bench, per_region)
        plan = figures.plan(bench, workspace)
        rows.append(
            {
                "n": n,
                "jobs": sum(per_region.values()),
                "pages": bound["pages"],
                "validate": figures.validate(bench, workspace),
                "plan": plan,
                "bound_wall_s": bound["raw_client"]["wall_s"],
                "plan_ratio_to_bound": ratio(
                    plan["wall_s"]["median"], bound["raw_client"]["wall_s"]["median"]
                ),
            }
        )
    applies = []
    creates = list(sizes.growth_creates) if not options.skip_apply else []
    if creates and options.growth_apply_big:
        creates.append(sizes.growth_creates_big)
    for count in creates:
        rate = sizes.rate if count != sizes.growth_creates_big else max(1, count // 2)
        reuse = apply_done is not None and (count, rate) == (
            apply_done["creates_planned"],
            apply_done["rate_per_minute"],
        )
        if reuse:
            applies.append(apply_done)
        else:
            applies.append(
                apply_figure(bench, tmp / f"growth-apply-{count}", count, rate, options)
            )
    return {"others": sizes.others, "plan": rows, "apply": applies}


def run(options: Options) -> dict[str, Any]:
    """Every figure, in one run, against one emulator process."""
    sizes = options.sizes
    results: dict[str, Any] = {
        "machine": {**machine(), **compile_bytecode(REPOSITORY, options.baseline)},
        "parameters": {**asdict(sizes), "regions": list(options.regions), "growth": options.growth,
                       "baseline": str(options.baseline) if options.baseline else None},
    }
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with EmulatorProcess(sizes.latency_ms, tmp / "emulator.log") as emulator:
            bench = Bench(emulator, options.regions, sizes.repeat, options.baseline)
            results.update(listing_figures(bench, tmp / "main", sizes))
            results["page_regimes"] = page_regimes(bench, tmp / "pages", sizes)
            results["big_page"] = big_page(bench, tmp / "big", sizes)
            results["apply"] = None
            if not options.skip_apply:
                results["apply"] = apply_figure(bench, tmp / "apply", sizes.creates, sizes.rate, options)
            results["growth"] = growth(bench, tmp, options, results["apply"]) if options.growth else None
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the markdown report, write the JSON. Exit 130 on Ctrl-C."""
    options = parse_args(argv)

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (kill, a CI timeout) stops the emulator and children like Ctrl-C

    signal.signal(signal.SIGTERM, terminated)
    try:
        results = run(options)
    except KeyboardInterrupt:
        print("Interrupted; the emulator and any child were stopped.", file=sys.stderr)
        return 130
    options.json_path.parent.mkdir(parents=True, exist_ok=True)
    options.json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nResults written to {options.json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
