"""The tunable Gemini base models and what each accepts.

Sources (see docs/manifest.md): the supervised-tuning guide's model list and limits tables
(gemini-supervised-tuning, tune-text-models-supervised) and the tuning API reference. Where the
docs give adapter sizes they are copied here; where the captured docs were cut off (2.0 Flash,
2.0 Flash-Lite, 2.5 Pro) the sizes are those the enum allows up to EIGHT and are marked unverified.
A parameter a known model does not take is an error; an unknown model is only a warning, since
new models appear faster than this table changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.spec import HyperParameters, fields_of

# Every hyperparameter the spec model declares (a known model takes all unless its entry says less).
HYPER_PARAMETERS = tuple(name for name, _, _ in fields_of(HyperParameters))


@dataclass(frozen=True)
class BaseModelInfo:
    """What the tuning service accepts for one base model."""

    model_id: str
    parameters: frozenset[str]
    adapter_sizes: tuple[str, ...]
    stage: str
    verified: bool = True
    note: str = ""


def _info(
    model_id: str,
    sizes: tuple[int, ...],
    stage: str,
    *,
    parameters: tuple[str, ...] = HYPER_PARAMETERS,
    verified: bool = True,
    note: str = "",
) -> BaseModelInfo:
    names = {1: "ONE", 2: "TWO", 4: "FOUR", 8: "EIGHT", 16: "SIXTEEN", 32: "THIRTY_TWO"}
    return BaseModelInfo(
        model_id,
        frozenset(parameters),
        tuple(f"ADAPTER_SIZE_{names[s]}" for s in sizes),
        stage,
        verified,
        note,
    )


CATALOG: dict[str, BaseModelInfo] = {
    m.model_id: m
    for m in (
        _info(
            "gemini-1.0-pro-002",
            (),
            "preview",
            parameters=("epochCount", "learningRateMultiplier"),
            note="text only; adapter size is not tunable",
        ),
        _info("gemini-1.5-pro-002", (1, 4), "ga", note="adapter sizes above 4 fail; legacy model"),
        _info("gemini-1.5-flash-002", (1, 4, 8, 16), "ga", note="legacy model"),
        _info("gemini-2.0-flash-001", (1, 2, 4, 8), "ga", verified=False),
        _info("gemini-2.0-flash-lite-001", (1, 2, 4, 8), "ga", verified=False),
        _info("gemini-2.5-pro", (1, 2, 4, 8), "ga", verified=False),
        _info("gemini-2.5-flash", (1, 2, 4, 8, 16), "ga"),
        _info("gemini-2.5-flash-lite", (1, 2, 4, 8, 16), "ga"),
        _info("translation-llm-002", (4,), "preview", note="us-central1 only"),
    )
}

_PREFIX = "publishers/google/models/"


def lookup(base_model: str) -> BaseModelInfo | None:
    """The catalog entry of a base model id (a `publishers/google/models/` prefix is allowed)."""
    model_id = base_model.removeprefix(_PREFIX)
    return CATALOG.get(model_id)


# USD per 1M training tokens, per base model: the figures of the Vertex AI pricing page for
# supervised tuning as the authors last read them. NOT verified against today's page: override
# them with `prices:` in reconciler.yaml. A model missing here has no estimate.
TRAINING_PRICE_PER_MILLION: dict[str, float] = {
    "gemini-2.0-flash-001": 3.00,
    "gemini-2.0-flash-lite-001": 1.00,
    "gemini-2.5-flash": 5.00,
    "gemini-2.5-flash-lite": 1.50,
    "gemini-2.5-pro": 25.00,
    "gemini-1.5-flash-002": 8.00,
    "gemini-1.5-pro-002": 80.00,
}
BYTES_PER_TOKEN = 4  # JSONL bytes per billable token: a rough, deliberately high-side guess
ASSUMED_EPOCHS = 3  # when the manifest leaves epochCount to the service
