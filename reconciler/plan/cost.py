"""What a new tuning job will cost: training tokens × epochs × the base model's price. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.catalog import ASSUMED_EPOCHS, BYTES_PER_TOKEN, lookup
from reconciler.models import DesiredModel
from reconciler.plan.types import CreateJob


def with_cost(change: CreateJob, d: DesiredModel, prices: Mapping[str, float]) -> CreateJob:
    """The change with an estimate of what its tuning job will cost (training tokens only)."""
    if d.training_bytes is None:
        return change.model_copy(update={"cost_note": "dataset size unknown (pinDatasets or --estimate-cost reads it)"})
    info = lookup(d.base_model)
    price = prices.get(info.model_id if info else d.base_model)
    if price is None:
        return change.model_copy(update={"cost_note": f"no price for {d.base_model} (set prices: in reconciler.yaml)"})
    hp = dict(d.hyper_parameters)
    epochs = int(hp.get("epochCount", ASSUMED_EPOCHS))
    tokens = d.training_bytes / BYTES_PER_TOKEN
    cost = round(tokens * epochs / 1_000_000 * price, 2)
    assumed = "" if "epochCount" in hp else " (epochs assumed)"
    note = f"≈ {tokens:,.0f} tokens × {epochs} epochs{assumed} × ${price:.2f} per 1M"
    return change.model_copy(update={"cost_usd": cost, "cost_note": note})
