"""Value types of the reconciler: desired models, observed jobs, job states, label names.

Pure: no I/O. A model's spec is the typed spec model of reconciler.spec and its kind
(reconciler.kinds) knows everything that follows from its fields. The spec hash covers exactly
what can change the tuned weights or where they live (project, region, base model, datasets,
hyperparameters the manifest sets, export and encryption settings); the fields marked cosmetic
(display name, description, service account) and the labels are outside it, so editing them never
re-tunes.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.kinds import Kind, kind_named, kind_of_job, kind_of_spec
from reconciler.spec import SPEC_HASH_LENGTH as SPEC_HASH_LENGTH
from reconciler.spec import SpecModel, TuningJobSpec, as_data
from reconciler.spec import canonical_json as canonical_json
from reconciler.spec import spec_hash as spec_hash

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


# The flat field names of the first release, kept for saved plans and older callers: where each
# lives in the spec. Frozen: a field added later is read and written through `.spec` only.
_LEGACY_DESIRED: dict[str, tuple[str, ...]] = {
    "base_model": ("baseModel",),
    "training_dataset_uri": ("supervisedTuningSpec", "trainingDatasetUri"),
    "validation_dataset_uri": ("supervisedTuningSpec", "validationDatasetUri"),
    "hyper_parameters": ("supervisedTuningSpec", "hyperParameters"),
    "export_last_checkpoint_only": ("supervisedTuningSpec", "exportLastCheckpointOnly"),
    "kms_key_name": ("encryptionSpec", "kmsKeyName"),
    "display_name": ("tunedModelDisplayName",),
    "description": ("description",),
    "service_account": ("serviceAccount",),
}
_LEGACY_OBSERVED: dict[str, tuple[str, ...]] = {
    "base_model": ("baseModel",),
    "display_name": ("tunedModelDisplayName",),
    "description": ("description",),
    "service_account": ("serviceAccount",),
    "supervised_tuning_spec": ("supervisedTuningSpec",),
    "kms_key_name": ("encryptionSpec", "kmsKeyName"),
}


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path[:-1]:
        data = data.get(key) or {}
    return data.get(path[-1])


def _put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set (or, for None and empty objects, remove) the member at `path`, copying on the way."""
    if len(path) > 1:
        inner = dict(data.get(path[0]) or {})
        _put(inner, path[1:], value)
        if inner:
            data[path[0]] = inner
        else:
            data.pop(path[0], None)
    elif value is None or value == {}:
        data.pop(path[0], None)
    else:
        data[path[0]] = value


def _with_legacy_names(
    cls: type[Any],
    table: dict[str, tuple[str, ...]],
    to_spec: Callable[[dict[str, Any]], Any],
    *,
    empty_is_unset: bool,
) -> None:
    """Let `cls(...)` and `dataclasses.replace` take the flat legacy names: each is put into the
    spec at its path (`to_spec(old spec, data)` makes the new one)."""
    init = cls.__init__

    def __init__(self: Any, **kwargs: Any) -> None:
        legacy = {k: kwargs.pop(k) for k in list(kwargs) if k in table}
        spec = kwargs.get("spec")
        if legacy or not isinstance(spec, SpecModel):
            data = as_data(spec) if isinstance(spec, SpecModel) else dict(spec or {})
            for key, value in legacy.items():
                if key == "hyper_parameters":
                    value = dict(value or ()) or None
                _put(data, table[key], None if value == "" and empty_is_unset else value)
            kwargs["spec"] = to_spec(data)
        init(self, **kwargs)

    __init__.__doc__ = init.__doc__
    setattr(cls, "__init__", __init__)  # noqa: B010 (mypy: a method cannot be assigned)


@dataclass(frozen=True)
class DesiredModel:
    """One validated manifest: a tuned model that should exist.

    `spec` is the job's spec (reconciler.spec) in REST names; the parent (project, region), the
    labels (metadata.labels) and the reconciler's own settings sit beside it. The flat names of
    the first release (`base_model`, `hyper_parameters`, …) are still accepted and read."""

    name: str
    project: str
    region: str
    source: str  # "file:line" of the document
    spec: TuningJobSpec
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
    # servingCheckpoint: the checkpoint whose endpoint the state exports (not re-tuned: a choice
    # among what the job already made)
    serving_checkpoint: str | None = None
    # ignoreChanges: cosmetic fields whose differences the plan no longer notes (terraform's
    # lifecycle.ignore_changes): accepted as they are on the job
    ignore_changes: tuple[str, ...] = ()

    @property
    def kind(self) -> Kind:
        return kind_of_spec(self.spec)

    @property
    def reference(self) -> str | None:
        """The manifest whose tuned model this one continues (`preTunedModel.model`), if any."""
        value = _get(self._data, ("preTunedModel", "model"))
        return value if isinstance(value, str) else None

    @property
    def method_spec(self) -> dict[str, Any]:
        """The tuning method's spec (`supervisedTuningSpec`, `preferenceOptimizationSpec`)."""
        return dict(self._data.get(self.kind.method_field) or {})

    def equivalents(self) -> dict[str, DesiredModel]:
        """This model under each spelling of its spec that the service cannot tell apart (a false
        `bool` or none), by spec hash; its own first. A job labelled with any of these hashes is
        a job of this spec (the planner matches it: `plan.continuation.spelled_as_jobs`)."""
        out: dict[str, DesiredModel] = {}
        for spec in self.kind.equivalents(self.spec):
            variant = self if spec == self.spec else dataclasses.replace(self, spec=spec)
            out.setdefault(variant.spec_hash, variant)
        return out

    def written_labels(self, stack: str) -> dict[str, str]:
        """Every label a create of this model writes: the manifest's, the reconciler's own and
        the request label the client adds (values not known yet as placeholders of their length)."""
        # the spec hash's value does not change the count (and is not computed for it)
        labels = {**self.job_labels(stack, spec_hash="0" * SPEC_HASH_LENGTH), LABEL_REQUEST: "0" * 24}
        if self.pin_datasets:  # its value comes from Cloud Storage at plan time
            labels.setdefault(LABEL_DATA, "0" * SPEC_HASH_LENGTH)
        return labels

    @cached_property
    def _data(self) -> dict[str, Any]:
        return as_data(self.spec)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (a saved plan carries the manifests it was made from): the flat names
        of the first release, and `spec` for the fields they do not cover."""
        data: dict[str, Any] = {"name": self.name, "project": self.project, "region": self.region}
        rest = dict(self._data)
        for key, path in _LEGACY_DESIRED.items():
            data[key] = _get(self._data, path)
            _put(rest, path, None)
        data["hyper_parameters"] = data["hyper_parameters"] or {}
        data.update(source=self.source, labels=dict(self.labels), protect=self.protect,
                    max_attempts=self.max_attempts, smoke_prompt=self.smoke_prompt,
                    smoke_expect=self.smoke_expect, smoke_gate=self.smoke_gate,
                    pin_datasets=self.pin_datasets, dataset_pins=self.pins(),
                    training_bytes=self.training_bytes)
        if self.serving_checkpoint is not None:  # absent when unset: saved plans of before read the same
            data["serving_checkpoint"] = self.serving_checkpoint
        if self.ignore_changes:  # likewise
            data["ignore_changes"] = list(self.ignore_changes)
        if rest:
            data["spec"] = rest
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesiredModel:
        values = dict(data)
        values["labels"] = tuple(sorted(dict(values.get("labels") or {}).items()))
        values["dataset_pins"] = pins_tuple(values.get("dataset_pins") or {})
        values["spec"] = dict(values.get("spec") or {})
        values["ignore_changes"] = tuple(values.get("ignore_changes") or ())
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
        return self.kind.canonical(self.spec, self.project, self.region)

    @cached_property
    def spec_hash(self) -> str:
        """Computed once per model (the planner asks for it a dozen times per model; the spec is
        never changed after load: a changed model is a new one, `dataclasses.replace`)."""
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
        return self.kind.cosmetic(self.spec, name=self.name, labels=dict(self.labels))

    def job_labels(self, stack: str, *, spec_hash: str | None = None) -> dict[str, str]:
        """The labels of the create body: the manifest's and the ownership labels (with
        `spec_hash` in place of the model's own, when given)."""
        labels = {**dict(self.labels), **ownership_labels(stack, self.name, spec_hash or self.spec_hash)}
        if self.protect:
            labels[LABEL_PROTECT] = "true"
        if self.data_hash:
            labels[LABEL_DATA] = self.data_hash
        return labels

    def request_body(self, stack: str) -> dict[str, Any]:
        """The TuningJob create body, ownership labels included (the request label is added
        by the client)."""
        return self.kind.request_body(self.spec, name=self.name, labels=self.job_labels(stack))

    def seen_on(self, job: ObservedJob) -> dict[str, Any]:
        """A job's spec in the shape of `tuning_spec`, without the members this manifest leaves
        to the service (whatever the service chose is no difference). Import records its hash."""
        _, project, _, region = job.parent.split("/")[:4]
        return self.kind.seen_as(job.spec, self.spec, project, region)

    def cosmetic_notes(self, job: ObservedJob, recorded: dict[str, Any] | None = None) -> list[str]:
        """Cosmetic changes `job` cannot take (jobs cannot be edited): notes, never a re-tune.
        `recorded` is the state's cosmetic record of that job, when the state has one."""
        want = self.cosmetic()
        if recorded is not None:
            have, label_keys = recorded, set(want["labels"]) | set(recorded.get("labels", {}))
        else:  # labels the service added are not ours to compare
            have, label_keys = job.cosmetic(), set(want["labels"])
        notes = self.kind.cosmetic_notes(self.spec, want, have, label_keys, name=self.name)
        return [n for n in notes if n.split(":", 1)[0] not in self.ignore_changes]

    # -- the flat names of the first release (read-only views of `spec`) --
    @property
    def base_model(self) -> str:
        return str(self._data.get("baseModel") or "")

    @property
    def training_dataset_uri(self) -> str:
        return str(self.method_spec.get("trainingDatasetUri") or "")

    @property
    def validation_dataset_uri(self) -> str | None:
        value = self.method_spec.get("validationDatasetUri")
        return value if isinstance(value, str) else None

    @property
    def hyper_parameters(self) -> tuple[tuple[str, Any], ...]:
        return tuple((self.method_spec.get("hyperParameters") or {}).items())

    @property
    def export_last_checkpoint_only(self) -> bool | None:
        value = self.method_spec.get("exportLastCheckpointOnly")
        return value if isinstance(value, bool) else None

    @property
    def kms_key_name(self) -> str | None:
        return _get(self._data, _LEGACY_DESIRED["kms_key_name"])  # type: ignore[no-any-return]

    @property
    def display_name(self) -> str | None:
        return self._data.get("tunedModelDisplayName")

    @property
    def description(self) -> str | None:
        return self._data.get("description")

    @property
    def service_account(self) -> str | None:
        return self._data.get("serviceAccount")


def _desired_spec(data: dict[str, Any]) -> TuningJobSpec:
    return kind_of_job(data).from_data(data)


_with_legacy_names(DesiredModel, _LEGACY_DESIRED, _desired_spec, empty_is_unset=False)


def pins_tuple(pins: dict[str, dict[str, str]]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Dataset pins as the hashable tuples DesiredModel keeps."""
    return tuple(sorted((field, tuple(sorted(meta.items()))) for field, meta in pins.items()))


def ownership_labels(stack: str, name: str, hash_: str) -> dict[str, str]:
    return {LABEL_MANAGED: TOOL, LABEL_STACK: stack, LABEL_NAME: name, LABEL_SPEC: hash_}


@dataclass(frozen=True)
class ObservedJob:
    """A tuning job as listed by the API, reduced to what planning needs.

    `spec` is the job's spec as its kind reads it off the wire (REST names, manifest types, not
    validated: a job made elsewhere may break a manifest's rules). The flat names of the first
    release (`base_model`, `supervised_tuning_spec`, …) are still accepted and read."""

    name: str  # full resource name (the service uses the project number)
    parent: str  # the parent it was listed under (as the reconciler addressed it)
    state: str
    labels: dict[str, str] = field(default_factory=dict)
    create_time: str = ""
    end_time: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    kind_name: str = "supervised"
    error_code: int | None = None
    error_message: str | None = None
    tuned_model: str | None = None
    endpoint: str | None = None
    start_time: str = ""
    tuning_data_stats: dict[str, Any] = field(default_factory=dict)
    experiment: str | None = None
    gcs_metrics_uri: str | None = None
    # tunedModel.checkpoints (checkpointId, epoch, step, endpoint) and evaluateDatasetRuns, as the
    # API shows them (int64 as int); empty when it shows none
    checkpoints: tuple[dict[str, Any], ...] = ()
    evaluations: tuple[dict[str, Any], ...] = ()

    @property
    def kind(self) -> Kind:
        return kind_named(self.kind_name)

    def checkpoint_endpoint(self, checkpoint_id: str) -> str | None:
        """The endpoint the job's checkpoint `checkpoint_id` is deployed to, if the API shows one."""
        return next((str(c["endpoint"]) for c in self.checkpoints
                     if str(c.get("checkpointId")) == checkpoint_id and c.get("endpoint")), None)

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
    def address(self) -> str:
        """The path every call about this job is made at: the parent that was LISTED plus the
        job's id — never the project segment the server put in the name (a list answer may name
        another project's job; addressed this way, the service resolves it in ours, or 404s)."""
        return f"{self.parent}/tuningJobs/{self.name.rsplit('/', 1)[-1]}"

    @property
    def sort_key(self) -> tuple[str, str]:
        """Creation order: createTime, then the name (ids grow)."""
        return (time_key(self.create_time), self.name.rsplit("/", 1)[-1].rjust(32, "0"))

    def tuning_spec(self, parent_project: str, region: str) -> dict[str, Any]:
        """The job's spec in the shape of DesiredModel.tuning_spec, for explaining diffs."""
        return self.kind.observed_canonical(self.spec, parent_project, region)

    def cosmetic(self) -> dict[str, Any]:
        user_labels = {
            k: v
            for k, v in self.labels.items()
            if k != LABEL_MANAGED and not k.startswith(RESERVED_LABEL_PREFIX)
        }
        return self.kind.observed_cosmetic(self.spec, user_labels)

    # -- the flat names of the first release (read-only views of `spec`) --
    @property
    def base_model(self) -> str:
        return str(self.spec.get("baseModel") or "")

    @property
    def display_name(self) -> str:
        return str(self.spec.get("tunedModelDisplayName") or "")

    @property
    def description(self) -> str:
        return str(self.spec.get("description") or "")

    @property
    def service_account(self) -> str:
        return str(self.spec.get("serviceAccount") or "")

    @property
    def supervised_tuning_spec(self) -> dict[str, Any]:
        return dict(self.spec.get("supervisedTuningSpec") or {})

    @property
    def kms_key_name(self) -> str | None:
        value = _get(self.spec, _LEGACY_OBSERVED["kms_key_name"])
        return value if isinstance(value, str) and value else None


_with_legacy_names(ObservedJob, _LEGACY_OBSERVED, lambda data: data, empty_is_unset=True)


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
