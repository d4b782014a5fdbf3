"""The tunable base models and what each accepts: a dated catalog as data, with a lifecycle.

The catalog ships as `reconciler/data/models.yaml` (package data): per model its stage, release
and retirement dates, the date new tuning closes (derived, where the file says so, as the
retirement date minus one calendar month — the model-versions page: "One month before the
retirement date, new access to the model is blocked for ... tuning"), its successor, the tuning
methods it supports, adapter sizes and hyperparameters per method, regions, dataset limits and
the price per million training tokens — each value with the source it was read from and the
date it was read (`read:`). `null` in the file means "not found in Google's pages", never a guess:
no price is shipped (no Google pricing page was among the sources), so prices come from
`reconciler.yaml` (`prices:` or `models:`).

`reconciler.yaml` extends and overrides entries with `models:` (`ModelSettings`, validated with
the rest of the settings); `Catalog.merged` lays those over the shipped file, each overridden
value's source then being `reconciler.yaml:LINE`.

The file is read lazily, once per process (`shipped()`), so `--help` and `validate` stay fast.
`lookup()` answers from the catalog in use: the shipped one, or the merged one a session makes
current with `using()` while it validates manifests. The planner takes a `Catalog` argument
instead (it is pure). A known model that does not take a parameter is an error in validate; an
unknown model only a warning, since new models appear faster than this file changes.
"""

from __future__ import annotations

import calendar
import contextlib
import contextvars
import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.errors import ConfigError
from reconciler.spec import HyperParameters, fields_of
from reconciler.yamlio import YamlProblem, read_documents

# Every hyperparameter the spec model declares (a known model takes all unless its entry says less).
HYPER_PARAMETERS = tuple(name for name, _, _ in fields_of(HyperParameters))
METHODS = ("supervised", "preference")  # tuning methods: one kind each (reconciler/kinds.py)
FEATURES = (*METHODS, "continuous", "checkpoints", "evaluation_config")
STAGES = ("ga", "preview", "deprecated", "retired", "unknown")
ADAPTER_SIZE_NAMES = {1: "ONE", 2: "TWO", 4: "FOUR", 8: "EIGHT", 16: "SIXTEEN", 32: "THIRTY_TWO"}
BYTES_PER_TOKEN = 4  # JSONL bytes per billable token: a rough, deliberately high-side guess
ASSUMED_EPOCHS = 3  # when the manifest leaves epochCount to the service
DATA_FILE = Path(__file__).parent / "data" / "models.yaml"
_PREFIX = "publishers/google/models/"
# The values that carry a source (`BaseModelInfo.sources` keys, with `.method` where per method).
SOURCED = ("stage", "display_name", "release_date", "retirement_date", "tuning_closes", "successor", "methods",
           "adapter_sizes", "parameters", "regions", "dataset_limits", "price")
USER_SOURCE = "reconciler.yaml"


def adapter_size_name(size: int) -> str:
    return f"ADAPTER_SIZE_{ADAPTER_SIZE_NAMES[size]}"


def month_before(day: date) -> date:
    """The same day one calendar month earlier (the last day of that month when it is shorter)."""
    year, month = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Source:
    """Where a value comes from: a URL or file (with the date the catalog read it), or a line
    of reconciler.yaml."""

    where: str
    read: date | None = None

    def __str__(self) -> str:
        return f"{self.where} (read {self.read.isoformat()})" if self.read else self.where

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.where, "read": self.read.isoformat() if self.read else None}


@dataclass(frozen=True)
class BaseModelInfo:
    """What the tuning service accepts for one base model, and its lifecycle."""

    model_id: str
    stage: str = "unknown"
    display_name: str | None = None
    release_date: date | None = None
    retirement_date: date | None = None
    retirement_earliest: bool = False  # "<date> or later"
    tuning_closes: date | None = None
    tuning_closes_derived: bool = False  # retirement date minus one month (recomputed on override)
    successors: tuple[str, ...] = ()
    tunable_successor: str | None = None
    methods: Mapping[str, bool | None] = field(default_factory=dict)  # FEATURES → supported
    adapter_sizes_by_method: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    parameters_by_method: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    regions: tuple[str, ...] | None = None
    serving_regions: tuple[str, ...] | None = None
    dataset_limits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prices: Mapping[str, float | None] = field(default_factory=dict)  # USD per 1M training tokens
    sources: Mapping[str, Source] = field(default_factory=dict)  # value name (or name.method) → source
    # The hyperparameters the API takes per method: a model without its own list takes them all.
    api_parameters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    # -- what validate asks (supervised unless a method is given) ----------------------------------
    @property
    def parameters(self) -> frozenset[str]:
        return self.parameters_for("supervised")

    @property
    def adapter_sizes(self) -> tuple[str, ...]:
        return self.adapter_sizes_for("supervised")

    def parameters_for(self, method: str) -> frozenset[str]:
        """The hyperparameters this model takes with `method` (all the API has when unstated)."""
        known = self.parameters_by_method.get(method)
        if known is not None:
            return known
        return frozenset(self.api_parameters.get(method, HYPER_PARAMETERS))

    def adapter_sizes_for(self, method: str) -> tuple[str, ...]:
        """The adapter sizes (enum names) offered with `method`; empty: not stated, not checked."""
        return self.adapter_sizes_by_method.get(method) or ()

    def supports(self, feature: str) -> bool | None:
        """Whether the model supports a method or feature: True, False, or None (not stated)."""
        return self.methods.get(feature)

    def price(self, method: str = "supervised") -> float | None:
        return self.prices.get(method)

    def source_of(self, name: str, method: str | None = None) -> Source | None:
        return (self.sources.get(f"{name}.{method}") if method else None) or self.sources.get(name)

    # -- lifecycle, on a given day -----------------------------------------------------------------
    def retired(self, today: date) -> bool:
        """Retired on `today`: by its date when known, else by its stage."""
        if self.retirement_date is not None:
            return today >= self.retirement_date
        return self.stage == "retired"

    def closed(self, today: date) -> bool:
        """Closed to new tuning on `today` (a retired model is closed too)."""
        if self.tuning_closes is not None and today >= self.tuning_closes:
            return True
        return self.retired(today)


@dataclass(frozen=True)
class Catalog:
    """Every known base model by id, and when the shipped data was read."""

    models: Mapping[str, BaseModelInfo]
    read: date | None = None
    file: str = "reconciler/data/models.yaml"

    def lookup(self, base_model: str) -> BaseModelInfo | None:
        """The entry of a base model id (a `publishers/google/models/` prefix is allowed)."""
        return self.models.get(base_model.removeprefix(_PREFIX))

    def price(self, base_model: str, method: str = "supervised") -> float | None:
        info = self.lookup(base_model)
        return info.price(method) if info else None

    def successor(self, base_model: str, today: date | None) -> str | None:
        """The model to move to: the successor the catalog names, followed along its own
        successors while it is closed on `today` (a successor that retired in turn is no help)."""
        info, seen = self.lookup(base_model), {base_model.removeprefix(_PREFIX)}
        while info is not None:
            nxt = info.tunable_successor or (info.successors[0] if info.successors else None)
            if nxt is None or nxt in seen:
                return None
            seen.add(nxt)
            info = self.lookup(nxt) or self._versioned(nxt)
            if info is None or today is None or not info.closed(today):
                return info.model_id if info else nxt
        return None

    def _versioned(self, model_id: str) -> BaseModelInfo | None:
        """A model named without its version (`gemini-2.0-flash` for `gemini-2.0-flash-001`)."""
        found = [m for key, m in sorted(self.models.items()) if key.startswith(f"{model_id}-0")]
        return found[-1] if found else None

    def merged(self, overrides: Mapping[str, Override], prices: Mapping[str, float] | None = None,
               config_file: str | None = None) -> Catalog:
        """This catalog with reconciler.yaml laid over it: `prices:` (every method of a model),
        then `models:` (its own values win). A model the file does not know is added."""
        models = dict(self.models)
        for model_id, price in (prices or {}).items():
            key = model_id.removeprefix(_PREFIX)
            base = models.get(key) or BaseModelInfo(key, api_parameters=self._api_parameters())
            where = Source(f"{config_file or USER_SOURCE}: prices.{model_id}")
            models[key] = dataclasses.replace(
                base, prices={m: price for m in METHODS},
                sources={**base.sources, **{f"price.{m}": where for m in METHODS}})
        for model_id, override in overrides.items():
            key = model_id.removeprefix(_PREFIX)
            # A model added in reconciler.yaml is one to tune: supervised unless its entry says otherwise.
            base = models.get(key) or BaseModelInfo(key, methods={"supervised": True},
                                                    sources={"methods": override.at_model},
                                                    api_parameters=self._api_parameters())
            models[key] = override.apply(base)
        return dataclasses.replace(self, models=models)

    def _api_parameters(self) -> Mapping[str, tuple[str, ...]]:
        return next((m.api_parameters for m in self.models.values()), {})


# -- overrides from reconciler.yaml ------------------------------------------------------------------
Method = Literal["supervised", "preference"]
Feature = Literal["supervised", "preference", "continuous", "checkpoints", "evaluation_config"]
Parameter = Literal["epochCount", "learningRateMultiplier", "adapterSize", "beta"]
AdapterSize = Literal[1, 2, 4, 8, 16, 32]
Price = Annotated[float, Field(ge=0, le=1_000_000)]
ModelId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-_@]{0,127}$")]


class ModelSettings(BaseModel):
    """One entry of `models:` in reconciler.yaml: values that extend or override the shipped
    catalog (REST-style camelCase names, like the rest of the settings)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True,
                              allow_inf_nan=False)

    stage: Literal["ga", "preview", "deprecated", "retired"] | None = None
    display_name: str | None = Field(None, alias="displayName", min_length=1, max_length=200)
    release_date: date | None = Field(None, alias="releaseDate", strict=False)
    retirement_date: date | None = Field(None, alias="retirementDate", strict=False)
    tuning_closes: date | None = Field(None, alias="tuningClosesDate", strict=False)
    successor: ModelId | None = None
    methods: dict[Feature, bool] | None = None
    adapter_sizes: dict[Method, list[AdapterSize]] | None = Field(None, alias="adapterSizes")
    hyper_parameters: dict[Method, list[Parameter]] | None = Field(None, alias="hyperParameters")
    regions: list[Annotated[str, Field(pattern=r"^[a-z]+(-[a-z0-9]+)*$")]] | None = None
    price: Price | None = None  # supervised (and every method without its own price)
    prices: dict[Method, Price] | None = None


@dataclass(frozen=True)
class Override:
    """A `models:` entry and the reconciler.yaml line of each value it sets (alias → `file:line`)."""

    settings: ModelSettings
    lines: Mapping[str, str] = field(default_factory=dict)

    @property
    def at_model(self) -> Source:
        """Where the entry itself is (its first value's line)."""
        return Source(next(iter(self.lines.values()), USER_SOURCE))

    def _source(self, alias: str) -> Source:
        return Source(self.lines.get(alias, USER_SOURCE))

    def apply(self, base: BaseModelInfo) -> BaseModelInfo:
        s = self.settings
        values: dict[str, Any] = {}
        sources = dict(base.sources)

        def put(name: str, alias: str, value: Any, *source_keys: str) -> None:
            values[name] = value
            for key in source_keys or (name,):
                sources[key] = self._source(alias)

        _apply_lifecycle(s, base, put)
        if s.methods is not None:
            put("methods", "methods", {**base.methods, **s.methods})
        if s.adapter_sizes is not None:
            sizes = {m: tuple(adapter_size_name(n) for n in v) for m, v in s.adapter_sizes.items()}
            put("adapter_sizes_by_method", "adapterSizes", {**base.adapter_sizes_by_method, **sizes},
                *(f"adapter_sizes.{m}" for m in sizes))
        if s.hyper_parameters is not None:
            params = {m: frozenset(v) for m, v in s.hyper_parameters.items()}
            put("parameters_by_method", "hyperParameters", {**base.parameters_by_method, **params},
                *(f"parameters.{m}" for m in params))
        if s.regions is not None:
            put("regions", "regions", tuple(s.regions))
        prices = dict(base.prices)
        if s.price is not None:
            prices.update(dict.fromkeys(METHODS, s.price))
            sources.update({f"price.{m}": self._source("price") for m in METHODS})
        for method, price in (s.prices or {}).items():
            prices[method] = price
            sources[f"price.{method}"] = self._source("prices")
        sources = {k: v for k, v in sources.items() if k.partition(".")[0] in SOURCED}
        return dataclasses.replace(base, **values, prices=prices, sources=sources)


def _apply_lifecycle(s: ModelSettings, base: BaseModelInfo, put: Any) -> None:
    """Stage, names and dates; a derived cut-off follows an overridden retirement date."""
    if s.stage is not None:
        put("stage", "stage", s.stage)
    if s.display_name is not None:
        put("display_name", "displayName", s.display_name)
    if s.release_date is not None:
        put("release_date", "releaseDate", s.release_date)
    if s.retirement_date is not None:
        put("retirement_date", "retirementDate", s.retirement_date)
        put("retirement_earliest", "retirementDate", False)
        if s.tuning_closes is None and (base.tuning_closes_derived or base.tuning_closes is None):
            put("tuning_closes", "retirementDate", month_before(s.retirement_date))
            put("tuning_closes_derived", "retirementDate", True)
    if s.tuning_closes is not None:
        put("tuning_closes", "tuningClosesDate", s.tuning_closes)
        put("tuning_closes_derived", "tuningClosesDate", False)
    if s.successor is not None:
        put("successors", "successor", (s.successor,), "successor")
        put("tunable_successor", "successor", s.successor)


# -- the shipped file ----------------------------------------------------------------------------------
def _text(value: Any, key: str | None = None) -> str | None:
    """A `source:` value as one string: a mapping gives its `key` entry, or all of them."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if key is not None:  # a source per method or feature: this one's, if the file gives it
            return _text(value[key]) if key in value else None
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _sizes(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(adapter_size_name(int(n)) for n in value)


def _parse_lifecycle(raw: Mapping[str, Any], src: Any) -> dict[str, Any]:
    life = raw.get("lifecycle") or {}
    retirement = life.get("retirement") or {}
    closes = raw.get("new_tuning_closes") or {}
    successors = life.get("successor") or ()
    retirement_date = retirement.get("date")
    closes_date = closes.get("date")
    derived = bool(closes.get("derived"))
    if derived and retirement_date is not None:
        closes_date = month_before(retirement_date)
    life_source = _text(life.get("source"), "dates")
    rule = f"derived ({closes.get('rule')}): " if derived else ""
    return {
        "stage": str(raw.get("stage") or "unknown"),
        "display_name": raw.get("display_name"),
        "release_date": life.get("release_date"),
        "retirement_date": retirement_date,
        "retirement_earliest": bool(retirement.get("earliest")),
        "tuning_closes": closes_date,
        "tuning_closes_derived": derived,
        "successors": tuple(successors) if isinstance(successors, list | tuple) else (str(successors),),
        "tunable_successor": life.get("tunable_successor"),
        "sources": {
            "stage": src(life_source), "release_date": src(life_source), "retirement_date": src(life_source),
            "successor": src(life_source), "tuning_closes": src(f"{rule}{_text(closes.get('source'))}"),
        },
    }


def _parse_methods(raw: Mapping[str, Any], src: Any) -> dict[str, Any]:
    methods = raw.get("methods") or {}
    sizes = raw.get("adapter_sizes") or {}
    params = raw.get("hyperparameters") or {}
    sources: dict[str, Source] = {}
    for method in METHODS:
        sources[f"adapter_sizes.{method}"] = src(_text(sizes.get("source"), method))
        sources[f"parameters.{method}"] = src(_text(params.get("source"), method))
    for feature in FEATURES:
        sources[f"methods.{feature}"] = src(_text(methods.get("source"), feature))
    return {
        "methods": {f: methods.get(f) for f in FEATURES},
        "adapter_sizes_by_method": {m: _sizes(sizes.get(m)) for m in METHODS},
        "parameters_by_method": {m: None if params.get(m) is None else frozenset(params[m]) for m in METHODS},
        "sources": sources,
    }


def _parse_rest(raw: Mapping[str, Any], src: Any) -> dict[str, Any]:
    regions = raw.get("regions") or {}
    limits = raw.get("dataset_limits") or {}
    prices = raw.get("price_per_million_training_tokens_usd") or {}
    sources = {"regions": src(_text(regions.get("source"))), "price": src(_text(prices.get("source")))}
    kept: dict[str, Mapping[str, Any]] = {}
    for method in METHODS:
        block = limits.get(method)
        if isinstance(block, Mapping):
            kept[method] = {k: v for k, v in block.items() if k not in ("source", "derived", "rule")}
            sources[f"dataset_limits.{method}"] = src(_text(block.get("source")))
    return {
        "regions": None if regions.get("tuning") is None else tuple(regions["tuning"]),
        "serving_regions": None if regions.get("tuned_model_serving") is None
        else tuple(regions["tuned_model_serving"]),
        "dataset_limits": kept,
        "prices": {m: None if prices.get(m) is None else float(prices[m]) for m in METHODS},
        "sources": sources,
    }


def parse(data: Mapping[str, Any], where: str = "reconciler/data/models.yaml") -> Catalog:
    """A catalog from the parsed data file (its layout: reconciler/data/models.yaml)."""
    read = data.get("read")
    read_on = read if isinstance(read, date) else None
    by_method = data.get("hyperparameters_by_method") or {}
    api = {m: tuple(by_method[m]["fields"]) for m in METHODS if isinstance(by_method.get(m), Mapping)}

    def src(text: str | None) -> Source:
        return Source(text or "not stated", read_on)

    models: dict[str, BaseModelInfo] = {}
    for raw in data.get("models") or []:
        parts = [_parse_lifecycle(raw, src), _parse_methods(raw, src), _parse_rest(raw, src)]
        sources = {k: v for part in parts for k, v in part.pop("sources").items()}
        values = {k: v for part in parts for k, v in part.items()}
        models[str(raw["id"])] = BaseModelInfo(str(raw["id"]), **values, sources=sources, api_parameters=api)
    return Catalog(models, read_on, where)


@functools.cache
def shipped() -> Catalog:
    """The catalog shipped with the package (read once, on first use)."""
    try:
        ((_, data, _),) = list(read_documents(DATA_FILE))
        return parse(data)
    except YamlProblem as exc:
        raise ConfigError(exc.located(DATA_FILE)) from None
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{DATA_FILE}: the shipped model catalog cannot be read ({exc!r}); reinstall") from None


_CURRENT: contextvars.ContextVar[Catalog | None] = contextvars.ContextVar("catalog", default=None)


def current() -> Catalog:
    """The catalog in use: the session's merged one inside `using()`, else the shipped one."""
    return _CURRENT.get() or shipped()


@contextlib.contextmanager
def using(catalog: Catalog) -> Iterator[Catalog]:
    token = _CURRENT.set(catalog)
    try:
        yield catalog
    finally:
        _CURRENT.reset(token)


def lookup(base_model: str) -> BaseModelInfo | None:
    """The entry of a base model id in the catalog in use (see `current`)."""
    return current().lookup(base_model)


# -- `reconciler models`: the catalog as data and as text ---------------------------------------------
def _sourced(value: Any, source: Source | None) -> dict[str, Any]:
    return {"value": value, **(source.to_dict() if source else {"source": None, "read": None})}


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def status_on(info: BaseModelInfo, today: date | None) -> str:
    """`open`, `closed` (to new tuning) or `retired` on `today` (`unknown` without a day)."""
    if today is None:
        return "unknown"
    return "retired" if info.retired(today) else "closed" if info.closed(today) else "open"


def _per_method(info: BaseModelInfo) -> dict[str, Any]:
    api = Source("the API's fields for the method (no model-specific statement)")
    sizes = {m: _sourced([_size_number(n) for n in info.adapter_sizes_for(m)] or None,
                         info.source_of("adapter_sizes", m)) for m in METHODS}
    params = {m: _sourced(None if info.methods.get(m) is False else sorted(info.parameters_for(m)),
                          info.source_of("parameters", m) if info.parameters_by_method.get(m) is not None else api)
              for m in METHODS}
    return {
        "methods": {f: _sourced(info.methods.get(f), info.source_of("methods", f)) for f in FEATURES},
        "adapter_sizes": sizes,
        "hyper_parameters": params,
        "dataset_limits": {m: _sourced(dict(info.dataset_limits[m]), info.source_of("dataset_limits", m))
                           for m in METHODS if m in info.dataset_limits},
        "price_per_million_training_tokens_usd": {m: _sourced(info.prices.get(m), info.source_of("price", m))
                                                  for m in METHODS},
    }


def _size_number(name: str) -> int:
    return next(n for n, word in ADAPTER_SIZE_NAMES.items() if name == f"ADAPTER_SIZE_{word}")


def describe(catalog: Catalog, info: BaseModelInfo, today: date | None) -> dict[str, Any]:
    """One model for `reconciler models --format json`: each value with its source and read date."""
    return {
        "id": info.model_id,
        "display_name": _sourced(info.display_name, info.source_of("display_name")),
        "stage": _sourced(info.stage, info.source_of("stage")),
        "status": {"value": status_on(info, today), "on": _iso(today)},
        "release_date": _sourced(_iso(info.release_date), info.source_of("release_date")),
        "retirement_date": {**_sourced(_iso(info.retirement_date), info.source_of("retirement_date")),
                            "or_later": info.retirement_earliest},
        "tuning_closes": {**_sourced(_iso(info.tuning_closes), info.source_of("tuning_closes")),
                          "derived": info.tuning_closes_derived},
        "successor": {**_sourced(list(info.successors), info.source_of("successor")),
                      "open_to_tuning": catalog.successor(info.model_id, today)},
        "regions": _sourced(list(info.regions) if info.regions is not None else None, info.source_of("regions")),
        **_per_method(info),
    }


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _summary(entry: Mapping[str, Any]) -> list[str]:
    methods = [f for f, v in entry["methods"].items() if v["value"]]
    prices = entry["price_per_million_training_tokens_usd"]
    price = "; ".join(f"{m} ${p['value']:.2f}" for m, p in prices.items() if p["value"] is not None)
    retires = _cell(entry["retirement_date"]["value"]) + ("+" if entry["retirement_date"]["or_later"] else "")
    return [entry["id"], entry["stage"]["value"], entry["status"]["value"], _cell(entry["release_date"]["value"]),
            _cell(entry["tuning_closes"]["value"]), retires, _cell(entry["successor"]["open_to_tuning"]),
            _cell(methods), _cell(entry["adapter_sizes"]["supervised"]["value"]), price or "-"]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _values(entry: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(label, sourced value) of every value of an entry, in the order the text shows them."""
    for key in ("stage", "release_date", "retirement_date", "tuning_closes", "successor", "regions"):
        yield key.replace("_", " "), entry[key]
    for group in ("methods", "adapter_sizes", "hyper_parameters", "dataset_limits",
                  "price_per_million_training_tokens_usd"):
        label = "price per 1M training tokens (USD)" if group.startswith("price") else group.replace("_", " ")
        for method, value in entry[group].items():
            yield f"{label}: {method}", value


def _details(entry: Mapping[str, Any]) -> list[str]:
    title = entry["id"] + (f" ({entry['display_name']['value']})" if entry["display_name"]["value"] else "")
    lines, notes = [title], dict[str, int]()  # footnotes: one number per distinct source
    for label, value in _values(entry):
        shown = value["value"]
        if isinstance(shown, dict):
            shown = ", ".join(f"{k} {v}" for k, v in shown.items())
        shown = {None: "not stated", True: "yes", False: "no"}.get(shown, shown) if not isinstance(shown, list) \
            else _cell(shown) if shown else "not stated"
        shown = f"{shown} or later" if value.get("or_later") else str(shown)
        where = value.get("source")
        if where and where != "not stated":
            text = f"{where} (read {value['read']})" if value.get("read") else where
            notes.setdefault(text, len(notes) + 1)
            shown += f"  [{notes[text]}]"
        lines.append(f"  {label:<42} {shown}")
    lines += ["  sources:"] + [f"    [{n}] {text}" for text, n in notes.items()]
    return lines


def format_text(entries: list[dict[str, Any]], read: date | None) -> str:
    """`reconciler models`: a table of the models, then every value of each with its source."""
    head = ["MODEL", "STAGE", "TODAY", "RELEASED", "TUNING CLOSES", "RETIRES", "SUCCESSOR", "METHODS",
            "ADAPTER SIZES", "PRICE/1M TOKENS"]
    lines = _table([head, *(_summary(e) for e in entries)])
    lines.append(f"Catalog read {read.isoformat() if read else '(date unknown)'}; `+`: retires on that date or "
                 "later; no price is shipped — set prices: or models: in reconciler.yaml (docs/manifest.md).")
    for entry in entries:
        lines += ["", *_details(entry)]
    return "\n".join(lines)
