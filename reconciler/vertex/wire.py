"""Pydantic models of the Vertex AI v1 objects the reconciler reads and writes.

They follow the proto3 JSON mapping the API uses: camelCase names, int64 as strings (numbers are
accepted too), enums as names (integers, as GAPIC's `enum-encoding=int` sends them, are mapped to
names; unknown names are kept as they are, never dropped). Unknown response fields are kept
(`extra="allow"`): the API grows, and a newer field must not break an older reconciler.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reconciler.kinds import KINDS
from reconciler.spec import int64_names, int64_to_str

# google.cloud.aiplatform.v1.JobState numbers (aiplatform_v1.types.JobState).
JOB_STATES: dict[int, str] = {
    0: "JOB_STATE_UNSPECIFIED",
    1: "JOB_STATE_QUEUED",
    2: "JOB_STATE_PENDING",
    3: "JOB_STATE_RUNNING",
    4: "JOB_STATE_SUCCEEDED",
    5: "JOB_STATE_FAILED",
    6: "JOB_STATE_CANCELLING",
    7: "JOB_STATE_CANCELLED",
    8: "JOB_STATE_PAUSED",
    9: "JOB_STATE_EXPIRED",
    10: "JOB_STATE_UPDATING",
    11: "JOB_STATE_PARTIALLY_SUCCEEDED",
}

# SupervisedHyperParameters.AdapterSize numbers: the numbers are not the sizes (TWO came later: 6).
ADAPTER_SIZES: dict[int, str] = {
    0: "ADAPTER_SIZE_UNSPECIFIED",
    1: "ADAPTER_SIZE_ONE",
    6: "ADAPTER_SIZE_TWO",
    2: "ADAPTER_SIZE_FOUR",
    3: "ADAPTER_SIZE_EIGHT",
    4: "ADAPTER_SIZE_SIXTEEN",
    5: "ADAPTER_SIZE_THIRTY_TWO",
}


def _enum_name(value: Any, names: dict[int, str], prefix: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return names.get(value, f"{prefix}{value}")
    return value


def _int64(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


class WireModel(BaseModel):
    """Base: camelCase field names as on the wire, unknown fields kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body as the API expects it: unset fields left out, int64 as strings."""
        wire: dict[str, Any] = _int64_to_str(self.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return wire


# The int64 fields of every kind's spec, from the spec models' own INT64 markers (reconciler.spec).
_INT64_FIELDS = frozenset().union(*(int64_names(kind.spec_type) for kind in KINDS))


def _int64_to_str(data: Any) -> Any:
    return int64_to_str(data, _INT64_FIELDS)


class SupervisedHyperParameters(WireModel):
    epoch_count: int | None = Field(default=None, alias="epochCount")
    learning_rate_multiplier: float | None = Field(default=None, alias="learningRateMultiplier")
    adapter_size: str | None = Field(default=None, alias="adapterSize")

    @field_validator("epoch_count", mode="before")
    @classmethod
    def _epoch(cls, v: Any) -> Any:
        return _int64(v)

    @field_validator("adapter_size", mode="before")
    @classmethod
    def _adapter(cls, v: Any) -> Any:
        return _enum_name(v, ADAPTER_SIZES, "ADAPTER_SIZE_")


class SupervisedTuningSpec(WireModel):
    training_dataset_uri: str | None = Field(default=None, alias="trainingDatasetUri")
    validation_dataset_uri: str | None = Field(default=None, alias="validationDatasetUri")
    hyper_parameters: SupervisedHyperParameters | None = Field(default=None, alias="hyperParameters")
    export_last_checkpoint_only: bool | None = Field(default=None, alias="exportLastCheckpointOnly")


class TunedModelCheckpoint(WireModel):
    """One checkpoint of a tuned model (only with intermediate checkpoints exported)."""

    checkpoint_id: str | None = Field(default=None, alias="checkpointId")
    epoch: int | None = None  # int64
    step: int | None = None  # int64
    endpoint: str | None = None

    @field_validator("epoch", "step", mode="before")
    @classmethod
    def _counts(cls, v: Any) -> Any:
        return _int64(v)


class TunedModel(WireModel):
    model: str | None = None
    endpoint: str | None = None
    checkpoints: list[TunedModelCheckpoint] | None = None


class RpcStatus(WireModel):
    """google.rpc.Status."""

    code: int | None = None
    message: str | None = None
    details: list[Any] | None = None


class TuningJob(WireModel):
    name: str | None = None
    base_model: str | None = Field(default=None, alias="baseModel")
    supervised_tuning_spec: SupervisedTuningSpec | None = Field(
        default=None, alias="supervisedTuningSpec"
    )
    tuned_model_display_name: str | None = Field(default=None, alias="tunedModelDisplayName")
    description: str | None = None
    labels: dict[str, str] | None = None
    service_account: str | None = Field(default=None, alias="serviceAccount")
    state: str | None = None
    create_time: str | None = Field(default=None, alias="createTime")
    update_time: str | None = Field(default=None, alias="updateTime")
    start_time: str | None = Field(default=None, alias="startTime")
    end_time: str | None = Field(default=None, alias="endTime")
    error: RpcStatus | None = None
    tuned_model: TunedModel | None = Field(default=None, alias="tunedModel")
    tuning_data_stats: dict[str, Any] | None = Field(default=None, alias="tuningDataStats")
    experiment: str | None = None
    gcs_metrics_uri: str | None = Field(default=None, alias="gcsMetricsUri")
    # Read-only: the evaluation runs of the job (evaluationConfig), as the API shows them. The other
    # tuning fields (preTunedModel, preferenceOptimizationSpec, …) ride as extra members, read by
    # the spec model (reconciler.spec.read_observed).
    evaluate_dataset_runs: list[dict[str, Any]] | None = Field(default=None, alias="evaluateDatasetRuns")

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, v: Any) -> Any:
        return _enum_name(v, JOB_STATES, "JOB_STATE_")


class ListTuningJobsResponse(WireModel):
    tuning_jobs: list[TuningJob] = Field(default_factory=list, alias="tuningJobs")
    next_page_token: str | None = Field(default=None, alias="nextPageToken")
