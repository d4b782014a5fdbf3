"""Kinds of tuning job behind one protocol. Pure: no I/O.

A kind is a spec model (reconciler.spec) and everything that follows from its fields: the
canonical spec and its hash, the create request, reading a job's spec off the wire, what the state
records, and explaining a change. `SpecKind` implements all of it generically from the model's
declarations, so a kind is one line: its spec model and the API oneof field that marks its jobs.
Supervised tuning is `SUPERVISED`, preference tuning `PREFERENCE` (`PreferenceSpec` with
`preferenceOptimizationSpec`); the source (`baseModel` or `preTunedModel`) is in the shared base,
so every kind has continuous tuning (docs/architecture.md, "Spec model and kinds").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from reconciler.spec import (
    PreferenceSpec,
    SpecModel,
    SupervisedSpec,
    TuningJobSpec,
    as_data,
    canonical_json,
    construct,
    cosmetic_fields,
    false_variants,
    fields_of,
    int64_names,
    int64_to_str,
    narrowed,
    read_observed,
    restrict_to_wanted,
    spec_hash,
    with_false_defaults,
    without_cosmetic,
    without_references,
)

# The API's oneof of sources: a job is tuned from a base model or from a tuned model.
SOURCE_FIELDS = ("baseModel", "preTunedModel")


class FieldChange(BaseModel):
    """One field-level difference between two specs (a dotted path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    kind: Literal["changed", "added", "removed"]
    old: Any = None
    new: Any = None


class Kind(Protocol):
    """What the reconciler needs of one kind of tuning job."""

    @property
    def name(self) -> str: ...

    @property
    def spec_type(self) -> type[TuningJobSpec]: ...

    @property
    def method_field(self) -> str:
        """The API oneof member (the tuning method's spec) that a job of this kind carries."""
        ...

    def from_manifest(self, data: dict[str, Any]) -> TuningJobSpec:
        """The spec from a manifest's `spec` mapping (validated)."""
        ...

    def from_data(self, data: dict[str, Any]) -> TuningJobSpec:
        """The spec from plain data already checked (a saved plan), not validated again."""
        ...

    def narrow(self, spec: TuningJobSpec) -> TuningJobSpec:
        """Only this kind's fields of a validated spec (a manifest's spec extends the model)."""
        ...

    def canonical(self, spec: TuningJobSpec, project: str, region: str) -> dict[str, Any]:
        """What the spec hash covers: the parent and every field that can change the weights."""
        ...

    def spec_hash(self, spec: TuningJobSpec, project: str, region: str) -> str: ...

    def equivalents(self, spec: TuningJobSpec) -> list[TuningJobSpec]:
        """The spellings of `spec` the service cannot tell apart (a false `bool` or none), the
        spec itself first: a job made from any of them is a job of this spec."""
        ...

    def request_body(self, spec: TuningJobSpec, *, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """The TuningJob create body (proto3 JSON), with the labels given."""
        ...

    def cosmetic(self, spec: TuningJobSpec, *, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """The fields that never re-tune, as the state records them."""
        ...

    def owns(self, raw_job: dict[str, Any]) -> bool:
        """Whether a job as the API shows it is of this kind."""
        ...

    def read_observed(self, raw_job: dict[str, Any]) -> dict[str, Any]:
        """A job's spec fields off the wire, in REST names and manifest types (not validated)."""
        ...

    def observed_canonical(self, observed: dict[str, Any], project: str, region: str) -> dict[str, Any]:
        """An observed job's spec in the shape of `canonical`."""
        ...

    def observed_cosmetic(self, observed: dict[str, Any], user_labels: dict[str, str]) -> dict[str, Any]: ...

    def seen_as(self, observed: dict[str, Any], spec: TuningJobSpec, project: str, region: str) -> dict[str, Any]:
        """An observed job's canonical spec as a manifest with `spec` sees it: members the
        manifest leaves to the service are no difference."""
        ...

    def cosmetic_notes(self, spec: TuningJobSpec, want: dict[str, Any], have: dict[str, Any],
                       label_keys: set[str], *, name: str) -> list[str]:
        """What the job cannot take (jobs cannot be edited): notes, never a re-tune."""
        ...


@dataclass(frozen=True)
class SpecKind:
    """A kind made from a spec model alone; `method_field` is the API oneof member (the tuning
    method's spec) that a job of this kind carries."""

    name: str
    spec_type: type[TuningJobSpec]
    method_field: str

    def from_manifest(self, data: dict[str, Any]) -> TuningJobSpec:
        return self.spec_type.model_validate(data)

    def from_data(self, data: dict[str, Any]) -> TuningJobSpec:
        spec = construct(self.spec_type, data)
        assert isinstance(spec, TuningJobSpec)
        return spec

    def narrow(self, spec: TuningJobSpec) -> TuningJobSpec:
        """Only this kind's fields of a validated spec (a manifest's spec extends the model),
        normalised as from_data makes it (empty objects are unset), so that equal specs are equal."""
        narrow = narrowed(self.spec_type, spec)
        assert isinstance(narrow, TuningJobSpec)
        return narrow

    def canonical(self, spec: TuningJobSpec, project: str, region: str) -> dict[str, Any]:
        return {"project": project, "region": region, **without_cosmetic(spec)}

    def spec_hash(self, spec: TuningJobSpec, project: str, region: str) -> str:
        return spec_hash(self.canonical(spec, project, region))

    def equivalents(self, spec: TuningJobSpec) -> list[TuningJobSpec]:
        return [self.from_data(v) for v in false_variants(self.spec_type, as_data(spec))]

    def request_body(self, spec: TuningJobSpec, *, name: str, labels: dict[str, str]) -> dict[str, Any]:
        data = without_references(self.spec_type, as_data(spec))
        cosmetic = cosmetic_fields(self.spec_type)
        body: dict[str, Any] = {k: v for k, v in data.items() if k not in cosmetic}
        for key, mark in cosmetic.items():
            value = data.get(key) or (name if mark.unset == "name" else None)
            if value:  # proto3 JSON prints no empty string
                body[key] = value
        body["labels"] = dict(labels)
        result: dict[str, Any] = int64_to_str(body, int64_names(self.spec_type))
        return result

    def cosmetic(self, spec: TuningJobSpec, *, name: str, labels: dict[str, str]) -> dict[str, Any]:
        data = as_data(spec)
        out: dict[str, Any] = {}
        for key, mark in cosmetic_fields(self.spec_type).items():
            out[key] = data.get(key) or (name if mark.unset == "name" else "")
        out["labels"] = dict(labels)
        return out

    def owns(self, raw_job: dict[str, Any]) -> bool:
        return self.method_field in raw_job

    def read_observed(self, raw_job: dict[str, Any]) -> dict[str, Any]:
        return read_observed(self.spec_type, raw_job)

    def _required_defaults(self, observed: dict[str, Any]) -> dict[str, Any]:
        """Required top-level fields an observed job lacks, as empty values (an incomplete answer
        still compares, and differs); a job without a source shows an empty `baseModel`."""
        out: dict[str, Any] = {name: ({} if nested is not None else "")
                               for name, info, nested in fields_of(self.spec_type) if info.is_required()}
        if not any(f in observed for f in SOURCE_FIELDS):
            out = {SOURCE_FIELDS[0]: "", **out}
        return out

    def observed_canonical(self, observed: dict[str, Any], project: str, region: str) -> dict[str, Any]:
        cosmetic = cosmetic_fields(self.spec_type)
        fields = {k: v for k, v in observed.items() if k not in cosmetic}
        return {"project": project, "region": region, **self._required_defaults(observed), **fields}

    def observed_cosmetic(self, observed: dict[str, Any], user_labels: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {key: observed.get(key) or "" for key in cosmetic_fields(self.spec_type)}
        out["labels"] = dict(user_labels)
        return out

    def seen_as(self, observed: dict[str, Any], spec: TuningJobSpec, project: str, region: str) -> dict[str, Any]:
        wanted = as_data(spec)
        restricted = restrict_to_wanted(self.spec_type, observed, wanted)
        restricted = with_false_defaults(self.spec_type, restricted, wanted)
        source = next((f for f in SOURCE_FIELDS if f in wanted), None)
        if source is not None and source in restricted:  # the service may name the other source too
            restricted = {k: v for k, v in restricted.items() if k not in SOURCE_FIELDS or k == source}
        return self.observed_canonical(restricted, project, region)

    def cosmetic_notes(self, spec: TuningJobSpec, want: dict[str, Any], have: dict[str, Any],
                       label_keys: set[str], *, name: str) -> list[str]:
        data = as_data(spec)
        notes = []
        for key, mark in cosmetic_fields(self.spec_type).items():
            if mark.unset == "service" and not data.get(key):
                continue  # left to the service: whatever it chose is no difference
            if (want.get(key) or "") != (have.get(key) or ""):
                notes.append(f"{key}: {have.get(key) or ''!r} → {want.get(key) or ''!r}")
        have_labels = {k: v for k, v in (have.get("labels") or {}).items() if k in label_keys}
        want_labels = {k: v for k, v in (want.get("labels") or {}).items() if k in label_keys}
        if have_labels != want_labels:
            notes.append(f"labels: {canonical_json(have_labels)} → {canonical_json(want_labels)}")
        return [f"{n} — tuning jobs cannot be edited; the job keeps the old value "
                f"(--replace {name} re-tunes to apply it)" for n in notes]


SUPERVISED = SpecKind("supervised", SupervisedSpec, "supervisedTuningSpec")
PREFERENCE = SpecKind("preference", PreferenceSpec, "preferenceOptimizationSpec")
KINDS: tuple[SpecKind, ...] = (SUPERVISED, PREFERENCE)


def kind_of_spec(spec: SpecModel) -> SpecKind:
    """The kind whose spec model `spec` is."""
    for kind in KINDS:
        if type(spec) is kind.spec_type or isinstance(spec, kind.spec_type):
            return kind
    raise TypeError(f"no kind for {type(spec).__name__}")


def kind_of_job(raw_job: dict[str, Any]) -> SpecKind:
    """The kind of a job as the API shows it (by its tuning method's spec); supervised when the
    answer shows none."""
    return next((kind for kind in KINDS if kind.owns(raw_job)), SUPERVISED)


def kind_named(name: str) -> SpecKind:
    return next((kind for kind in KINDS if kind.name == name), SUPERVISED)


def explain_diff(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    """Field-level differences between two tuning specs (deepdiff), as dotted paths."""
    from deepdiff import DeepDiff  # heavy: only when a change is explained

    tree = DeepDiff(old, new, view="tree")
    out: list[FieldChange] = []
    for report, items in tree.items():
        for item in items:
            path = ".".join(str(p) for p in item.path(output_format="list"))
            if report == "dictionary_item_added":
                out.append(FieldChange(path=path, kind="added", new=item.t2))
            elif report == "dictionary_item_removed":
                out.append(FieldChange(path=path, kind="removed", old=item.t1))
            else:
                out.append(FieldChange(path=path, kind="changed", old=item.t1, new=item.t2))
    return sorted(out, key=lambda f: f.path)
