"""Value types of the reconciler: desired models, their tuning spec and hash, observed jobs.

Pure: no I/O. The spec hash covers exactly what can change the tuned weights or where they live
(project, region, base model, datasets, hyperparameters the manifest sets, export and encryption
settings); display name, description and labels are outside it, so editing them never re-tunes.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

TOOL = "vertex-tuning-reconciler"

# Labels on every job the reconciler creates. Keys and values obey the label rules.
LABEL_MANAGED = "managed-by"
LABEL_STACK = "reconciler-stack"
LABEL_NAME = "reconciler-name"
LABEL_SPEC = "reconciler-spec"
LABEL_REQUEST = "reconciler-request"
LABEL_PROTECT = "reconciler-protect"  # "true" on jobs of protected models (guards a lost state)
LABEL_DATA = "reconciler-data"  # hash of the pinned datasets' content (pinDatasets)
LABEL_FOREIGN = "reconciler-foreign"  # never on a real job: marks an adopted job without our labels
RESERVED_LABEL_PREFIX = "reconciler-"
SPEC_HASH_LENGTH = 20


class StateClass(str, enum.Enum):
    """What the reconciler may do with a job, by its JobState."""

    LIVE = "live"  # QUEUED, PENDING, RUNNING, PAUSED, UPDATING: costs money, may be cancelled
    CANCELLING = "cancelling"  # cancel requested; settles later
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # FAILED, EXPIRED, PARTIALLY_SUCCEEDED: reported, never re-tuned on its own
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # a state this version does not know: shown, never acted on


_STATE_CLASSES: dict[str, StateClass] = {
    "JOB_STATE_QUEUED": StateClass.LIVE,
    "JOB_STATE_PENDING": StateClass.LIVE,
    "JOB_STATE_RUNNING": StateClass.LIVE,
    "JOB_STATE_PAUSED": StateClass.LIVE,
    "JOB_STATE_UPDATING": StateClass.LIVE,
    "JOB_STATE_CANCELLING": StateClass.CANCELLING,
    "JOB_STATE_SUCCEEDED": StateClass.SUCCEEDED,
    "JOB_STATE_FAILED": StateClass.FAILED,
    "JOB_STATE_EXPIRED": StateClass.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": StateClass.FAILED,
    "JOB_STATE_CANCELLED": StateClass.CANCELLED,
}


def classify_state(state: str | None) -> StateClass:
    return _STATE_CLASSES.get(state or "", StateClass.UNKNOWN)


def short_state(state: str | None) -> str:
    """`JOB_STATE_RUNNING` → `RUNNING`; an absent state → `UNKNOWN`."""
    if not state:
        return "UNKNOWN"
    return state.removeprefix("JOB_STATE_")


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def time_key(timestamp: str) -> str:
    """An RFC 3339 timestamp as a string that sorts in time order (fractions padded, UTC)."""
    m = _RFC3339.fullmatch(timestamp or "")
    if not m:
        return timestamp or ""
    base, frac, zone = m.group(1), (m.group(2) or "").ljust(9, "0"), m.group(3)
    if zone != "Z":
        from datetime import datetime, timezone

        try:
            moment = datetime.fromisoformat(base + zone).astimezone(timezone.utc)
        except (ValueError, OverflowError):  # matches the pattern, is no time (2024-02-30)
            return timestamp
        base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac}Z"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: dict[str, Any]) -> str:
    """Short, stable hash of a tuning spec (fits a label value)."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:SPEC_HASH_LENGTH]


@dataclass(frozen=True)
class DesiredModel:
    """One validated manifest: a tuned model that should exist."""

    name: str
    project: str
    region: str
    base_model: str
    training_dataset_uri: str
    source: str  # "file:line" of the document
    validation_dataset_uri: str | None = None
    hyper_parameters: tuple[tuple[str, Any], ...] = ()  # only those the manifest sets
    export_last_checkpoint_only: bool | None = None
    kms_key_name: str | None = None
    display_name: str | None = None
    description: str | None = None
    service_account: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    protect: bool = False
    max_attempts: int = 1  # tuning attempts per spec before a failure needs --replace
    smoke_prompt: str | None = None  # smokeTest: sent to a new endpoint before it may serve
    smoke_expect: str | None = None
    smoke_gate: bool = False
    pin_datasets: bool = False  # pinDatasets: the objects' generations are part of the spec
    # (field, ((key, value), …)) per dataset: generation, checksums, size — read from Cloud Storage
    dataset_pins: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    training_bytes: int | None = None  # size of the training dataset, when known (cost estimates)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (a saved plan carries the manifests it was made from)."""
        data = dict(self.__dict__)  # shallow: every field is a plain value or a tuple of pairs
        data["hyper_parameters"] = dict(self.hyper_parameters)
        data["labels"] = dict(self.labels)
        data["dataset_pins"] = self.pins()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesiredModel:
        values = dict(data)
        values["hyper_parameters"] = tuple(dict(values.get("hyper_parameters") or {}).items())
        values["labels"] = tuple(sorted(dict(values.get("labels") or {}).items()))
        values["dataset_pins"] = pins_tuple(values.get("dataset_pins") or {})
        return cls(**values)

    @property
    def identity(self) -> tuple[str, str | None]:
        """What a job must match to count as this model's: spec hash and pinned-data hash."""
        return self.spec_hash, self.data_hash

    @property
    def effective_display_name(self) -> str:
        return self.display_name or self.name

    def tuning_spec(self) -> dict[str, Any]:
        """What the spec hash covers, in API field names; unset fields are absent."""
        supervised: dict[str, Any] = {"trainingDatasetUri": self.training_dataset_uri}
        if self.validation_dataset_uri is not None:
            supervised["validationDatasetUri"] = self.validation_dataset_uri
        if self.hyper_parameters:
            supervised["hyperParameters"] = dict(self.hyper_parameters)
        if self.export_last_checkpoint_only is not None:
            supervised["exportLastCheckpointOnly"] = self.export_last_checkpoint_only
        spec: dict[str, Any] = {
            "project": self.project,
            "region": self.region,
            "baseModel": self.base_model,
            "supervisedTuningSpec": supervised,
        }
        if self.kms_key_name is not None:
            spec["encryptionSpec"] = {"kmsKeyName": self.kms_key_name}
        return spec

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.tuning_spec())

    def pins(self) -> dict[str, dict[str, str]]:
        return {field: dict(meta) for field, meta in self.dataset_pins}

    @property
    def data_hash(self) -> str | None:
        """Hash of the pinned datasets' content (pinDatasets), kept apart from the spec hash so
        that turning pinning on never re-tunes by itself."""
        return spec_hash({"datasetPins": self.pins()}) if self.dataset_pins else None

    def cosmetic(self) -> dict[str, Any]:
        """Fields that jobs carry but that cannot alter the weights (never re-tune on their own)."""
        return {
            "tunedModelDisplayName": self.effective_display_name,
            "description": self.description or "",
            "labels": dict(self.labels),
            "serviceAccount": self.service_account or "",
        }

    def request_body(self, stack: str) -> dict[str, Any]:
        """The TuningJob create body, ownership labels included (the request label is added
        by the client)."""
        spec = self.tuning_spec()
        supervised = dict(spec["supervisedTuningSpec"])
        if "hyperParameters" in supervised:
            hp = dict(supervised["hyperParameters"])
            if "epochCount" in hp:
                hp["epochCount"] = str(hp["epochCount"])  # proto3 JSON int64
            supervised["hyperParameters"] = hp
        body: dict[str, Any] = {
            "baseModel": self.base_model,
            "supervisedTuningSpec": supervised,
            "tunedModelDisplayName": self.effective_display_name,
            "labels": {**dict(self.labels), **ownership_labels(stack, self.name, self.spec_hash)},
        }
        if self.protect:
            body["labels"][LABEL_PROTECT] = "true"
        if self.data_hash:
            body["labels"][LABEL_DATA] = self.data_hash
        if self.description:
            body["description"] = self.description
        if self.service_account:
            body["serviceAccount"] = self.service_account
        if self.kms_key_name:
            body["encryptionSpec"] = {"kmsKeyName": self.kms_key_name}
        return body


def pins_tuple(pins: dict[str, dict[str, str]]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Dataset pins as the hashable tuples DesiredModel keeps."""
    return tuple(sorted((field, tuple(sorted(meta.items()))) for field, meta in pins.items()))


def ownership_labels(stack: str, name: str, hash_: str) -> dict[str, str]:
    return {LABEL_MANAGED: TOOL, LABEL_STACK: stack, LABEL_NAME: name, LABEL_SPEC: hash_}


@dataclass(frozen=True)
class ObservedJob:
    """A tuning job as listed by the API, reduced to what planning needs."""

    name: str  # full resource name (the service uses the project number)
    parent: str  # the parent it was listed under (as the reconciler addressed it)
    state: str
    labels: dict[str, str] = field(default_factory=dict)
    create_time: str = ""
    end_time: str = ""
    base_model: str = ""
    display_name: str = ""
    description: str = ""
    service_account: str = ""
    supervised_tuning_spec: dict[str, Any] = field(default_factory=dict)
    kms_key_name: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    tuned_model: str | None = None
    endpoint: str | None = None
    start_time: str = ""
    tuning_data_stats: dict[str, Any] = field(default_factory=dict)
    experiment: str | None = None
    gcs_metrics_uri: str | None = None

    @property
    def state_class(self) -> StateClass:
        return classify_state(self.state)

    @property
    def managed(self) -> bool:
        return self.labels.get(LABEL_MANAGED) == TOOL

    @property
    def stack(self) -> str | None:
        return self.labels.get(LABEL_STACK) if self.managed else None

    @property
    def model_name(self) -> str | None:
        return self.labels.get(LABEL_NAME) if self.managed else None

    @property
    def spec_hash(self) -> str | None:
        return self.labels.get(LABEL_SPEC) if self.managed else None

    @property
    def data_hash(self) -> str | None:
        return self.labels.get(LABEL_DATA) if self.managed else None

    @property
    def protected(self) -> bool:
        return self.managed and self.labels.get(LABEL_PROTECT) == "true"

    @property
    def sort_key(self) -> tuple[str, str]:
        """Creation order: createTime, then the name (ids grow)."""
        return (time_key(self.create_time), self.name.rsplit("/", 1)[-1].rjust(32, "0"))

    def tuning_spec(self, parent_project: str, region: str) -> dict[str, Any]:
        """The job's spec in the shape of DesiredModel.tuning_spec, for explaining diffs."""
        spec: dict[str, Any] = {
            "project": parent_project,
            "region": region,
            "baseModel": self.base_model,
            "supervisedTuningSpec": self.supervised_tuning_spec,
        }
        if self.kms_key_name:
            spec["encryptionSpec"] = {"kmsKeyName": self.kms_key_name}
        return spec

    def cosmetic(self) -> dict[str, Any]:
        user_labels = {
            k: v
            for k, v in self.labels.items()
            if k != LABEL_MANAGED and not k.startswith(RESERVED_LABEL_PREFIX)
        }
        return {
            "tunedModelDisplayName": self.display_name,
            "description": self.description,
            "labels": user_labels,
            "serviceAccount": self.service_account,
        }


# Identifiers that end up in URLs or labels: checked before anything is sent anywhere.
# Check them with `re.fullmatch`, never `re.match`: Python's `$` also matches before a final
# newline, so re.match(PATTERN, "us-central1\n") succeeds. As pydantic `pattern=` constraints they
# run on pydantic-core's Rust engine, where `$` is the end of the text (tests cover both).
PROJECT_PATTERN = r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$"
REGION_PATTERN = r"^[a-z]+(?:-[a-z]+)+[0-9]+$|^global$"
NAME_PATTERN = r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$"
STACK_PATTERN = r"^[a-z](?:[a-z0-9_-]{0,61}[a-z0-9])?$"
# What each pattern means, for error messages (a regular expression is no help to a user).
PATTERN_HELP = {
    PROJECT_PATTERN: "a project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter",
    REGION_PATTERN: "a region such as us-central1",
    NAME_PATTERN: "at most 63 lowercase letters, digits or hyphens, starting with a letter",
    STACK_PATTERN: "at most 63 lowercase letters, digits, hyphens or underscores, starting with a letter",
}
