"""Settings from `reconciler.yaml`, then the environment, then flags (last wins).

`reconciler.yaml` (found in the working directory, or given with `--config`):

    project: my-project          # default for manifests that leave spec.project out
    region: us-central1          # likewise for spec.region
    stack: default               # which managed jobs this repo owns (a label value)
    state: reconciler.state.json # state file path (relative to this file's folder)
    manifests: manifests         # the stack's manifest root (relative to this file's folder)
    apiEndpoint: https://...     # one override for every region (e.g. the emulator)
    maxCancel: 5                 # apply refuses plans that cancel more jobs than this
    concurrency: 8               # actions run at once by apply
    pollInterval: 30             # seconds between polls of --wait (at most 86400)
    lockTimeout: 0               # seconds to wait for the state lock (at most 86400)
    requestTimeout: 60           # seconds one HTTP request may take (> 0, at most 600)
    prices: {gemini-3.5-flash: 4.0}  # USD per 1M training tokens, by base model (all methods)
    models:                      # extend or override the shipped model catalog (docs/manifest.md)
      gemini-3.5-flash: {retirementDate: 2027-05-19, successor: gemini-4-flash, prices: {preference: 8.0}}
    retirementWarningDays: 30    # warn when a serving model's base model retires within this many days
    retry: {initial: 1, multiplier: 2, maximum: 60, deadline: 120, maxAttempts: 10}

Environment: RECONCILER_PROJECT, RECONCILER_REGION, RECONCILER_STACK, RECONCILER_STATE,
RECONCILER_MANIFESTS, RECONCILER_API_ENDPOINT. (RECONCILER_ACCESS_TOKEN is a credential and is
read by the CLI only.)

`manifests` is the stack's manifest root: the folder whose manifests, all together, are the
whole desired set of the stack. A run that reads exactly that set may prune (cancel the jobs of
models whose manifest is gone); a run given a part of it may not. In `reconciler.yaml` it is
relative to the file's folder, like `state`; from the environment or a flag, or by default
(`manifests`), relative to the working directory. `Settings.manifests` is that path as a string.

Identifiers (project, region, stack) are checked with full matches: a trailing newline, as in
`--stack $'prod\n'`, is refused, never written into a label, a URL or a state file. Every other
value, from any source, is checked after the merge too: paths (`state`, `manifests`) hold no
control character and no surrounding whitespace, `apiEndpoint` is a well-formed http(s) URL
with a valid port (or `embedded[:FILE]`), and every number lies within its documented bounds. A
bad value is a one-line ConfigError that shows it with repr.

`requestTimeout` (`Settings.request_timeout`) bounds one HTTP request: the clients' timeout,
and the window in which an interrupted create may still land on the server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.catalog import ModelId, ModelSettings, Override
from reconciler.errors import ConfigError
from reconciler.http.endpoint import endpoint_problem
from reconciler.http.retry import RetryPolicy
from reconciler.models import PATTERN_HELP, PROJECT_PATTERN, REGION_PATTERN, STACK_PATTERN
from reconciler.yamlio import LineMap, YamlProblem, dotted, read_documents, shown_path, unreadable

CONFIG_FILE = "reconciler.yaml"
DEFAULT_STATE = "reconciler.state.json"
DEFAULT_MANIFESTS = "manifests"
DEFAULT_MAX_CANCEL = 5
EMBEDDED = "embedded"
DAY = 86_400.0
MAX_REQUEST_TIMEOUT = 600.0
# (lowest, whether the lowest is allowed, highest) of every number a flag may also set.
_BOUNDS: dict[str, tuple[float, bool, float]] = {
    "poll_interval": (0, False, DAY),
    "lock_timeout": (0, True, DAY),
    "request_timeout": (0, False, MAX_REQUEST_TIMEOUT),
    "max_cancel": (0, True, 1_000_000),
    "concurrency": (1, True, 256),
    "requests_per_minute": (0, True, 1_000_000),
    "creates_per_minute": (0, True, 1_000_000),
    "retirement_warning_days": (0, True, 3650),
}


class _Strict(BaseModel):
    # no .inf / .nan: a poll interval or a price of infinity is a mistake, not a setting
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class RetryFile(_Strict):
    initial: float | None = Field(None, gt=0, le=600)
    multiplier: float | None = Field(None, ge=1, le=10)
    maximum: float | None = Field(None, gt=0, le=3600)
    deadline: float | None = Field(None, gt=0, le=86_400)
    max_attempts: int | None = Field(None, alias="maxAttempts", ge=1, le=100)


class RateLimitFile(_Strict):
    requests_per_minute: int | None = Field(None, alias="requestsPerMinute", ge=0, le=1_000_000)
    creates_per_minute: int | None = Field(None, alias="createsPerMinute", ge=0, le=1_000_000)


class EnvironmentFile(_Strict):
    """One environment of `environments:` (terraform's workspaces, kustomize's overlays): where
    its models go, and what of their manifests differs."""

    project: str | None = Field(None, pattern=PROJECT_PATTERN)
    region: str | None = Field(None, pattern=REGION_PATTERN)
    stack: str | None = Field(None, pattern=STACK_PATTERN)
    state: str | None = Field(None, min_length=1)
    api_endpoint: str | None = Field(None, alias="apiEndpoint", min_length=1)
    # Merged into manifests before validation: by model name, or "*" for every model.
    overrides: dict[str, dict[str, Any]] | None = None


class ConfigFile(_Strict):
    project: str | None = Field(None, pattern=PROJECT_PATTERN)
    region: str | None = Field(None, pattern=REGION_PATTERN)
    stack: str | None = Field(None, pattern=STACK_PATTERN)
    state: str | None = Field(None, min_length=1)
    manifests: str | None = Field(None, min_length=1)
    api_endpoint: str | None = Field(None, alias="apiEndpoint", min_length=1)
    max_cancel: int | None = Field(None, alias="maxCancel", ge=0, le=1_000_000)
    concurrency: int | None = Field(None, ge=1, le=256)
    poll_interval: float | None = Field(None, alias="pollInterval", gt=0, le=DAY)
    lock_timeout: float | None = Field(None, alias="lockTimeout", ge=0, le=DAY)
    request_timeout: float | None = Field(None, alias="requestTimeout", gt=0, le=MAX_REQUEST_TIMEOUT)
    retry: RetryFile | None = None
    rate_limit: RateLimitFile | None = Field(None, alias="rateLimit")
    # USD per 1M training tokens, by base model
    prices: dict[str, Annotated[float, Field(ge=0, le=1_000_000)]] | None = None
    # The model catalog extended and overridden (reconciler/catalog.py: ModelSettings)
    models: dict[ModelId, ModelSettings] | None = None
    retirement_warning_days: int | None = Field(None, alias="retirementWarningDays", ge=0, le=3650)
    environments: dict[Annotated[str, Field(pattern=STACK_PATTERN)], EnvironmentFile] | None = None


@dataclass(frozen=True)
class Settings:
    project: str | None = None
    region: str | None = None
    stack: str = "default"
    state: str = DEFAULT_STATE
    # The stack's manifest root (a path; see the module docstring): reading all of it is what
    # allows pruning.
    manifests: str = DEFAULT_MANIFESTS
    api_endpoint: str | None = None
    max_cancel: int = DEFAULT_MAX_CANCEL
    concurrency: int = 8
    poll_interval: float = 30.0
    lock_timeout: float = 0.0
    # Seconds one HTTP request may take (the clients' timeout); also how long an interrupted
    # create may still land on the server (its in-flight window).
    request_timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # the transport's own type
    # Vertex AI's documented per-region quotas: resource-management requests and job submissions.
    requests_per_minute: int = 600
    creates_per_minute: int = 60
    prices: dict[str, float] = field(default_factory=dict)
    # `models:`: catalog entries laid over the shipped catalog (each value with its file:line)
    models: dict[str, Override] = field(default_factory=dict)
    # a serving model whose base model retires within this many days is a plan warning
    retirement_warning_days: int = 30
    config_file: str | None = None
    # --env / RECONCILER_ENV: the environment chosen, and its manifest overrides
    environment: str | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def _read_file(path: Path) -> tuple[ConfigFile, LineMap | None]:
    try:
        docs = list(read_documents(path))
    except YamlProblem as exc:
        raise ConfigError(exc.located(path)) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(unreadable(path, exc)) from None
    if not docs:
        return ConfigFile.model_validate({}), None
    if len(docs) > 1:
        raise ConfigError(f"{path}:{docs[1][0]}: only one YAML document is allowed")
    line, data, lines = docs[0]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:{line}: expected a mapping of settings")
    try:
        return ConfigFile.model_validate(data), lines
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] == "string_pattern_mismatch":
                pattern = err["ctx"]["pattern"]
                msg = f"invalid value {err.get('input')!r} (must be {PATTERN_HELP.get(pattern, 'like ' + pattern)})"
            problems.append(f"{path}:{lines.line_of(loc)}: {dotted(loc)}: {msg}")
        raise ConfigError("\n".join(problems)) from None


def _check(name: str, value: str | None, pattern: str, source: str) -> str | None:
    import re

    # fullmatch: with re.match, `$` also matches before a final newline ('prod\n' would pass)
    if value is not None and not re.fullmatch(pattern, value):
        raise ConfigError(f"{source}: invalid {name} {value!r} (must be {PATTERN_HELP.get(pattern, 'like ' + pattern)})")
    return value


def load_settings(
    *,
    config_file: Path | None,
    cwd: Path,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
) -> Settings:
    """Merge reconciler.yaml, then environment, then flags (None means 'not given'); check the
    result (a one-line ConfigError naming the first bad value)."""
    settings = Settings()
    path = config_file or (cwd / CONFIG_FILE)
    if config_file is not None and not _exists(config_file):
        raise ConfigError(f"{_shown(config_file)}: config file not found")
    # Anything at the path (a dangling symlink, a FIFO) is read, and so refused with its reason:
    # silently running without the file would mean another stack and another state.
    chosen = flags.get("environment") or env.get("RECONCILER_ENV") or None
    if _exists(path):
        settings = _from_file(settings, path, chosen)
    elif chosen:
        raise ConfigError(f"--env {chosen!r}: there is no reconciler.yaml with `environments:` at {_shown(path)}")
    from_env: dict[str, Any] = {k: env[v] for k, v in _ENV.items() if env.get(v)}
    settings = replace(settings, **from_env)
    given = {k: v for k, v in flags.items() if v is not None and k != "environment"}
    settings = replace(settings, **given)
    _check_settings(settings)
    return settings


_ENV = {
    "project": "RECONCILER_PROJECT",
    "region": "RECONCILER_REGION",
    "stack": "RECONCILER_STACK",
    "state": "RECONCILER_STATE",
    "manifests": "RECONCILER_MANIFESTS",
    "api_endpoint": "RECONCILER_API_ENDPOINT",
}


def _from_file(settings: Settings, path: Path, chosen: str | None = None) -> Settings:
    cf, lines = _read_file(path)
    settings = _with_file_values(settings, cf, path, lines)
    if chosen is None:
        return settings
    environments = cf.environments or {}
    if chosen not in environments:
        known = ", ".join(sorted(environments)) or "none"
        raise ConfigError(f"{_shown(path)}: no environment {chosen!r} under environments: (defined: {known})")
    chosen_env = environments[chosen]
    values = {k: v for k, v in chosen_env.model_dump(exclude={"overrides"}).items() if v is not None}
    if "state" in values and not Path(values["state"]).is_absolute() and "://" not in values["state"]:
        values["state"] = str(path.parent / values["state"])
    return replace(settings, **values, environment=chosen, overrides=dict(chosen_env.overrides or {}))


def _with_file_values(settings: Settings, cf: ConfigFile, path: Path, lines: LineMap | None) -> Settings:
    retry = settings.retry
    if cf.retry is not None:
        retry = replace(retry, **{k: v for k, v in cf.retry.model_dump().items() if v is not None})
    values = {k: v for k, v in cf.model_dump(exclude={"retry", "rate_limit", "models", "environments"}).items()
              if v is not None}
    if cf.models is not None:
        values["models"] = _overrides(cf.models, path, lines)
    if cf.rate_limit is not None:
        values.update({k: v for k, v in cf.rate_limit.model_dump().items() if v is not None})
    for name in ("state", "manifests"):  # relative to the file's folder
        if name in values and not Path(values[name]).is_absolute() and "://" not in values[name]:
            values[name] = str(path.parent / values[name])
    return replace(settings, **values, retry=retry, config_file=str(path))


def _overrides(models: Mapping[str, ModelSettings], path: Path, lines: LineMap | None) -> dict[str, Override]:
    """`models:` entries with the file:line of each value they set (shown as its source)."""
    def at(*loc: str) -> str:
        return f"{shown_path(path)}:{lines.line_of(('models', *loc)) if lines else 1}"

    return {model_id: Override(entry, {alias: at(model_id, alias) for alias in entry.model_dump(
        by_alias=True, exclude_none=True)}) for model_id, entry in models.items()}


def _check_settings(settings: Settings) -> None:
    """Every merged value valid, or a one-line ConfigError showing it with repr."""
    _check("project", settings.project, PROJECT_PATTERN, "settings")
    _check("region", settings.region, REGION_PATTERN, "settings")
    _check("stack", settings.stack, STACK_PATTERN, "settings (stack: lowercase letters, digits, '-', '_')")
    for name in ("state", "manifests"):
        value = getattr(settings, name)
        if not isinstance(value, str) or not value or not _plain(value) or value != value.strip():
            raise ConfigError(f"settings: invalid {name} path {value!r} (no control characters, "
                              "no surrounding whitespace)")
    if "://" in settings.manifests:
        raise ConfigError(f"settings: manifests must be a local folder, not {settings.manifests!r}")
    _check_endpoint(settings.api_endpoint)
    for name, (low, low_ok, high) in _BOUNDS.items():
        _check_number(name, getattr(settings, name), low, low_ok, high)


def _plain(text: str) -> bool:
    """No control character (C0, DEL, C1) and no line or paragraph separator."""
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text)


def _check_endpoint(value: str | None) -> None:
    if value is None:
        return
    if value == EMBEDDED or value.startswith(EMBEDDED + ":"):
        if not _plain(value) or value != value.strip():
            raise ConfigError(f"settings: invalid api endpoint {value!r} (no control characters)")
        return
    problem = endpoint_problem(value)
    if problem is not None:
        raise ConfigError(f"settings: {problem}")


def _check_number(name: str, value: Any, low: float, low_ok: bool, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= low if low_ok else value > low) and value <= high
    if not ok:
        bound = f"{'at least' if low_ok else 'more than'} {low:g} and at most {high:g}"
        raise ConfigError(f"settings: invalid {name} {value!r} (must be a number {bound})")


def _shown(path: Path) -> str:
    text = str(path)
    return text if _plain(text) else repr(text)


def _exists(path: Path) -> bool:
    """Whether anything is at `path`, a dangling symlink included."""
    try:
        path.lstat()
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # something is there, or the path is odd: reading it will say what
    return True
