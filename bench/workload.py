"""The benchmark's workload: manifest folders and the jobs seeded into the emulator.

N manifests (one model per file) whose managed jobs already exist and match exactly (so the
plan of the unchanged folder is all no-op), plus other jobs in the same regions: most unmanaged,
some managed by the reconciler for another stack. Everything is deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.manifest import Defaults, load_manifests
from reconciler.models import DesiredModel, ownership_labels

PROJECT = "bench-project"
STACK = "bench"
OTHER_STACK = "other-team"
BASE_MODEL = "gemini-3.5-flash"
DEFAULT_REGIONS = ("us-central1", "europe-west4", "asia-northeast1", "us-east4")
_ADAPTERS = ("ADAPTER_SIZE_ONE", "ADAPTER_SIZE_TWO", "ADAPTER_SIZE_FOUR", "ADAPTER_SIZE_EIGHT")
_OTHER_STATES = (
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_RUNNING",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
)
OTHER_STACK_EVERY = 10  # one other job in ten is managed by the reconciler for another stack


@dataclass(frozen=True)
class Workspace:
    """A folder with N manifest files and a reconciler.yaml."""

    root: Path
    models: tuple[DesiredModel, ...]


def _manifest(name: str, region: str, index: int) -> str:
    return (
        "apiVersion: reconciler/v1\n"
        "kind: TunedModel\n"
        "metadata:\n"
        f"  name: {name}\n"
        "  labels: {team: bench}\n"
        "spec:\n"
        f"  region: {region}\n"
        f"  baseModel: {BASE_MODEL}\n"
        "  supervisedTuningSpec:\n"
        f"    trainingDatasetUri: gs://bench-data/{name}/train.jsonl\n"
        "    hyperParameters:\n"
        f"      epochCount: {1 + index % 5}\n"
        "      learningRateMultiplier: 1.0\n"
        f"      adapterSize: {_ADAPTERS[index % len(_ADAPTERS)]}\n"
    )


def write_workspace(
    root: Path,
    count: int,
    regions: Sequence[str],
    *,
    prefix: str = "m",
    rate_limit: int | None = None,
) -> Workspace:
    """Write `count` manifests (`{prefix}-00001`…, regions in turn) and reconciler.yaml into
    `root`, then load them back with the reconciler's own loader.

    `rate_limit` adds the client-side limiter setting (requests and creates per minute).
    """
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        name = f"{prefix}-{index + 1:05d}"
        (root / f"{name}.yaml").write_text(_manifest(name, regions[index % len(regions)], index))
    write_config(root, rate_limit)
    loaded = load_manifests([root], Defaults(project=PROJECT))
    return Workspace(root, tuple(loaded.models))


def write_config(root: Path, rate_limit: int | None) -> None:
    """reconciler.yaml of a workspace; with `rate_limit`, the client-side limiter setting."""
    text = f"project: {PROJECT}\nstack: {STACK}\nstate: reconciler.state.json\n"
    if rate_limit is not None:
        text += f"rateLimit: {{requestsPerMinute: {rate_limit}, createsPerMinute: {rate_limit}}}\n"
    (root / "reconciler.yaml").write_text(text)


def managed_jobs(models: Sequence[DesiredModel]) -> list[dict[str, Any]]:
    """Seed items for jobs that match the models exactly (succeeded, labels with spec hash)."""
    return [
        {
            "project": model.project,
            "location": model.region,
            "state": "JOB_STATE_SUCCEEDED",
            **model.request_body(STACK),
        }
        for model in models
    ]


def other_jobs(count: int, regions: Sequence[str]) -> list[dict[str, Any]]:
    """Seed items for jobs this stack does not own: unmanaged, or of another stack."""
    jobs = []
    for index in range(count):
        name = f"other-{index + 1:05d}"
        spec = {
            "trainingDatasetUri": f"gs://other-data/{name}/train.jsonl",
            "hyperParameters": {"epochCount": str(1 + index % 4)},
        }
        if index % OTHER_STACK_EVERY == 0:
            labels = ownership_labels(OTHER_STACK, name, f"{index:020d}")
        else:
            labels = {"team": f"team-{index % 7}"}
        jobs.append(
            {
                "project": PROJECT,
                "location": regions[index % len(regions)],
                "state": _OTHER_STATES[index % len(_OTHER_STATES)],
                "baseModel": BASE_MODEL,
                "tunedModelDisplayName": name,
                "supervisedTuningSpec": spec,
                "labels": labels,
            }
        )
    return jobs


def jobs_by_region(jobs: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many of the seed items are in each region."""
    return dict(Counter(str(job["location"]) for job in jobs))


def page_bound(jobs_per_region: dict[str, int], regions: Sequence[str], max_page_size: int) -> int:
    """Σ over regions of ⌈jobs/max page size⌉ list requests (an empty region still costs one)."""
    return sum(max(1, math.ceil(jobs_per_region.get(r, 0) / max_page_size)) for r in regions)


def parents(regions: Sequence[str]) -> list[str]:
    """The list parents of the benchmark's project in `regions`."""
    return [f"projects/{PROJECT}/locations/{region}" for region in regions]
