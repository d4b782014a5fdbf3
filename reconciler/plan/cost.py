"""What a new tuning job will cost: training tokens × epochs × the base model's price. Pure.

The price per million training tokens comes from the catalog the planner is given (the shipped
catalog has none: no Google pricing page was among its sources) with reconciler.yaml's `prices:`
and `models:` laid over it, and a `prices` mapping given to the planner on top. Epochs are read
from the request the change sends, whatever its tuning method (`supervisedTuningSpec` or
`preferenceOptimizationSpec`, each with `hyperParameters.epochCount`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.catalog import ASSUMED_EPOCHS, BYTES_PER_TOKEN, Catalog
from reconciler.models import DesiredModel
from reconciler.plan.types import CreateJob

# The request's tuning-method field → the catalog's method name.
METHOD_FIELDS = {"supervisedTuningSpec": "supervised", "preferenceOptimizationSpec": "preference"}
HOW_TO_PRICE = "set prices: or models: in reconciler.yaml (docs/manifest.md, the model catalog)"


def method_of(request: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The tuning method a request uses and its spec (supervised, empty, when none is found)."""
    for field, method in METHOD_FIELDS.items():
        spec = request.get(field)
        if isinstance(spec, Mapping):
            return method, spec
    return "supervised", {}


def epochs_of(spec: Mapping[str, Any]) -> int | None:
    """`hyperParameters.epochCount` of a method spec (an int64 string on the wire), if set."""
    hp = spec.get("hyperParameters")
    value = hp.get("epochCount") if isinstance(hp, Mapping) else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def price_of(base_model: str | None, method: str, catalog: Catalog | None,
             prices: Mapping[str, float]) -> float | None:
    """USD per 1M training tokens: `prices` first, then the catalog's entry for the method."""
    if not base_model:
        return None
    info = catalog.lookup(base_model) if catalog else None
    model_id = info.model_id if info else base_model
    for key in (base_model, model_id):
        if key in prices:
            return prices[key]
    return info.price(method) if info else None


def with_cost(change: CreateJob, d: DesiredModel, catalog: Catalog | None,
              prices: Mapping[str, float] | None = None) -> CreateJob:
    """The change with an estimate of what its tuning job will cost (training tokens only)."""
    if d.training_bytes is None:
        return change.model_copy(update={"cost_note": "dataset size unknown (pinDatasets or --estimate-cost reads it)"})
    method, spec = method_of(change.request)
    base = change.request.get("baseModel")
    base_model = base if isinstance(base, str) else None
    price = price_of(base_model, method, catalog, prices or {})
    if price is None:
        what = f"{base_model} ({method} tuning)" if base_model else "a continuation (its base model is the service's)"
        return change.model_copy(update={"cost_note": f"no price for {what}: {HOW_TO_PRICE}"})
    set_epochs = epochs_of(spec)
    epochs = set_epochs if set_epochs is not None else ASSUMED_EPOCHS
    tokens = d.training_bytes / BYTES_PER_TOKEN
    cost = round(tokens * epochs / 1_000_000 * price, 2)
    assumed = "" if set_epochs is not None else " (epochs assumed)"
    note = f"≈ {tokens:,.0f} tokens × {epochs} epochs{assumed} × ${price:.2f} per 1M"
    if method == "preference":
        note += " (preference tuning bills 2 × prompt + completion tokens; the estimate counts the file once)"
    return change.model_copy(update={"cost_usd": cost, "cost_note": note})
