"""The wire format of TuningJob requests: schema, proto3-JSON parsing, validation, encodings.

The emulator's own reading of the v1 REST contract (discovery document and proto), kept
independent of the reconciler's client. Parsing follows proto3 JSON as Google's front end does:
fields by lowerCamelCase or proto name, enums by name or number, int64 as number or string,
`null` as unset, unknown fields rejected with the front end's message. Output-only fields sent
in a request are ignored (AIP-203).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.emulator.errors import invalid_argument

# The emulator's own list of tunable base models (adapter sizes, methods, retirement), re-exported.
from reconciler.emulator.models import ADAPTER_SIZES as ADAPTER_SIZES
from reconciler.emulator.models import TUNABLE_MODELS as TUNABLE_MODELS
from reconciler.emulator.models import TunableModel as TunableModel

JOB_STATES = (
    "JOB_STATE_UNSPECIFIED",
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
)  # position = proto number
# Field order of the TuningJob proto, which is the order Google's JSON printer emits.
TUNING_JOB_ORDER = (
    "name",
    "tunedModelDisplayName",
    "description",
    "baseModel",
    "preTunedModel",
    "supervisedTuningSpec",
    "preferenceOptimizationSpec",
    "state",
    "createTime",
    "startTime",
    "endTime",
    "updateTime",
    "error",
    "labels",
    "experiment",
    "tunedModel",
    "tuningDataStats",
    "encryptionSpec",
    "serviceAccount",
    "gcsMetricsUri",
    "evaluateDatasetRuns",
)

_PKG = "google.cloud.aiplatform.v1"
_GCS_URI = re.compile(r"gs://[a-z0-9][a-z0-9._-]*/\S+")
_DATASET_NAME = re.compile(r"projects/[^/\s]+/locations/[^/\s]+/datasets/[^/\s]+")
_LABEL_MAX = 64
_LABEL_TEXT_MAX = 63
_DISPLAY_NAME_MAX = 128
_INT64 = 2**63


def snake(name: str) -> str:
    """The proto field name of a JSON (lowerCamelCase) field name."""
    return re.sub(r"([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True)
class Field:
    """One field of a request message: its JSON kind and, for messages and enums, its type."""

    # string | bool | int32 | int64 | double | enum | message | list (of messages; an empty
    # Message: of objects) | map | object | output
    kind: str
    message: Message | None = None
    enum: tuple[str, Mapping[str, int]] | None = None  # (type name, name -> number)


@dataclass(frozen=True)
class Message:
    """A request message type: proto type name and its fields by JSON name, in proto order."""

    type_name: str
    fields: Mapping[str, Field]
    by_proto_name: Mapping[str, str] = field(init=False)  # base_model -> baseModel

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_proto_name", {snake(name): name for name in self.fields})


_ADAPTER = Field("enum", enum=(f"{_PKG}.SupervisedHyperParameters.AdapterSize", ADAPTER_SIZES))
_HYPER = Message(
    f"{_PKG}.SupervisedHyperParameters",
    {
        "epochCount": Field("int64"),
        "learningRateMultiplier": Field("double"),
        "adapterSize": _ADAPTER,
    },
)
# EvaluationConfig: its own fields are checked; a Metric (a bag of a dozen metric specs) and a
# GenerationConfig are taken as given, as objects.
_GCS_DESTINATION = Message(f"{_PKG}.GcsDestination", {"outputUriPrefix": Field("string")})
_AUTORATER = Message(
    f"{_PKG}.AutoraterConfig",
    {
        "samplingCount": Field("int32"),
        "flipEnabled": Field("bool"),
        "autoraterModel": Field("string"),
        "generationConfig": Field("object"),
    },
)
_CUSTOM_METRIC = Message(
    f"{_PKG}.DatasetCustomMetric",
    {"displayName": Field("string"), "aggregationFunction": Field("string")},
)
_EVALUATION = Message(
    f"{_PKG}.EvaluationConfig",
    {
        "metrics": Field("list", Message(f"{_PKG}.Metric", {})),
        "outputConfig": Field(
            "message",
            Message(f"{_PKG}.OutputConfig", {"gcsDestination": Field("message", _GCS_DESTINATION)}),
        ),
        "autoraterConfig": Field("message", _AUTORATER),
        "inferenceGenerationConfig": Field("object"),
        "datasetCustomMetrics": Field("list", _CUSTOM_METRIC),
    },
)
_SUPERVISED = Message(
    f"{_PKG}.SupervisedTuningSpec",
    {
        "trainingDatasetUri": Field("string"),
        "validationDatasetUri": Field("string"),
        "hyperParameters": Field("message", _HYPER),
        "exportLastCheckpointOnly": Field("bool"),
        "evaluationConfig": Field("message", _EVALUATION),
    },
)
_PREFERENCE_HYPER = Message(
    f"{_PKG}.PreferenceOptimizationHyperParameters",
    {
        "epochCount": Field("int64"),
        "learningRateMultiplier": Field("double"),
        "adapterSize": Field(
            "enum",
            enum=(f"{_PKG}.PreferenceOptimizationHyperParameters.AdapterSize", ADAPTER_SIZES),
        ),
        "beta": Field("double"),
    },
)
_PREFERENCE = Message(
    f"{_PKG}.PreferenceOptimizationSpec",
    {
        "trainingDatasetUri": Field("string"),
        "validationDatasetUri": Field("string"),
        "hyperParameters": Field("message", _PREFERENCE_HYPER),
        "exportLastCheckpointOnly": Field("bool"),
    },
)
_PRE_TUNED = Message(
    f"{_PKG}.PreTunedModel",
    {
        "tunedModelName": Field("string"),
        "checkpointId": Field("string"),
        "baseModel": Field("output"),
    },
)
_ENCRYPTION = Message(f"{_PKG}.EncryptionSpec", {"kmsKeyName": Field("string")})
TUNING_JOB = Message(
    f"{_PKG}.TuningJob",
    {
        "tunedModelDisplayName": Field("string"),
        "description": Field("string"),
        "baseModel": Field("string"),
        "preTunedModel": Field("message", _PRE_TUNED),
        "supervisedTuningSpec": Field("message", _SUPERVISED),
        "preferenceOptimizationSpec": Field("message", _PREFERENCE),
        "labels": Field("map"),
        "encryptionSpec": Field("message", _ENCRYPTION),
        "serviceAccount": Field("string"),
        **{
            name: Field("output")
            for name in (
                "name",
                "state",
                "createTime",
                "startTime",
                "endTime",
                "updateTime",
                "error",
                "experiment",
                "tunedModel",
                "tuningDataStats",
                "gcsMetricsUri",
                "evaluateDatasetRuns",
            )
        },
    },
)
TUNING_JOB_FIELDS = frozenset(k for k, f in TUNING_JOB.fields.items() if f.kind != "output")


class _Parser:
    """Parses one proto3-JSON value against a message type, collecting every violation."""

    def __init__(self) -> None:
        self.violations: list[tuple[str, str]] = []

    def invalid(self, path: str, type_name: str, value: Any) -> None:
        where = f" at '{path}'" if path else ""
        self.violations.append((path, f"Invalid value{where} ({type_name}), {json.dumps(value)}"))

    def message(self, value: Any, message: Message, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.invalid(path, f"type.googleapis.com/{message.type_name}", value)
            return {}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if key in message.fields else message.by_proto_name.get(key, key)
            spec = message.fields.get(name)
            if spec is None:
                where = f" at '{path}'" if path else ""
                text = f"Invalid JSON payload received. Unknown name {json.dumps(key)}{where}"
                self.violations.append((path, f"{text}: Cannot find field."))
            elif item is not None and spec.kind != "output":
                parsed = self.value(item, spec, f"{path}.{snake(name)}")
                if parsed is not None:
                    out[name] = parsed
        return {k: out[k] for k in message.fields if k in out}

    def value(self, item: Any, spec: Field, path: str) -> Any:
        """The canonical JSON of one field value, or None when it is the proto3 default."""
        if spec.kind == "string":
            if not isinstance(item, str):
                return self.invalid(path, "TYPE_STRING", item)
            return item or None
        if spec.kind == "bool":
            if not isinstance(item, bool):
                return self.invalid(path, "TYPE_BOOL", item)
            return item or None
        if spec.kind == "int32":
            number = _as_int64(item)
            if number is None or not -(2**31) <= number < 2**31:
                return self.invalid(path, "TYPE_INT32", item)
            return number or None
        if spec.kind == "list":
            assert spec.message is not None
            if not isinstance(item, list):
                return self.invalid(path, f"type.googleapis.com/{spec.message.type_name}", item)
            items = [
                self.object(one, f"{path}[{i}]")
                if not spec.message.fields
                else self.message(one, spec.message, f"{path}[{i}]")
                for i, one in enumerate(item)
            ]
            return items or None
        if spec.kind == "int64":
            number = _as_int64(item)
            return self.invalid(path, "TYPE_INT64", item) if number is None else str(number)
        if spec.kind == "double":
            real = _as_double(item)
            return self.invalid(path, "TYPE_DOUBLE", item) if real is None else real
        if spec.kind == "enum":
            assert spec.enum is not None
            type_name, numbers = spec.enum
            names = {n: name for name, n in numbers.items()}
            if isinstance(item, str) and item in numbers:
                name = item
            elif isinstance(item, int) and not isinstance(item, bool) and item in names:
                name = names[item]
            else:
                return self.invalid(path, f"type.googleapis.com/{type_name}", item)
            return None if numbers[name] == 0 else name
        if spec.kind == "message":
            assert spec.message is not None
            return self.message(item, spec.message, path)
        if spec.kind == "map":
            if not isinstance(item, dict):
                return self.invalid(path, "map<string, string>", item)
            for key, text in item.items():
                if not isinstance(text, str):
                    self.invalid(f"{path}[{key}]", "TYPE_STRING", text)
            return dict(item) or None
        return self.object(item, path)

    def object(self, item: Any, path: str) -> Any:
        """A message taken as given (not checked inside): it must be a JSON object."""
        if not isinstance(item, dict):
            return self.invalid(path, "type.googleapis.com/google.protobuf.Struct", item)
        return item


def _as_int64(item: Any) -> int | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    if isinstance(item, str) and re.fullmatch(r"-?\d+", item):
        item = int(item)
    return item if isinstance(item, int) and -_INT64 <= item < _INT64 else None


def _as_double(item: Any) -> float | None:
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return float(item)
    if isinstance(item, str):
        try:
            return float(item)
        except ValueError:
            return None
    return None


def parse_message(body: Any, message: Message, root: str) -> dict[str, Any]:
    """Canonical proto3 JSON of a request body, or 400 INVALID_ARGUMENT naming every bad field."""
    parser = _Parser()
    parsed = parser.message(body, message, root)
    if parser.violations:
        raise invalid_argument("\n".join(text for _, text in parser.violations), parser.violations)
    return parsed


def base_model_id(base_model: str) -> str:
    """The bare model id of a base model reference (no publisher prefix, no @version)."""
    return base_model.rsplit("/", 1)[-1].split("@", 1)[0]


def tuning_spec_key(job: Mapping[str, Any]) -> str:
    """The JSON name of the job's tuning spec (oneof tuning_spec): supervised unless preference."""
    if "preferenceOptimizationSpec" in job and "supervisedTuningSpec" not in job:
        return "preferenceOptimizationSpec"
    return "supervisedTuningSpec"


def check_tuning_job(job: Mapping[str, Any], pre_tuned_base: str | None = None) -> None:
    """The service's semantic rules on a parsed TuningJob; 400 INVALID_ARGUMENT names each field.

    `pre_tuned_base` is the base model of the job's pre-tuned model (continuous tuning), found by
    the caller, which knows the models the service holds.
    """
    problems: list[tuple[str, str]] = []

    def problem(where: str, text: str) -> None:
        problems.append((f"tuning_job.{where}", f"{where} {text}"))

    # oneof source_model { base_model; pre_tuned_model } and oneof tuning_spec { supervised; preference }
    if "baseModel" in job and "preTunedModel" in job:
        problem("pre_tuned_model", "cannot be set with base_model: a job tunes one or the other.")
    elif "preTunedModel" in job and not job["preTunedModel"].get("tunedModelName"):
        problem("pre_tuned_model.tuned_model_name", "is required.")
    elif "preTunedModel" not in job and not job.get("baseModel"):
        problem("base_model", "is required (or pre_tuned_model, for continuous tuning).")
    if "supervisedTuningSpec" in job and "preferenceOptimizationSpec" in job:
        text = "cannot be set with supervised_tuning_spec: a job has one tuning spec."
        problem("preference_optimization_spec", text)
    spec_key = tuning_spec_key(job)
    spec_name = snake(spec_key)
    spec = job.get(spec_key, {})
    hyper = spec.get("hyperParameters", {})
    base_model = pre_tuned_base if "preTunedModel" in job else job.get("baseModel")
    model = TUNABLE_MODELS.get(base_model_id(base_model)) if base_model else None
    if base_model and model is None and "preTunedModel" not in job:
        supported = ", ".join(TUNABLE_MODELS)
        problem("base_model", f"{base_model!r} is not tunable. Tunable base models: {supported}.")
    if model is not None:
        _check_model(job, model, base_model or "", problem)
    for key in ("trainingDatasetUri", "validationDatasetUri"):
        uri = spec.get(key)
        where = f"{spec_name}.{snake(key)}"
        # Only supervised tuning documents Vertex dataset names ("or as the resource name of a
        # Vertex Multimodal Dataset"); preference says "Cloud Storage path ... JSONL".
        dataset = spec_key == "supervisedTuningSpec" and uri and _DATASET_NAME.fullmatch(uri)
        if uri is None and key == "trainingDatasetUri":
            problem(where, "is required.")
        elif uri is not None and not (_GCS_URI.fullmatch(uri) or dataset):
            allowed = (
                " or a Vertex dataset resource name" if spec_key == "supervisedTuningSpec" else ""
            )
            problem(where, f"must be gs://bucket/object{allowed}, got {uri!r}.")
    if "epochCount" in hyper and int(hyper["epochCount"]) < 1:
        problem(f"{spec_name}.hyper_parameters.epoch_count", "must be at least 1.")
    rate = hyper.get("learningRateMultiplier")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        problem(f"{spec_name}.hyper_parameters.learning_rate_multiplier", "must be > 0.")
    beta = hyper.get("beta")
    if beta is not None and not (math.isfinite(beta) and beta >= 0):
        problem(f"{spec_name}.hyper_parameters.beta", "must be a finite number >= 0.")
    if "evaluationConfig" in spec:
        _check_evaluation(spec["evaluationConfig"], f"{spec_name}.evaluation_config", problem)
    _check_labels(job.get("labels", {}), problem)
    if len(job.get("tunedModelDisplayName", "")) > _DISPLAY_NAME_MAX:
        problem("tuned_model_display_name", f"must be at most {_DISPLAY_NAME_MAX} characters.")
    if "encryptionSpec" in job and "kmsKeyName" not in job["encryptionSpec"]:
        problem("encryption_spec.kms_key_name", "is required.")
    if problems:
        raise invalid_argument("\n".join(text for _, text in problems), problems)


def _check_model(
    job: Mapping[str, Any],
    model: TunableModel,
    base_model: str,
    problem: Callable[[str, str], None],
) -> None:
    """The rules of one base model: the methods and adapter sizes it takes."""
    if "preTunedModel" in job and not model.continuous:
        problem(
            "pre_tuned_model", f"continuous tuning is not supported for base model {base_model}."
        )
    if "preferenceOptimizationSpec" in job and not model.preference:
        problem(
            "preference_optimization_spec",
            f"preference tuning is not supported for base model {base_model}.",
        )
    spec_key = tuning_spec_key(job)
    adapter = job.get(spec_key, {}).get("hyperParameters", {}).get("adapterSize")
    sizes = model.adapter_sizes
    if spec_key == "preferenceOptimizationSpec" and model.preference_adapter_sizes is not None:
        sizes = model.preference_adapter_sizes
    if adapter and adapter not in sizes:
        # The service's own words (googleapis/python-genai#908): "The adapter size is not
        # supported for this base model."
        text = f"{adapter} is not supported for base model {base_model}."
        problem(f"{snake(spec_key)}.hyper_parameters.adapter_size", text)


def _check_evaluation(
    config: Mapping[str, Any], where: str, problem: Callable[[str, str], None]
) -> None:
    """EvaluationConfig: `metrics` and `outputConfig.gcsDestination.outputUriPrefix` required."""
    if not config.get("metrics"):
        problem(f"{where}.metrics", "is required: at least one metric.")
    prefix = config.get("outputConfig", {}).get("gcsDestination", {}).get("outputUriPrefix")
    if prefix is None:
        problem(f"{where}.output_config.gcs_destination.output_uri_prefix", "is required.")
    elif not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]*(/\S*)?", prefix):
        text = f"must be a Cloud Storage URI gs://bucket[/path], got {prefix!r}."
        problem(f"{where}.output_config.gcs_destination.output_uri_prefix", text)
    count = config.get("autoraterConfig", {}).get("samplingCount")
    if count is not None and not 1 <= count <= 32:
        problem(f"{where}.autorater_config.sampling_count", "must be from 1 to 32.")
    for i, metric in enumerate(config.get("datasetCustomMetrics", [])):
        if not metric.get("aggregationFunction"):
            problem(f"{where}.dataset_custom_metrics[{i}].aggregation_function", "is required.")


def _check_labels(labels: Mapping[str, str], problem: Callable[[str, str], None]) -> None:
    if len(labels) > _LABEL_MAX:
        problem("labels", f"has {len(labels)} entries; at most {_LABEL_MAX} are allowed.")
    for key, value in labels.items():
        if not (0 < len(key) <= _LABEL_TEXT_MAX and _label_start(key) and _label_text(key)):
            text = (
                f"key {key!r} is invalid: a key has 1-{_LABEL_TEXT_MAX} characters, starts with"
                " a lowercase letter and has only lowercase letters, digits, _ and -."
            )
            problem("labels", text)
        if not (len(value) <= _LABEL_TEXT_MAX and _label_text(value)):
            text = (
                f"value {value!r} of key {key!r} is invalid: a value has at most"
                f" {_LABEL_TEXT_MAX} characters, only lowercase letters, digits, _ and -."
            )
            problem("labels", text)


# Label text: lowercase letters (international ones too, per the TuningJob docs), digits, _, -.
def _label_start(text: str) -> bool:
    return text[0].isalpha() and not text[0].isupper()


def _label_text(text: str) -> bool:
    return all(c.isdigit() or c in "_-" or (c.isalpha() and not c.isupper()) for c in text)


def int_enums(job: dict[str, Any]) -> dict[str, Any]:
    """The job with its enums as numbers (`$alt=json;enum-encoding=int`); unknown names stay."""
    out = dict(job)
    if out.get("state") in JOB_STATES:
        out["state"] = JOB_STATES.index(out["state"])
    for spec_key in ("supervisedTuningSpec", "preferenceOptimizationSpec"):
        hyper = out.get(spec_key, {}).get("hyperParameters", {})
        if hyper.get("adapterSize") in ADAPTER_SIZES:
            hyper = {**hyper, "adapterSize": ADAPTER_SIZES[hyper["adapterSize"]]}
            out[spec_key] = {**out[spec_key], "hyperParameters": hyper}
    return out


def format_timestamp(micros: int) -> str:
    """RFC 3339 UTC with microseconds and Z, as Google's JSON printer emits timestamps."""
    when = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_timestamp(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 timestamp; ValueError when malformed."""
    match = _RFC3339.fullmatch(text)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    *parts, fraction, zone = match.groups()
    offset = dt.timezone.utc
    if zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        offset = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    year, month, day, hour, minute, second = map(int, parts)
    when = dt.datetime(year, month, day, hour, minute, second, tzinfo=offset)
    seconds = (when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(seconds=1)
    return seconds * 1_000_000 + int((fraction or "0").ljust(9, "0")[:6])


_CANCEL_REQUEST = Message(f"{_PKG}.CancelTuningJobRequest", {"name": Field("output")})


def check_cancel_request(body: Mapping[str, Any]) -> None:
    """CancelTuningJobRequest has no body fields: its only field, `name`, is in the path."""
    parse_message(body, _CANCEL_REQUEST, "")
