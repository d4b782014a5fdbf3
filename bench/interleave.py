"""`python -m bench.interleave`: whole processes measured in turn, round after round, on one
workload — the stdlib pager, the library floor, the late library pager, `reconciler plan` of this
checkout and of any other checkout given. Where `bench.run` measures each figure's k runs back to
back (so a busy minute on the machine lands on one figure), here every round runs each process
once, in an order that rotates from round to round, and each process's wall is also taken as a
ratio to the stdlib pager of the same round: the figure to quote when a decision rests on a few
percent.

    python -m bench.interleave --page-size 100 --rounds 7
    git worktree add --detach /tmp/before HEAD~1
    python -m bench.interleave --page-size 1000 --rounds 9 --checkout before=/tmp/before

The workload is `bench.run`'s page-size regime (2 regions × 2,600 jobs, 200 manifests, 20 ms per
request) or, with `--main`, its main workload (4 regions, 1,000 manifests, 10,000 jobs, 25 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.emulator import EmulatorProcess, arrivals_between
from bench.figures import LIBRARIES, Bench, check_exit, pager_command, plan_command
from bench.measure import run_child
from bench.run import FULL, QUICK, REPOSITORY, compile_bytecode, machine, seed_workload
from bench.workload import DEFAULT_REGIONS, Workspace

PAGER_NAME = "stdlib pager"


def _checkout(text: str) -> tuple[str, Path]:
    """`--checkout NAME=PATH`: a checkout holding another commit's `reconciler` package."""
    name, sep, path = text.partition("=")
    root = Path(path).expanduser().resolve()
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("expected NAME=PATH, e.g. before=/tmp/before")
    if not (root / "reconciler" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{root} holds no reconciler package")
    return name.strip(), root


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.interleave", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page-size", type=int, default=100, help="the emulator's max page size (default 100)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; each runs every process once (default 7)")
    parser.add_argument("--main", action="store_true", help="the main workload instead of the page regime's")
    parser.add_argument("--checkout", type=_checkout, action="append", default=[], metavar="NAME=PATH",
                        help="also `reconciler plan` of this checkout (repeatable)")
    parser.add_argument("--no-libraries", action="store_true", help="leave out the two library pagers")
    parser.add_argument("--quick", action="store_true", help="bench.run's tiny sizes (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.page_size < 1:
        parser.error("--rounds and --page-size must be at least 1")
    return args


def processes(bench: Bench, workspace: Workspace, checkouts: Sequence[tuple[str, Path]],
              libraries: bool) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, command, environment) of each process a round runs, the stdlib pager first."""
    plan = plan_command(workspace)
    out = [(PAGER_NAME, pager_command(bench), bench.env)]
    if libraries:
        out += [("library floor", pager_command(bench, preload=LIBRARIES), bench.env),
                ("late library pager", pager_command(bench, preload=LIBRARIES, after=True), bench.env)]
    out.append(("plan", plan, bench.env))
    out += [(f"plan at {name}", plan, {**bench.env, "PYTHONPATH": str(root)}) for name, root in checkouts]
    return out


def _one(bench: Bench, name: str, command: Sequence[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    run = check_exit(run_child(command, cwd=cwd, env=env), 0, name)
    arrivals = arrivals_between(bench.emulator.stats(), run.spawned_at, run.spawned_at + run.wall_s)
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "requests": len(arrivals),
            "first_request_s": arrivals[0] - run.spawned_at if arrivals else None}


def measure(bench: Bench, workspace: Workspace, rounds: int, checkouts: Sequence[tuple[str, Path]],
            libraries: bool) -> dict[str, list[dict[str, Any]]]:
    """Every process once per round (one untimed warm-up round first), the order rotating."""
    procs = processes(bench, workspace, checkouts, libraries)
    for name, command, env in procs:
        _one(bench, name, command, env, workspace.root)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in procs}
    for number in range(rounds):
        shift = number % len(procs)
        for name, command, env in procs[shift:] + procs[:shift]:
            runs[name].append(_one(bench, name, command, env, workspace.root))
    return runs


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: each process's median wall and CPU, its ratio to the stdlib pager's median and
    the median of its per-round ratios, its first request after spawn, its requests."""
    pager = [r["wall_s"] for r in runs[PAGER_NAME]]
    pager_median = statistics.median(pager)
    lines = ["| process | wall (median) | min – max | / pager (medians) | / pager (median of rounds) "
             "| first request | CPU | requests |", "|---|---|---|---|---|---|---|---|"]
    for name, each in runs.items():
        walls = [r["wall_s"] for r in each]
        per_round = [wall / base for wall, base in zip(walls, pager, strict=True)]
        firsts = [r["first_request_s"] for r in each if r["first_request_s"] is not None]
        first = f"{statistics.median(firsts) * 1000:.0f} ms" if firsts else "—"
        requests = sorted({r["requests"] for r in each})
        lines.append(f"| {name} | {statistics.median(walls):.3f} s | {min(walls):.3f} – {max(walls):.3f} s "
                     f"| {statistics.median(walls) / pager_median:.2f}× | {statistics.median(per_round):.2f}× "
                     f"| {first} | {statistics.median(r['cpu_s'] for r in each):.2f} s "
                     f"| {', '.join(map(str, requests))} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.main:
        regions, n, others, latency = DEFAULT_REGIONS[: sizes.regions], sizes.n, sizes.others, sizes.latency_ms
    else:
        regions, n = DEFAULT_REGIONS[: sizes.pages_regions], sizes.pages_n
        others = sizes.pages_jobs_per_region * sizes.pages_regions - n
        latency = sizes.pages_latency_ms
    roots = [root for _, root in args.checkout]
    about = {**machine(), **compile_bytecode(REPOSITORY, *roots), "page_size": args.page_size,
             "rounds": args.rounds, "workload": "main" if args.main else "page regime", "latency_ms": latency,
             "checkouts": {name: str(root) for name, root in args.checkout}}
    with tempfile.TemporaryDirectory(prefix="reconciler-interleave-") as tmp_name:
        tmp = Path(tmp_name)
        with EmulatorProcess(latency, tmp / "emulator.log") as emulator:
            bench = Bench(emulator, regions, 1)
            workspace, _ = seed_workload(bench, tmp / "workspace", n, others)
            emulator.config(max_page_size=args.page_size, latency_ms=latency)
            try:
                runs = measure(bench, workspace, args.rounds, args.checkout, not args.no_libraries)
            except KeyboardInterrupt:
                print("Interrupted; the emulator and any child were stopped.", file=sys.stderr)
                return 130
    print(f"{about['workload']}, {len(regions)} regions × {(n + others) // len(regions):,} jobs, "
          f"max page {args.page_size:,}, {latency:g} ms per request; {args.rounds} rounds; commit "
          f"{about['commit']}; {about['date']}; load {about['load_average_at_start']} at the start")
    print()
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps({"about": about, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
