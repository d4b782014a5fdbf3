"""Manifests: YAML (safe loader, line numbers kept) → validated `DesiredModel`s.

Every problem of a run is collected and reported together as `file:line: field.path: message`.
YAML is composed with the safe loader and converted by hand so that each key keeps its line,
duplicate keys are errors (PyYAML would silently keep the last), and alias expansion is bounded
(a billion-laughs document is refused, not expanded).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from reconciler import catalog
from reconciler.errors import ManifestError
from reconciler.kinds import KINDS, kind_of_spec
from reconciler.models import (
    LABEL_MANAGED,
    NAME_PATTERN,
    PATTERN_HELP,
    PROJECT_PATTERN,
    REGION_PATTERN,
    RESERVED_LABEL_PREFIX,
    DesiredModel,
)
from reconciler.spec import PreferenceSpec, SpecModel, SupervisedSpec, as_data
from reconciler.yamlio import (
    LineMap,
    YamlProblem,
    dotted,
    file_kind,
    read_documents,
    shown_path,
    unreadable,
)

API_VERSION = "reconciler/v1"
KIND = "TunedModel"
MAX_LABELS = 64  # per resource, the reconciler's own included (Resource Manager's label rules)
IGNORED_FILES = {"reconciler.yaml", "reconciler.yml", ".pre-commit-hooks.yaml"}
YAML_SUFFIXES = (".yaml", ".yml")

def _label_text_ok(text: str, *, key: bool) -> bool:
    if len(text) > 63 or (key and not text):
        return False
    if key and not (text[0].isalpha() and text[0] == text[0].lower()):
        return False
    return all(c in "_-" or c.isdigit() or (c.isalpha() and c == c.lower()) for c in text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RetryPolicy(_Strict):
    max_attempts: int = Field(alias="maxAttempts", ge=1, le=10)


class SmokeTest(_Strict):
    prompt: str = Field(min_length=1, max_length=10_000)
    expect_contains: str | None = Field(None, alias="expectContains", min_length=1)
    gate: bool = True


# The reconciler's own settings beside the job's spec in a manifest's `spec`. (Comments, not
# docstrings: pydantic would put them in the JSON schema.)
class Settings(SpecModel):
    project: str | None = Field(None, pattern=PROJECT_PATTERN)
    region: str | None = Field(None, pattern=REGION_PATTERN)
    protect: bool | None = None
    retry_policy: RetryPolicy | None = Field(None, alias="retryPolicy")
    smoke_test: SmokeTest | None = Field(None, alias="smokeTest")
    pin_datasets: bool = Field(False, alias="pinDatasets")
    serving_checkpoint: str | None = Field(None, alias="servingCheckpoint", min_length=1, max_length=128,
                                           pattern=r"^[A-Za-z0-9_.-]+$")
    ignore_changes: list[Literal["tunedModelDisplayName", "description", "labels", "serviceAccount"]] | None = Field(
        None, alias="ignoreChanges")


# A manifest's `spec` of each kind: the job's spec (reconciler.spec, REST names) and the settings.
class SupervisedManifestSpec(SupervisedSpec, Settings):
    pass


class PreferenceManifestSpec(PreferenceSpec, Settings):
    pass


def _method_of(value: Any) -> str:
    """The kind a manifest's `spec` is of, chosen as the API chooses: by the tuning method's spec
    present (supervised when none is, so that the missing field is what is reported)."""
    if isinstance(value, dict):
        present = [k.name for k in KINDS if k.method_field in value]
        if len(present) == 1:
            return present[0]
        if len(present) > 1:
            return "both"
    return "supervised"


Spec = Annotated[
    Annotated[SupervisedManifestSpec, Tag("supervised")] | Annotated[PreferenceManifestSpec, Tag("preference")],
    Discriminator(_method_of, custom_error_type="one_method",
                  custom_error_message="set exactly one tuning method: " + " or ".join(k.method_field for k in KINDS)),
]
_KIND_TAGS = {k.name for k in KINDS}


class Metadata(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict)
    protect: bool | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        # How many fit is counted at validation from the labels a create writes (_label_budget).
        for key, value in labels.items():
            if key == LABEL_MANAGED or key.startswith(RESERVED_LABEL_PREFIX):
                raise ValueError(f"label {key!r} is reserved for the reconciler")
            if not _label_text_ok(key, key=True):
                raise ValueError(
                    f"label key {key!r}: 1-63 lowercase letters, digits, '_' or '-', "
                    "starting with a letter"
                )
            if not _label_text_ok(value, key=False):
                raise ValueError(f"label {key!r}: value must be ≤63 lowercase letters, digits, '_' or '-'")
        return labels


class Manifest(_Strict):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["TunedModel"]
    metadata: Metadata
    spec: Spec


@dataclass(frozen=True)
class Defaults:
    """Values a manifest may leave out (from reconciler.yaml, environment or flags)."""

    project: str | None = None
    region: str | None = None


@dataclass
class LoadResult:
    models: list[DesiredModel] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def looks_like_yaml(name: str) -> bool:
    """`x.yaml`, `x.yml` in any case (`b.YAML`, `c.Yml`)."""
    return name.lower().endswith(YAML_SUFFIXES)


def _odd(char: str) -> bool:
    return char.isspace() or not char.isprintable()


def disguised_yaml(name: str) -> bool:
    """A name that is a YAML name but for trailing whitespace or control characters
    (`"b.yaml "`, `"b.yaml\\n"`), or a YAML name with a control character anywhere: such a file
    is neither silently skipped nor read under a name no message could show."""
    trimmed = name
    while trimmed and _odd(trimmed[-1]):
        trimmed = trimmed[:-1]
    if not looks_like_yaml(trimmed):
        return False
    return trimmed != name or not name.isprintable()


def _walk(folder: Path, found: list[Path], problems: list[str]) -> None:
    """Every YAML-named entry under `folder` into `found` (regular files) or `problems`.

    Hidden entries (`.git`, `.x.yaml`) are skipped. Never skipped silently: an entry with a YAML
    name, one that would have a YAML name but for trailing whitespace or control characters, and
    a symlink to a folder (not followed: a problem naming it, since its manifests would otherwise
    look deleted)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.append(f"{shown_path(folder)}: cannot list folder: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if disguised_yaml(entry.name):
            problems.append(f"{shown_path(folder)}/{entry.name!r}: a YAML file name with whitespace or control "
                            "characters in it; rename it (not read)")
        elif looks_like_yaml(entry.name):
            if entry.name not in IGNORED_FILES:
                _yaml_entry(path, found, problems)
        elif _is_linked_folder(entry):
            problems.append(f"{shown_path(path)}: a symlink to a folder ({shown_path(os.readlink(path))}); "
                            "symlinked folders are not followed: move its manifests in, or replace the link "
                            "with the folder")
        elif _is_folder(entry):
            _walk(path, found, problems)


def _yaml_entry(path: Path, found: list[Path], problems: list[str]) -> None:
    try:
        mode = os.stat(path).st_mode  # follows a symlink: what would be read
    except OSError as exc:
        problems.append(unreadable(path, exc))
        return
    if stat.S_ISREG(mode):
        found.append(path)
    elif stat.S_ISDIR(mode):
        problems.append(f"{shown_path(path)}: a folder with a YAML file name; rename it (its files are not read)")
    else:
        problems.append(f"{shown_path(path)}: {file_kind(mode)}, not a regular file; not read")


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_linked_folder(entry: os.DirEntry[str]) -> bool:
    """A symlink whose target is a folder (a dangling or looping link is no folder: skipped, as
    a non-YAML name)."""
    try:
        return entry.is_symlink() and entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Manifest files under the given files and folders, and the problems that keep some from
    being read.

    Folders are searched recursively for names ending in `.yaml` or `.yml`, in any case; each
    such entry is either returned (a regular file, or a symlink to one) or is a problem naming it
    (a dangling symlink, a symlink loop, a FIFO, socket or device, a folder). Paths given
    explicitly are read whatever their name, and must exist."""
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except (OSError, ValueError) as exc:
            problems.append(unreadable(path, exc))
            continue
        if stat.S_ISDIR(mode):
            found: list[Path] = []
            _walk(path, found, problems)
            files.extend(sorted(found))
        elif stat.S_ISREG(mode):
            files.append(path)
        else:
            problems.append(f"{shown_path(path)}: {file_kind(mode)}, not a regular file; not read")
    unique = list(dict.fromkeys(files))
    return unique, problems


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = err["ctx"]["pattern"]
        return f"invalid value {err.get('input')!r} (must be {PATTERN_HELP.get(pattern, 'like ' + pattern)})"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if isinstance(err.get("input"), bool) and kind.endswith("string_type"):
        msg += " (YAML reads yes/no/on/off/true/false as booleans: quote the value)"
    return msg


def load_manifests(
    paths: Iterable[Path],
    defaults: Defaults = Defaults(),
    on_model: Callable[[DesiredModel], None] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> LoadResult:
    """Load and validate every manifest under `paths`; raise ManifestError listing all problems
    (every kind of problem in one run: fields, names, project and region, duplicates).

    `on_model` sees each valid model as soon as it is read (plan starts listing its region
    while the rest load). `overrides` (an environment of reconciler.yaml, by model name or `*`)
    are merged into each manifest before it is validated. A document that is empty or holds
    only comments (a trailing `---`) is skipped, as kubectl does."""
    files, problems = find_files(paths)
    result = LoadResult(files=files)
    seen: dict[str, str] = {}
    references: dict[str, str] = {}  # name → "file:line" of its preTunedModel.model
    for path in files:
        try:
            docs = [doc for doc in read_documents(path) if doc[1] is not None]
        except YamlProblem as exc:
            problems.append(exc.located(path))
            continue
        except OSError as exc:
            problems.append(f"{shown_path(path)}: cannot read: {exc.strerror or exc}")
            continue
        if not docs:
            problems.append(f"{shown_path(path)}:1: empty manifest file (no YAML documents)")
        for line, data, conv in docs:
            data = with_overrides(data, overrides)
            model = _validate(path, line, data, conv, defaults, problems, result.warnings)
            name, where = _name_and_line(path, data, conv, line)
            if name is not None and name in seen:
                problems.append(f"{where}: metadata.name: duplicate name {name!r} (also in {seen[name]})")
                continue
            if name is not None:
                seen[name] = where
            if model is None:
                continue
            if model.reference is not None:
                references[model.name] = f"{shown_path(path)}:{conv.line_of(REFERENCE_LOC)}"
            result.models.append(model)
            if on_model is not None:
                on_model(model)
    problems += reference_problems(result.models, references, result.warnings)
    if problems:
        raise ManifestError(problems)
    return result


REFERENCE_LOC = ("spec", "preTunedModel", "model")


def reference_problems(models: Sequence[DesiredModel], where: Mapping[str, str], warnings: list[str]) -> list[str]:
    """What is wrong with the `preTunedModel.model` references among `models` (a continuation
    tunes on another manifest's tuned model): an unknown name, a cycle, a parent in another
    project or region, of another tuning method or with another encryption key."""
    by_name = {d.name: d for d in models}
    problems: list[str] = []
    for d in models:
        if d.reference is None:
            continue
        at = f"{where.get(d.name, d.source)}: {dotted(REFERENCE_LOC)}"
        parent = by_name.get(d.reference)
        if parent is None:
            problems.append(f"{at}: no manifest named {d.reference!r} among those read (a continuation tunes on "
                            "the tuned model of another manifest of this stack; read both)")
        elif (cycle := _cycle(d.name, by_name)) is not None:
            problems.append(f"{at}: a cycle of continuations: {' → '.join(cycle)}")
        else:
            problems += [f"{at}: {p}" for p in _parent_mismatch(d, parent)]
            warnings += [f"{at}: {w}" for w in _catalog_continuation(parent)]
    return problems


def _cycle(name: str, by_name: Mapping[str, DesiredModel]) -> list[str] | None:
    chain = [name]
    current = by_name[name].reference
    while current is not None and current in by_name:
        chain.append(current)
        if current == name:
            return chain
        if current in chain[:-1]:
            return None  # a cycle further up, reported at its own members
        current = by_name[current].reference
    return None


def _parent_mismatch(d: DesiredModel, parent: DesiredModel) -> list[str]:
    out = []
    if parent.parent != d.parent:
        out.append(f"{parent.name} tunes in {parent.parent}, this manifest in {d.parent}: a continuation tunes "
                   "in its parent's project and region")
    if parent.kind.name != "supervised":
        out.append(f"{parent.name} is {parent.kind.name} tuning: only a supervised-tuned model can be tuned "
                   "further (continuous tuning)")
    if parent.kms_key_name != d.kms_key_name:
        out.append(f"encryptionSpec differs from {parent.name}'s: a continuation must use the key of the model "
                   "it continues")
    return out


def _catalog_continuation(parent: DesiredModel) -> list[str]:
    info = catalog.lookup(parent.base_model) if parent.base_model else None
    if info is None:
        return []
    supported = _method_support(info, "continuous")
    if supported is False:
        return [f"the catalog does not list {info.model_id} ({parent.name}'s base model) for continuous tuning; "
                "the API will decide"]
    return []


def _validate(
    path: Path,
    line: int,
    data: Any,
    conv: LineMap,
    defaults: Defaults,
    problems: list[str],
    warnings: list[str],
) -> DesiredModel | None:
    at = shown_path(path)  # one line whatever the file's name
    if not isinstance(data, dict):
        problems.append(f"{at}:{line}: a manifest must be a mapping with apiVersion, kind, metadata, spec")
        return None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _without_tag(tuple(err["loc"]))
            problems.append(f"{at}:{conv.line_of(loc)}: {dotted(loc)}: {_message(err)}")
        problems += _unplaced(at, data, conv, defaults)  # one run says every kind of problem
        return None
    spec = manifest.spec
    found: list[str] = []
    project = spec.project or defaults.project
    region = spec.region or defaults.region
    for field_name, value, flag in (("project", project, "--project"), ("region", region, "--region")):
        if not value:
            found.append(
                f"{at}:{conv.line_of(('spec',))}: spec.{field_name}: not set here, nor in "
                f"reconciler.yaml, RECONCILER_{field_name.upper()} or {flag}"
            )
    found += _check_catalog(f"{at}", spec, conv, warnings)
    if spec.protect is not None and manifest.metadata.protect is not None and spec.protect != manifest.metadata.protect:
        found.append(f"{at}:{conv.line_of(('spec', 'protect'))}: spec.protect: contradicts metadata.protect")
    problems += found
    if found or not project or not region:
        return None
    model = _desired(manifest, project, region, f"{at}:{line}")
    more = _check_model(model, at, conv)
    problems += more
    return None if more else model


def _name_and_line(path: Path, data: Any, conv: LineMap, line: int) -> tuple[str | None, str]:
    """A document's metadata.name (as written, valid or not) and `file:line` of that name."""
    metadata = data.get("metadata") if isinstance(data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    at = shown_path(path)
    if not isinstance(name, str):
        return None, f"{at}:{line}"
    return name, f"{at}:{conv.line_of(('metadata', 'name'))}"


def with_overrides(data: Any, overrides: Mapping[str, Mapping[str, Any]] | None) -> Any:
    """A manifest with an environment's overrides merged in: those for every model (`*`) first,
    then those for its name; mappings merge key by key, anything else replaces."""
    if not overrides or not isinstance(data, dict):
        return data
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    for key in ("*", name):
        if isinstance(key, str) and key in overrides:
            data = _merged(data, overrides[key])
    return data


def _merged(base: Any, extra: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(extra, Mapping):
        return extra
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(base.get(key), value)
    return out


def _without_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error's location without the union's tag pydantic puts after `spec`."""
    if len(loc) > 1 and loc[0] == "spec" and loc[1] in _KIND_TAGS:
        return loc[:1] + loc[2:]
    return loc


def _unplaced(at: str, data: dict[str, Any], conv: LineMap, defaults: Defaults) -> list[str]:
    """For a manifest with field errors: a missing project or region, read from the raw document
    (the same messages as for a valid one)."""
    raw = data.get("spec")
    spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
    out = []
    for field_name, default, flag in (("project", defaults.project, "--project"), ("region", defaults.region, "--region")):
        if not spec.get(field_name) and not default:
            out.append(f"{at}:{conv.line_of(('spec',))}: spec.{field_name}: not set here, nor in "
                       f"reconciler.yaml, RECONCILER_{field_name.upper()} or {flag}")
    return out


def _check_model(d: DesiredModel, at: str, conv: LineMap) -> list[str]:
    """What only the whole model can tell: the label budget, a serving checkpoint that cannot exist."""
    problems = []
    written = d.written_labels("stack")
    if len(written) > MAX_LABELS:
        own = len(written) - len(d.labels)
        loc = ("metadata", "labels")
        problems.append(
            f"{at}:{conv.line_of(loc)}: {dotted(loc)}: {len(d.labels)} labels, and each job also carries {own} "
            f"of the reconciler's ({', '.join(k for k in written if k not in dict(d.labels))}): at most "
            f"{MAX_LABELS} labels per job, so at most {MAX_LABELS - own} here")
    if d.serving_checkpoint is not None and d.export_last_checkpoint_only:
        loc = ("spec", "servingCheckpoint")
        problems.append(
            f"{at}:{conv.line_of(loc)}: {dotted(loc)}: {d.kind.method_field}.exportLastCheckpointOnly is true, "
            "so the job exports no intermediate checkpoint to serve from")
    return problems


def _method_support(info: Any, method: str) -> bool | None:
    """Whether the catalog says `info`'s model takes a tuning method (None: it does not say)."""
    methods = getattr(info, "methods", None)
    value = methods.get(method) if isinstance(methods, Mapping) else None
    if isinstance(value, bool):
        return value
    return True if method == "supervised" else None  # a listed model takes supervised tuning unless said


def _accepted(info: Any, method: str) -> tuple[Collection[str] | None, Collection[str] | None]:
    """The hyperparameters and adapter sizes the catalog lists for a model and method (None:
    not listed)."""
    params = getattr(info, "parameters_for", None)
    sizes = getattr(info, "adapter_sizes_for", None)
    if callable(params) and callable(sizes):
        return params(method), sizes(method)
    if method == "supervised":
        return info.parameters, info.adapter_sizes
    return None, None


def _check_catalog(where: str, spec: Any, conv: LineMap, warnings: list[str]) -> list[str]:
    """What the catalog says of the base model, the tuning method and the hyperparameters the
    manifest sets. A continuation (`preTunedModel`) is checked through its parent, if a manifest."""
    if spec.base_model is None:
        return []
    info = catalog.lookup(spec.base_model)
    if info is None:
        warnings.append(
            f"{where}:{conv.line_of(('spec', 'baseModel'))}: spec.baseModel: {spec.base_model!r} is not "
            "in the reconciler's catalog of tunable models; the API will decide"
        )
        return []
    kind = kind_of_spec(spec)
    method_loc = ("spec", kind.method_field)
    supported = _method_support(info, kind.name)
    if supported is False:
        return [f"{where}:{conv.line_of(method_loc)}: {dotted(method_loc)}: {info.model_id} does not take "
                f"{kind.name} tuning (reconciler models lists what each model takes)"]
    if supported is None:
        warnings.append(f"{where}:{conv.line_of(method_loc)}: {dotted(method_loc)}: the catalog does not say "
                        f"whether {info.model_id} takes {kind.name} tuning; the API will decide")
    warnings += _feature_warnings(where, spec, info, conv)
    hp = (as_data(spec).get(kind.method_field) or {}).get("hyperParameters") or {}
    params, sizes = _accepted(info, kind.name)
    hp_loc = method_loc + ("hyperParameters",)
    problems = [f"{where}:{conv.line_of(hp_loc + (name,))}: {dotted(hp_loc + (name,))}: "
                f"{info.model_id} does not accept {name}"
                for name in hp if params is not None and name not in params]
    size = hp.get("adapterSize")
    if size is not None and sizes and size not in sizes:
        loc = hp_loc + ("adapterSize",)
        problems.append(f"{where}:{conv.line_of(loc)}: {dotted(loc)}: {info.model_id} accepts "
                        f"{', '.join(sizes)}, not {size}")
    return problems


def _feature_warnings(where: str, spec: Any, info: Any, conv: LineMap) -> list[str]:
    """Features the manifest uses that the catalog does not list for its base model (the API
    decides; evaluation is a Preview listed for few models)."""
    used: list[tuple[str, tuple[str, ...]]] = []
    if getattr(spec, "supervised_tuning_spec", None) is not None and spec.supervised_tuning_spec.evaluation_config:
        used.append(("evaluation_config", ("spec", "supervisedTuningSpec", "evaluationConfig")))
    if spec.serving_checkpoint is not None:
        used.append(("checkpoints", ("spec", "servingCheckpoint")))
    return [f"{where}:{conv.line_of(loc)}: {dotted(loc)}: the catalog does not list {info.model_id} for "
            f"{feature.replace('_', ' ')}; the API will decide"
            for feature, loc in used if _method_support(info, feature) is not True]


def _desired(manifest: Manifest, project: str, region: str, source: str) -> DesiredModel:
    spec = manifest.spec
    return DesiredModel(
        name=manifest.metadata.name,
        project=project,
        region=region,
        source=source,
        spec=kind_of_spec(spec).narrow(spec),
        labels=tuple(sorted(manifest.metadata.labels.items())),
        protect=bool(spec.protect or manifest.metadata.protect),
        max_attempts=spec.retry_policy.max_attempts if spec.retry_policy else 1,
        smoke_prompt=spec.smoke_test.prompt if spec.smoke_test else None,
        smoke_expect=spec.smoke_test.expect_contains if spec.smoke_test else None,
        smoke_gate=bool(spec.smoke_test and spec.smoke_test.gate),
        pin_datasets=spec.pin_datasets,
        serving_checkpoint=spec.serving_checkpoint,
        ignore_changes=tuple(sorted(set(spec.ignore_changes or ()))),
    )


def json_schema() -> dict[str, Any]:
    """JSON Schema of one manifest document (for editors and `reconciler schema`)."""
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "vertex-tuning-reconciler TunedModel manifest"
    return schema
