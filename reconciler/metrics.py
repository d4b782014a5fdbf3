"""The tuning metrics a job writes to Cloud Storage (`gcsMetricsUri`), read and summarised.

The tuning guide names the metrics — `/train_total_loss`, `/train_fraction_of_correct_next_step_preds`,
`/train_num_predictions` and their `/eval_…` twins — but not the layout of the files, so the
reader is tolerant: it lists the objects under the URI, reads small ones as JSON, JSON lines or
CSV, and collects every numeric value found under one of those names (a key, or a
`metric`/`name` field beside a `value`). What it cannot recognise it says so, never guesses.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.errors import ApiError, TransportError
from reconciler.storage import parse_gs_uri

METRICS = (
    "train_total_loss",
    "train_fraction_of_correct_next_step_preds",
    "train_num_predictions",
    "eval_total_loss",
    "eval_fraction_of_correct_next_step_preds",
    "eval_num_predictions",
)
MAX_FILES = 20
MAX_BYTES = 2 * 1024 * 1024


class ObjectReader(Protocol):
    def list(self, bucket: str, prefix: str) -> list[dict[str, Any]]: ...
    def download(self, bucket: str, name: str, generation: int | None = None) -> bytes: ...


@dataclass
class MetricsSummary:
    uri: str
    files: int = 0
    series: dict[str, list[float]] = field(default_factory=dict)
    problem: str | None = None

    def lines(self) -> list[str]:
        if self.problem:
            return [f"metrics at {self.uri}: {self.problem}"]
        if not self.series:
            return [f"metrics at {self.uri}: {self.files} file(s), no recognisable metric series"]
        out = []
        for name in METRICS:
            values = self.series.get(name)
            if values:
                out.append(f"{name}: last {values[-1]:.4g}, first {values[0]:.4g}, min {min(values):.4g} "
                           f"({len(values)} points)")
        return out


def _metric_name(key: Any) -> str | None:
    if not isinstance(key, str):
        return None
    bare = key.strip().lstrip("/").rsplit("/", 1)[-1]
    return bare if bare in METRICS else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _collect(node: Any, series: dict[str, list[float]]) -> None:
    if isinstance(node, dict):
        labelled = _metric_name(node.get("metric") or node.get("name"))
        value = _number(node.get("value"))
        if labelled and value is not None:
            series.setdefault(labelled, []).append(value)
        for key, child in node.items():
            name = _metric_name(key)
            number = _number(child)
            if name and number is not None:
                series.setdefault(name, []).append(number)
            elif name and isinstance(child, list):
                series.setdefault(name, []).extend(v for v in (_number(c) for c in child) if v is not None)
            else:
                _collect(child, series)
    elif isinstance(node, list):
        for child in node:
            _collect(child, series)


def _parse(data: bytes, series: dict[str, list[float]]) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        _collect(json.loads(text), series)
        return
    except json.JSONDecodeError:
        pass
    rows = [line for line in text.splitlines() if line.strip()]
    parsed = 0
    for line in rows:
        try:
            _collect(json.loads(line), series)
            parsed += 1
        except json.JSONDecodeError:
            continue
    if not parsed and rows:
        _collect(list(csv.DictReader(io.StringIO(text))), series)


def read_metrics(storage: ObjectReader, uri: str) -> MetricsSummary:
    """Summarise the metric files under `uri` (a gs:// folder or object)."""
    summary = MetricsSummary(uri)
    try:
        bucket, prefix = parse_gs_uri(uri)
        objects = [o for o in storage.list(bucket, prefix) if int(o.get("size") or 0) <= MAX_BYTES]
        for item in objects[:MAX_FILES]:
            _parse(storage.download(bucket, str(item["name"])), summary.series)
            summary.files += 1
    except (ApiError, TransportError) as exc:
        summary.problem = f"cannot be read ({exc})"
    except ValueError as exc:
        summary.problem = str(exc)
    return summary
