"""Dataset metadata from Cloud Storage: pins for `pinDatasets`, sizes for cost estimates.

A pinned dataset's content identity (crc32c, md5Hash and size; the generation only when the
object has no checksum) becomes part of the spec hash, so a new upload of *different* data to the
same URI is a `replace` ("training data changed"), while re-uploading the same bytes is not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from reconciler import interrupt
from reconciler.errors import ApiError, PlanError, TransportError
from reconciler.models import DesiredModel, pins_tuple
from reconciler.storage import parse_gs_uri


class Metadata(Protocol):
    def metadata(self, bucket: str, name: str) -> dict[str, Any] | None: ...


def _identity(meta: dict[str, Any]) -> dict[str, str]:
    pin = {k: str(meta[k]) for k in ("crc32c", "md5Hash") if meta.get(k)}
    if not pin:
        pin["generation"] = str(meta.get("generation", ""))
    pin["size"] = str(meta.get("size", ""))
    return pin


def resolve(
    models: Sequence[DesiredModel],
    storage: Metadata,
    *,
    sizes_for: Iterable[str] = (),
    workers: int = 8,
    on_missing: Callable[[str], str] = lambda uri: f"{uri} does not exist in Cloud Storage",
) -> list[DesiredModel]:
    """The models with pins (for `pinDatasets`) and training sizes (for those, and for the names
    in `sizes_for`) filled in from object metadata. Missing objects are one PlanError listing
    every one, with the manifest's file and line."""
    want_sizes = set(sizes_for)
    todo = [d for d in models if d.pin_datasets or d.name in want_sizes]
    problems: list[str] = []

    def fetch(d: DesiredModel) -> DesiredModel:
        fields = [("trainingDatasetUri", d.training_dataset_uri)]
        if d.pin_datasets and d.validation_dataset_uri:
            fields.append(("validationDatasetUri", d.validation_dataset_uri))
        pins: dict[str, dict[str, str]] = {}
        size: int | None = None
        for field, uri in fields:
            try:
                meta = storage.metadata(*parse_gs_uri(uri))
            except (ApiError, TransportError) as exc:
                problems.append(f"{d.source}: spec.supervisedTuningSpec.{field}: cannot read {uri}: {exc}")
                return d
            if meta is None:
                problems.append(f"{d.source}: spec.supervisedTuningSpec.{field}: {on_missing(uri)}")
                return d
            pins[field] = _identity(meta)
            if field == "trainingDatasetUri":
                size = int(meta.get("size") or 0)
        return dataclasses.replace(d, dataset_pins=pins_tuple(pins) if d.pin_datasets else (), training_bytes=size)

    if not todo:
        return list(models)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo))), initializer=interrupt.worker_thread) as pool:
        done = {d.name: d for d in pool.map(fetch, todo)}
    if problems:
        raise PlanError("\n".join(sorted(problems)))
    return [done.get(d.name, d) for d in models]



