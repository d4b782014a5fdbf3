"""Smoke run of the benchmark harness (`python -m bench.run --quick`), so that it cannot rot.

Tiny sizes, one repeat; it checks that every figure is reported and the counts that do not
depend on timing: plan reads exactly the list pages of the bound (no per-job GET) at every page
size and for one huge page, and apply creates every job. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("machine", "parameters", "listing_bound", "plan", "observe", "sdk", "apply", "startup", "page_regimes",
           "big_page")


def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    results_file = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(results_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(results_file.read_text())
    assert all(results.get(name) is not None for name in FIGURES)
    assert results["growth"] is None

    bound = results["listing_bound"]
    assert bound["pages"] == len(results["parameters"]["regions"])  # < 1000 jobs per region
    assert bound["raw_client"]["requests"]["list"] == bound["pages"]
    for listing in (results["plan"], results["observe"], bound["libraries"], bound["libraries_after"]):
        assert listing["requests"] == {"list": bound["pages"], "get": 0, "create": 0, "cancel": 0}
    assert bound["libraries"]["jobs"] == bound["libraries_after"]["jobs"] == bound["jobs"]
    assert results["plan"]["exit_code"] == 0  # --detailed-exitcode: nothing to change
    assert results["plan"]["peak_rss_mb"]["median"] > 0
    assert results["observe"]["jobs"] == bound["jobs"] == sum(bound["jobs_by_region"].values())
    if results["sdk"]["available"]:
        assert results["sdk"]["parallel"]["jobs"] == bound["jobs"]

    regimes = results["page_regimes"]
    assert [r["page_size"] for r in regimes] == list(results["parameters"]["page_sizes"])
    for regime in regimes:  # every page size: no per-job GET, list requests equal to the page bound
        pages = regime["listing_bound"]["pages"]
        assert pages >= len(regime["regions"])
        pagers = (regime["process_bound"], regime["library_bound"], regime["library_after_bound"])
        for listing in (regime["plan"], regime["observe"], *pagers):
            assert listing["requests"] == {"list": pages, "get": 0, "create": 0, "cancel": 0}
        assert regime["plan"]["exit_code"] == 0 and regime["plan_rss_kb_per_job"] > 0
        assert all(pager["jobs"] == regime["observe"]["jobs"] == regime["jobs"] for pager in pagers)
    assert regimes[-1]["listing_bound"]["pages"] > regimes[0]["listing_bound"]["pages"]  # small pages: more
    big = results["big_page"]
    assert big["plan"]["requests"] == {"list": 1, "get": 0, "create": 0, "cancel": 0}
    assert big["process_bound"]["jobs"] == big["jobs"] and big["plan_rss_kb_per_job"] > 0

    apply = results["apply"]
    assert apply["exit_code"] == 0
    assert apply["jobs_created"] == apply["creates_planned"] == results["parameters"]["creates"]
    assert apply["requests"]["create"] >= apply["creates_planned"]
    assert apply["client_rate_limit"]["setting"] in ("configured", "unsupported")

    commands = results["startup"]["commands"]
    assert {"python -c pass", 'python -c "import pydantic, yaml"', "python -m reconciler.cli --help"} <= set(commands)
    assert all(figure["ratio_to_floor"] > 0 for figure in commands.values())
    assert all(figure["wall_s"]["median"] > 0 for figure in commands.values())

    report = done.stdout
    for heading in ("## Listing", "## Page sizes", "## One page of", "## Apply", "## Start-up and validate"):
        assert heading in report


def test_interleaved_rounds_run_every_process_each_round(tmp_path: Path) -> None:
    results_file = tmp_path / "interleave.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.interleave", "--quick", "--rounds", "2", "--page-size", "5",
         "--checkout", f"same={ROOT}", "--json", str(results_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(results_file.read_text())["runs"]
    assert list(runs) == ["stdlib pager", "library floor", "late library pager", "plan", "plan at same"]
    pages = 2 * 6  # 2 regions × ⌈30 jobs / 5⌉: every process lists every page once, no GET
    assert all(len(each) == 2 and all(r["requests"] == pages for r in each) for each in runs.values())
    assert "| plan at same |" in done.stdout and "/ pager (median of rounds)" in done.stdout
