"""The session: what each command does, as functions of the settings that return results.

The CLI parses arguments, prints and maps exit codes; every rule of a command lives here (which
models a run may prune, how a saved plan is checked, the --max-cost and --max-cancel limits, what
--wait follows, how a state push is refused). A `Session` owns the clients of one run (made
lazily, closed with it) and says what it does through two callbacks, `warn` and `info`.

Heavy libraries (httpx, google-auth, deepdiff, uvicorn) are imported by the methods that need
them, so `validate` and `--help` start fast.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import interrupt
from reconciler.errors import (
    ConfigError,
    PlanError,
    StalePlanError,
    StateConflictError,
    StateError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from reconciler.apply import ApplyResult, Outcome
    from reconciler.catalog import Catalog
    from reconciler.config import Settings
    from reconciler.manifest import LoadResult
    from reconciler.models import DesiredModel
    from reconciler.plan import Observation, Plan
    from reconciler.probe import ProbeResult
    from reconciler.state.model import State
    from reconciler.state.store import StateStore
    from reconciler.storage import StorageClient
    from reconciler.vertex.client import VertexClient

SAVED_PLAN_LIMIT = 64 * 1024 * 1024  # a saved plan larger than this is not one of ours
EMULATOR_DATA_LIMIT = 256 * 1024 * 1024


@dataclass(frozen=True)
class PlanOptions:
    """What a plan may do, from the command line."""

    targets: Sequence[str] = ()
    replace: Sequence[str] = ()
    prune: bool = False  # --prune: remove models without a manifest even in a subset
    prune_unrecorded: bool = False
    estimate_cost: bool = False
    allow_empty: bool = False
    destroy: bool = False  # --destroy: every model of the state is removed, whatever the manifests say


@dataclass(frozen=True)
class Limits:
    """What apply refuses, from the command line (None: the settings decide)."""

    max_cancel: int | None = None
    max_cost: float | None = None


@dataclass
class Planned:
    """A plan and what it was computed from: apply and the state must use exactly these models
    (dataset pins and sizes filled in)."""

    plan: Plan
    observation: Observation
    desired: list[DesiredModel]


@dataclass
class Session:
    """One run of the reconciler: settings, credentials and the clients made from them."""

    settings: Settings
    token: str | None = None  # RECONCILER_ACCESS_TOKEN (the CLI reads the environment)
    storage_emulator: str | None = None  # STORAGE_EMULATOR_HOST
    allow_insecure_http: bool = False
    debug: bool = False
    warn: Callable[[str], None] = lambda _m: None
    info: Callable[[str], None] = lambda _m: None
    exit_stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    # Injected in tests (in-memory fakes); made from the settings otherwise.
    api: VertexClient | None = None
    state_store: StateStore | None = None
    _storage: StorageClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _catalog: Catalog | None = None

    def close(self) -> None:
        self.exit_stack.close()

    @property
    def request_timeout(self) -> float:
        """Seconds a request may take (the clients' timeout): also how long an interrupted run's
        create may still be in flight, and so waited for before it is made again."""
        return float(getattr(self.settings, "request_timeout", 60.0))

    # -- resources ------------------------------------------------------------------------------
    def client(self) -> VertexClient:
        """The Vertex AI client of this run (made once; thread-safe)."""
        with self._lock:
            if self.api is None:
                self.api = self._make_client()
            return self.api

    def _make_client(self) -> VertexClient:
        from reconciler.vertex.auth import check_endpoint, resolve_auth
        from reconciler.vertex.client import VertexClient

        s = self.settings
        endpoint = self._embedded(s.api_endpoint) if s.api_endpoint else None
        root = check_endpoint(endpoint, allow_insecure_http=self.allow_insecure_http) if endpoint else None
        client = VertexClient(
            endpoint=root, auth=resolve_auth(root, self.token), retry=s.retry,
            timeout=self.request_timeout, max_connections=max(8, s.concurrency * 2),
            requests_per_minute=s.requests_per_minute, creates_per_minute=s.creates_per_minute,
        )
        client.transport.notify = self.warn
        self.exit_stack.callback(client.close)
        return client

    def _embedded(self, endpoint: str) -> str:
        """`embedded` or `embedded:FILE`: an in-process emulator whose jobs live in FILE."""
        if endpoint != "embedded" and not endpoint.startswith("embedded:"):
            return endpoint
        from reconciler.emulator.server import start_embedded

        data = Path(endpoint.partition(":")[2] or "reconciler-emulator.json")
        _check_emulator_data(data)
        try:
            server = start_embedded(data)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"--api-endpoint {endpoint}: {data} is not an emulator data file ({exc})") from None
        self.exit_stack.callback(server.stop)
        if self.debug:
            self.info(f"embedded emulator at {server.url}, data in {data}")
        return server.url

    def storage(self) -> StorageClient:
        """The Cloud Storage client (state in gs://, dataset pinning), made once per run."""
        with self._lock:
            if self._storage is None:
                from reconciler.storage import StorageClient, emulator_endpoint
                from reconciler.vertex.auth import resolve_auth

                emulator = self.storage_emulator
                # As Google's own storage clients do, an emulator gets no credentials.
                auth = None if emulator else resolve_auth(None, self.token, service="Cloud Storage")
                self._storage = StorageClient(endpoint=emulator_endpoint(emulator) if emulator else None,
                                              auth=auth, retry=self.settings.retry, timeout=self.request_timeout)
                self._storage.transport.notify = self.warn
                self.exit_stack.callback(self._storage.close)
            return self._storage

    def store(self) -> StateStore:
        if self.state_store is not None:
            return self.state_store
        location = self.settings.state
        if location.startswith("gs://"):
            from reconciler.state.gcs import GcsStateStore
            from reconciler.storage import parse_gs_uri

            parse_gs_uri(location)  # a malformed URI is reported as such, before any credentials are sought
            return GcsStateStore(location, self.storage())
        if "://" in location:
            raise ConfigError(f"state {location!r}: use a local path or gs://BUCKET/OBJECT")
        from reconciler.state.local import LocalStateStore

        return LocalStateStore(Path(location))

    def read_state(self) -> State:
        return self.store().read(stack=self.settings.stack)

    @contextlib.contextmanager
    def locked(self, store: StateStore, operation: str, timeout: float | None) -> Iterator[str]:
        wait = self.settings.lock_timeout if timeout is None else timeout
        lock_id = store.lock(operation, timeout=wait, warn=self.warn)
        try:
            yield lock_id
        finally:
            store.unlock(lock_id)

    def observe(self, parents: Sequence[str]) -> Observation:
        from reconciler.observe import observe

        return observe(self.client(), parents, workers=self.settings.concurrency)

    # -- manifests ------------------------------------------------------------------------------
    def manifest_root(self) -> Path:
        """The folder holding the stack's whole manifest set (`manifests:` in reconciler.yaml)."""
        return Path(self.settings.manifests)

    def prunes(self, paths: Sequence[Path], prune: bool) -> bool:
        """Whether a run may remove models whose manifest is absent: only when it reads the whole
        manifest set (no paths, or the manifest root itself among them) or is told to (--prune).
        A subset of files, or another folder, acts on the models it names and nothing else."""
        if prune or not paths:
            return True
        root = self.manifest_root().resolve()
        return any(p.resolve() == root for p in paths)

    def load(self, paths: Sequence[Path], *, allow_empty: bool = False, on_model: Any = None) -> LoadResult:
        from reconciler.catalog import using
        from reconciler.manifest import Defaults, load_manifests

        s = self.settings
        paths = list(paths) or [self.manifest_root()]
        with using(self.catalog()):  # validate against the catalog with reconciler.yaml's models:
            result = load_manifests(paths, Defaults(project=s.project, region=s.region), on_model,
                                overrides=s.overrides)
        for warning in result.warnings:
            self.warn(warning)
        if not result.models and not allow_empty:
            where = ", ".join(str(p) for p in paths)
            raise PlanError(f"no manifests found in {where}: refusing to plan for zero models (a wrong path or a "
                            "bad checkout would cancel every job). Pass --allow-empty if that is really intended.")
        return result

    def load_desired(self, paths: Sequence[Path], *, allow_empty: bool = False) -> list[DesiredModel]:
        """The models of `paths` with their dataset pins resolved (refresh, status, import)."""
        return self.with_datasets(self.load(paths, allow_empty=allow_empty).models)

    def with_datasets(self, desired: Sequence[DesiredModel], sizes_for: set[str] | None = None,
                      only: set[str] | None = None) -> list[DesiredModel]:
        """Pins of `pinDatasets` models (and sizes, for `sizes_for`) read from Cloud Storage; with
        `only`, for those models alone (the others are planned out of scope anyway)."""
        chosen = [d for d in desired if only is None or d.name in only]
        if not sizes_for and not any(d.pin_datasets for d in chosen):
            return list(desired)
        from reconciler.datasets import resolve

        resolved = {d.name: d for d in resolve(chosen, self.storage(), sizes_for=sizes_for or (),
                                                workers=self.settings.concurrency)}
        return [resolved.get(d.name, d) for d in desired]

    def load_and_observe(self, paths: Sequence[Path], read_state: Callable[[], State], *, allow_empty: bool
                         ) -> tuple[LoadResult, Observation, State]:
        """Load the manifests while their regions are being listed: each (project, region) is
        listed as soon as the first manifest naming it is valid, or the state names it — listing
        waits on the network, loading uses the CPU. The state is read once the first list has left
        (or after the manifests, when none is valid). Each parent is still listed once; manifest
        errors come first."""
        from concurrent.futures import Future, ThreadPoolExecutor

        from reconciler.observe import StateNames, merge, observe_parent, parents_to_observe

        keep = StateNames()  # a job the state names is read whole, whatever its labels
        started: dict[str, Future[Observation]] = {}
        state: State | None = None
        with ThreadPoolExecutor(max_workers=self.settings.concurrency, initializer=interrupt.worker_thread) as pool:
            def start(parent: str) -> None:
                if parent not in started:
                    if not started:  # the first list waits for the client alone: give it the GIL
                        with contextlib.suppress(Exception):  # (raised again below, after the manifests' errors)
                            self.client()
                    started[parent] = pool.submit(lambda: observe_parent(self.client(), parent, keep))
                    read()

            def read() -> State:
                nonlocal state
                if state is None:
                    state = read_state()
                    keep.know(state)
                    for parent in parents_to_observe([], state):
                        start(parent)
                return state

            try:
                loaded = self.load(paths, allow_empty=allow_empty, on_model=lambda d: start(d.parent))
                read()
                for model in loaded.models:  # computed once (cached) while the listings are on their way
                    model.spec_hash  # noqa: B018
                observation = merge(future.result() for future in started.values())
            except BaseException:
                keep.abandon()
                raise
        return loaded, observation, read()

    # -- the model catalog ----------------------------------------------------------------------
    def catalog(self) -> Catalog:
        """The shipped model catalog with reconciler.yaml's `prices:` and `models:` laid over it."""
        from reconciler.catalog import shipped

        if self._catalog is None:
            s = self.settings
            self._catalog = shipped().merged(s.models, s.prices, s.config_file)
        return self._catalog

    def lifecycle(self) -> dict[str, Any]:
        """What the planner needs to judge base models' lifecycles: today, the catalog, the window."""
        import datetime

        return {"today": datetime.date.today(), "catalog": self.catalog(),
                "retirement_warning_days": self.settings.retirement_warning_days}

    def models(self, names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """`reconciler models`: the catalog's entries (all, or those named), as of today."""
        import datetime

        catalog = self.catalog()
        unknown = [n for n in names if catalog.lookup(n) is None]
        if unknown:
            raise UnknownNameError(f"not in the model catalog: {', '.join(unknown)} (`reconciler models` lists it)")
        chosen = [catalog.lookup(n) for n in names] if names else list(catalog.models.values())
        from reconciler.catalog import describe

        return [describe(catalog, m, datetime.date.today()) for m in chosen if m is not None]

    # -- plan -----------------------------------------------------------------------------------
    def make_plan(self, state: State, desired: Sequence[DesiredModel], options: PlanOptions, *,
                  prune: bool, observation: Observation | None = None) -> Planned:
        """Observe (unless given), resolve dataset pins and sizes, plan."""
        from reconciler.observe import parents_to_observe
        from reconciler.plan import compute_plan

        outside = sorted(set(options.replace) - set(options.targets)) if options.targets else []
        if outside:
            raise ConfigError(f"--replace {', '.join(outside)} is outside --target {', '.join(options.targets)}: "
                              f"add --target {' --target '.join(outside)} (or drop the --target)")
        seen = observation if observation is not None else self.observe(parents_to_observe(desired, state))
        # With --target, only the targeted models' datasets are read from Cloud Storage.
        models = self.with_datasets(desired, only=set(options.targets) or None)

        def planned(chosen: Sequence[DesiredModel]) -> Plan:
            return compute_plan(chosen, seen, state, stack=self.settings.stack, targets=options.targets,
                                replace=options.replace, prune=prune, prune_unrecorded=options.prune_unrecorded,
                                **self.lifecycle())

        plan = planned(models)
        hints = import_hints(plan, models, seen)
        if hints:
            plan = plan.model_copy(update={"warnings": [*plan.warnings, *hints]})
        unknown = {c.name for c in plan.creates if c.cost_usd is None}
        if options.estimate_cost and unknown:
            models = self.with_datasets(models, sizes_for=unknown, only=set(options.targets) or None)
            plan = planned(models)
        notes = interrupted_creates(state, seen) + behind(state, models, seen, self.settings.stack)
        if self.settings.environment:
            plan = plan.model_copy(update={"environment": self.settings.environment})
        if options.destroy:
            notes.insert(0, "destroy: every model this state records is removed — running jobs cancelled (not "
                            "protected ones), entries forgotten; endpoints of finished jobs stay in Vertex AI")
        if notes:
            plan = plan.model_copy(update={"warnings": [*notes, *plan.warnings]})
        return Planned(plan, seen, models)

    def _network_ahead(self) -> None:
        """Start what the first request needs beside this thread's work (the state, the first
        manifests): the TLS context (loading the CA bundle is mostly outside the GIL) and the
        client itself (httpx, httpcore, credentials), on a thread. Best effort: an error there is
        dropped, and raised again where the client is first needed."""
        if self.api is not None:
            return
        from reconciler.http.clients import prefetch_tls

        prefetch_tls()
        endpoint = self.settings.api_endpoint or ""
        if endpoint != "embedded" and not endpoint.startswith("embedded:"):  # an emulator is started once, here
            threading.Thread(target=self._client_ahead, name="reconciler-client", daemon=True).start()

    def _client_ahead(self) -> None:
        interrupt.worker_thread()  # signals go to the main thread, as from every helper thread
        with contextlib.suppress(Exception):
            self.client()

    def plan(self, paths: Sequence[Path], options: PlanOptions) -> Plan:
        """`reconciler plan`: list while loading, then plan."""
        self._network_ahead()
        if options.destroy:
            return self.make_plan(self.read_state(), [], options, prune=True).plan
        loaded, observation, state = self.load_and_observe(paths, self.read_state, allow_empty=options.allow_empty)
        return self.make_plan(state, loaded.models, options, prune=self.prunes(paths, options.prune),
                              observation=observation).plan

    # -- apply ----------------------------------------------------------------------------------
    def apply(
        self,
        paths: Sequence[Path],
        options: PlanOptions,
        limits: Limits,
        *,
        lock_timeout: float | None,
        concurrency: int | None,
        show: Callable[[Plan], None],
        approve: Callable[[Plan], bool],
        on_outcome: Callable[[Outcome], None],
        on_probe: Callable[[ProbeResult], None],
    ) -> tuple[Planned, ApplyResult] | None:
        """`reconciler apply`: plan (or check a saved plan), check the limits, ask `approve`, run.
        Returns None when the plan was not approved (nothing changed)."""
        from reconciler.apply import apply_plan

        self._network_ahead()
        saved_file = paths[0] if len(paths) == 1 else None
        saved = read_saved_plan(saved_file) if saved_file else None
        if len(paths) > 1 and any(_looks_like_plan(p) for p in paths):
            raise ConfigError("a saved plan is applied on its own: `reconciler apply PLANFILE` (it carries its "
                              "manifests); give manifest paths without it")
        if saved is not None:
            if options.targets or options.replace or options.prune or options.prune_unrecorded or options.destroy:
                raise ConfigError("--target, --replace and --prune… cannot be combined with a saved plan: "
                                  "they were decided when it was made")
            desired = saved_models(saved, str(saved_file))
        elif options.destroy:
            desired = []
        else:
            desired = list(self.load(paths, allow_empty=options.allow_empty).models)
        store = self.store()
        with self.locked(store, "apply", lock_timeout):
            state = store.read(stack=self.settings.stack)
            if saved is not None:
                planned = self._check_saved(saved, str(saved_file), desired, state)
                show(planned.plan)  # what runs, as terraform prints a saved plan it applies
            else:
                planned = self.make_plan(state, desired, PlanOptions(
                    options.targets, options.replace, options.prune, options.prune_unrecorded,
                    estimate_cost=limits.max_cost is not None, destroy=options.destroy),
                    prune=options.destroy or self.prunes(paths, options.prune))
                show(planned.plan)
            self.check_limits(planned.plan, limits)
            if planned.plan.has_changes and saved is None and not approve(planned.plan):
                return None
            result = apply_plan(planned.plan, planned.desired, self.client(), store, state, self.observe,
                                concurrency=concurrency or self.settings.concurrency, on_outcome=on_outcome,
                                on_probe=on_probe, in_flight_window=self.request_timeout)
        return planned, result

    def _check_saved(self, saved: Plan, where: str, desired: list[DesiredModel], state: State) -> Planned:
        """A saved plan, re-checked under the lock: same stack, same data, same decisions."""
        from reconciler.observe import parents_to_observe
        from reconciler.plan import compute_plan
        from reconciler.render import summary_line

        if saved.stack != self.settings.stack:
            raise StalePlanError(f"{where}: the plan is for stack {saved.stack!r}, not {self.settings.stack!r}")
        observation = self.observe(parents_to_observe(desired, state, saved.parents))
        current = {d.name: d.identity for d in self.with_datasets(desired)}
        moved = sorted(d.name for d in desired if current[d.name] != d.identity)
        if moved:
            raise StalePlanError(f"{where} is stale: the data of {', '.join(moved)} changed in Cloud Storage "
                                 "since the plan was made. Run plan again.")
        fresh = compute_plan(desired, observation, state, stack=self.settings.stack, targets=saved.targets,
                             replace=saved.replace, prune=saved.prune, prune_unrecorded=saved.prune_unrecorded,
                             **self.lifecycle())
        if fresh.fingerprint != saved.fingerprint:
            raise StalePlanError(f"{where} is stale: the jobs or the state changed since it was made "
                                 f"({summary_line(saved)} → now {summary_line(fresh)}; "
                                 f"{_what_differs(saved, fresh)}). Run plan again.")
        # What runs is what this version computes from the plan's models (the same actions, the
        # fingerprint says): never a request read from the file.
        return Planned(fresh, observation, desired)

    def check_limits(self, plan: Plan, limits: Limits) -> None:
        """--max-cost and --max-cancel: refused before anything is changed."""
        if limits.max_cost is not None:
            if plan.cost_unknown:
                unknown = "; ".join(f"{c.name} ({c.cost_note})" for c in plan.creates if c.cost_usd is None)
                raise PlanError(f"--max-cost {limits.max_cost:g}: no estimate for {unknown}; cannot check the limit")
            if plan.estimated_cost > limits.max_cost:
                raise PlanError(f"this plan's estimated tuning cost is ${plan.estimated_cost:,.2f}, above "
                                f"--max-cost {limits.max_cost:,.2f}; nothing was changed")
        limit = self.settings.max_cancel if limits.max_cancel is None else limits.max_cancel
        if plan.cancel_count > limit:
            raise PlanError(f"this plan cancels {plan.cancel_count} running job(s), more than --max-cancel "
                            f"{limit}; check the plan, then raise --max-cancel if it is intended")

    def wait(self, planned: Planned, *, poll_interval: float | None, timeout: float | None,
             lock_timeout: float | None, progress: Any, on_probe: Callable[[ProbeResult], None],
             on_outcome: Callable[[Outcome], None] = lambda _o: None) -> tuple[State, list[str]]:
        """Follow the plan's jobs to a final state, then write the state. Returns the state and
        the models whose tuning failed or was cancelled. `progress(names, state)` gives the
        reporter. Jobs take hours: the state lock is not held while waiting, only to write."""
        from reconciler.apply import refresh_state, wait_for_jobs
        from reconciler.models import StateClass, classify_state

        plan, store = planned.plan, self.store()
        wanted = {d.name for d in planned.desired}
        names = plan.watched_names
        state = store.read(stack=plan.stack)
        with progress(names, state) as reporter:
            observation = wait_for_jobs(
                self.observe, plan.parents, plan.stack, names, state,
                poll_interval=poll_interval or self.settings.poll_interval, timeout=timeout, on_poll=reporter.update,
                api=self.client(), requests=plan.request_ids,  # a late duplicate is cancelled at once
                on_outcome=on_outcome)
        with self.locked(store, "apply --wait", lock_timeout):
            state = store.read(stack=plan.stack)  # another run may have written meanwhile
            new_state = refresh_state(store, planned.desired, observation, stack=plan.stack, names=names,
                                      state=state, api=self.client(), on_probe=on_probe)
        failed = sorted(n for n, e in new_state.models.items() if n in names and n in wanted
                        and classify_state(e.state) in (StateClass.FAILED, StateClass.CANCELLED))
        return new_state, failed

    # -- the other commands ---------------------------------------------------------------------
    def refresh(self, paths: Sequence[Path], *, allow_empty: bool, lock_timeout: float | None,
                on_probe: Callable[[ProbeResult], None]) -> State:
        """`reconciler refresh`: the state from the API; no job changes."""
        from reconciler.apply import refresh_state
        from reconciler.observe import parents_to_observe

        desired = self.load_desired(paths, allow_empty=allow_empty)
        self.client()
        store = self.store()
        with self.locked(store, "refresh", lock_timeout):
            state = store.read(stack=self.settings.stack)
            observation = self.observe(parents_to_observe(desired, state))
            return refresh_state(store, desired, observation, stack=self.settings.stack, state=state,
                                 api=self.client(), on_probe=on_probe)

    def status(self, paths: Sequence[Path], names: Sequence[str], *, allow_empty: bool,
               metrics: bool) -> StatusQuery:
        """`reconciler status`: what to look at; each `snapshot()` lists the jobs again."""
        from reconciler.observe import parents_to_observe

        desired = self.load_desired(paths, allow_empty=allow_empty or bool(names))
        self.client()
        state = self.read_state()
        known = {d.name for d in desired} | set(state.models)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UnknownNameError(f"no file, folder or model named {', '.join(map(repr, unknown))}")
        return StatusQuery(self, desired, state, list(names), parents_to_observe(desired, state),
                           prune=self.prunes(paths, False), metrics=metrics)

    def probe(self, names: Sequence[str], manifests: Sequence[Path] | None, prompt: str | None) -> list[ProbeResult]:
        """`reconciler probe`: a prompt to each model's endpoint in service. Manifests only add
        smokeTest prompts: without them and without a manifest root, the state says what to probe."""
        from reconciler.probe import DEFAULT_PROMPT, probe

        paths = list(manifests or [p for p in [self.manifest_root()] if p.exists()])
        desired = {d.name: d for d in self.load(paths, allow_empty=True).models} if paths else {}
        state = self.read_state()
        chosen = list(names) or sorted(state.models)
        unknown = [n for n in chosen if n not in state.models]
        if unknown:
            raise UnknownNameError(f"not in the state {self.settings.state}: {', '.join(unknown)} (apply first)")
        client = self.client()
        results = []
        for name in chosen:
            entry, d = state.models[name], desired.get(name)
            text = prompt or (d.smoke_prompt if d and d.smoke_prompt else DEFAULT_PROMPT)
            expect = d.smoke_expect if d and not prompt else None
            endpoint = entry.tuned_model.endpoint if entry.tuned_model else None
            results.append(probe(client, name, entry.serving_job, endpoint, text, expect))
        return results

    def outputs(self, name: str | None) -> dict[str, dict[str, Any]]:
        """`reconciler output`: the endpoints of the state (no API call)."""
        entries = self.read_state().models
        if name is not None:
            if name not in entries:
                raise UnknownNameError(f"no model named {name!r} in the state {self.settings.state}")
            entries = {name: entries[name]}
        # The endpoint in service is a succeeded job's; its state is not the newest job's (during a
        # replace the newest job runs while the old one serves), so both are said apart.
        out: dict[str, dict[str, Any]] = {
            n: {"endpoint": e.tuned_model.endpoint if e.tuned_model else None,
                "model": e.tuned_model.model if e.tuned_model else None,
                "job": e.serving_job, "state": "JOB_STATE_SUCCEEDED" if e.serving_job else None,
                "latest_job": e.job, "latest_state": e.state} for n, e in entries.items()}
        for n, e in entries.items():
            retired = self._retired_base(e)
            if retired:  # the endpoint is kept (it names the resource) but said not to serve
                out[n].update(serving=False, note=retired)
        return out

    def _retired_base(self, entry: Any) -> str | None:
        """Why the serving job of a state entry no longer serves: its base model retired (known
        when the serving job is the entry's job, whose spec the state keeps)."""
        import datetime

        base = (entry.spec or {}).get("baseModel") if entry.serving_job and entry.serving_job == entry.job else None
        info = self.catalog().lookup(base) if isinstance(base, str) else None
        today = datetime.date.today()
        if info is None or not info.retired(today):
            return None
        when = f" on {info.retirement_date.isoformat()}" if info.retirement_date else ""
        return f"no longer serving: base model {info.model_id} retired{when}"

    def import_job(self, job: str, name: str, paths: Sequence[Path], lock_timeout: float | None) -> str:
        """`reconciler import`: adopt an existing job into a manifest, without re-creating it. When
        no manifest has that name, one is written from the job into the manifest root first (as
        terraform generates configuration), so adoption is one command."""
        from reconciler.adopt import adopt_job

        given = list(paths) or [p for p in [self.manifest_root()] if p.exists()]  # no root yet: one is written
        desired = {d.name: d for d in self.load_desired(given, allow_empty=True)} if given else {}
        written = None
        if name not in desired:
            written = self.write_manifest_for(job, name)
            desired = {d.name: d for d in self.load_desired([written])}
        client = self.client()
        store = self.store()
        with self.locked(store, "import", lock_timeout):
            state = store.read(stack=self.settings.stack)
            try:
                report = adopt_job(client, store, state, desired[name], job, stack=self.settings.stack,
                                   observe=self.observe)
            except BaseException:
                if written is not None:
                    written.unlink()  # the manifest was only for this import: nothing is left behind
                raise
        return report if written is None else f"Wrote {written} from the job.\n{report}"

    def write_manifest_for(self, job_name: str, name: str) -> Path:
        """A manifest of `name` with exactly the job's spec, in the manifest root. Refused when a
        file of that name exists; validated before it is left there."""
        from reconciler.models import NAME_PATTERN
        from reconciler.observe import to_observed
        from reconciler.scaffold import manifest_from_job
        from reconciler.vertex.client import split_job_name

        if not re.fullmatch(NAME_PATTERN, name):
            raise ConfigError(f"--name {name!r}: lowercase letters, digits and '-', at most 63, starting with a letter")
        project, region, _ = split_job_name(job_name)
        wire = self.client().get_tuning_job(job_name)
        observed = to_observed(wire, f"projects/{project}/locations/{region}")
        s = self.settings
        # The service names jobs by project number: a number stands for the default project, and
        # adopt_job then checks that the job is indeed listed there.
        text = manifest_from_job(observed, name, project=None if project in (s.project, None) or project.isdigit()
                                 else project, region=None if region == s.region else region)
        root = self.manifest_root()
        path = root / f"{name}.yaml"
        if path.exists():
            raise StateConflictError(f"{path} exists but holds no manifest named {name!r}; choose another --name")
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        try:
            self.load([path])
        except Exception:
            path.unlink()
            raise
        return path

    def state_pull(self) -> bytes:
        from reconciler.state.codec import serialize_state

        state = self.read_state()
        if not state.serial:
            raise StateError(f"no state at {self.settings.state}")
        return serialize_state(state)

    def state_push(self, path: Path, *, force: bool, lock_timeout: float | None) -> tuple[str, int]:
        """`reconciler state push`: refused when the target has another lineage, a newer serial or
        diverged at the same serial, unless `force` (as terraform's). Returns (where, serial)."""
        from reconciler.state.codec import parse_state, read_regular

        data = read_regular(path, "state file to push")  # never blocks on a FIFO, never reads a huge file
        if data is None:
            raise UnknownNameError(f"{path}: no such file")
        pushed = parse_state(data, str(path))
        if pushed.stack != self.settings.stack:
            raise StateError(f"{path} is the state of stack {pushed.stack!r}, not {self.settings.stack!r}")
        store = self.store()
        with self.locked(store, "state push", lock_timeout):
            current = store.read(stack=self.settings.stack)
            if current.serial and not force:
                _refuse_push(current, pushed, store.describe(), path)
            written = store.write(pushed.model_copy(update={"serial": max(current.serial, pushed.serial)}))
        return store.describe(), written.serial

    def fmt(self, paths: Sequence[Path]) -> list[tuple[Path, str, str]]:
        """`reconciler fmt`: the manifests whose layout is not the canonical one, with their text
        now and formatted. Only manifests that validate are formatted; a formatted file must
        validate to the same models (refused otherwise — a bug of fmt, never a changed meaning)."""
        from reconciler.fmt import plan_changes

        before = self.load(paths, allow_empty=True)
        changes = plan_changes(before.files)
        for path, _old, new in changes:
            _check_same_meaning(self, path, new, [d for d in before.models if d.source.startswith(_shown_of(path))])
        return changes

    def state_list(self) -> dict[str, Any]:
        """`reconciler state list`: each model of the state with its job, state and endpoint."""
        state = self.read_state()
        return {n: {"job": e.job, "state": e.state, "endpoint": e.tuned_model.endpoint if e.tuned_model else None,
                    "protect": e.protect} for n, e in state.models.items()}

    def state_show(self, name: str) -> dict[str, Any]:
        entry = self.read_state().models.get(name)
        if entry is None:
            raise UnknownNameError(f"no model named {name!r} in the state {self.settings.state}")
        shown: dict[str, Any] = entry.model_dump(mode="json", by_alias=True)
        return shown

    def state_rm(self, names: Sequence[str], *, lock_timeout: float | None) -> int:
        """`reconciler state rm`: the state forgets models; their jobs are not touched (as
        terraform's). Until a manifest of that name is applied again, a plan shows such a model's
        running job as unrecorded (never cancelled without --prune-unrecorded)."""
        store = self.store()
        with self.locked(store, "state rm", lock_timeout):
            state = store.read(stack=self.settings.stack)
            missing = [n for n in names if n not in state.models]
            if missing:
                raise UnknownNameError(f"not in the state {self.settings.state}: {', '.join(missing)}")
            draft = state.model_copy(deep=True)
            for name in names:
                del draft.models[name]
            return store.write(draft).serial

    def state_mv(self, old: str, new: str, *, lock_timeout: float | None) -> int:
        """`reconciler state mv`: a model's entry under another name; its jobs are adopted by the
        new name (their labels cannot change), so the next plan of a manifest `new` re-tunes nothing."""
        from reconciler.models import NAME_PATTERN

        if not re.fullmatch(NAME_PATTERN, new):
            raise ConfigError(f"{new!r} is not a model name (lowercase letters, digits and '-', at most 63)")
        store = self.store()
        with self.locked(store, "state mv", lock_timeout):
            state = store.read(stack=self.settings.stack)
            if old not in state.models:
                raise UnknownNameError(f"no model named {old!r} in the state {self.settings.state}")
            if new in state.models:
                raise StateConflictError(f"the state already has a model named {new!r}; `state rm {new}` first")
            draft = state.model_copy(deep=True)
            entry = draft.models.pop(old)
            known = [entry.job, entry.serving_job, *entry.cancel_requested, *(getattr(entry, "jobs", None) or [])]
            jobs = {j: entry.spec_hash or "" for j in known if j}
            draft.models[new] = entry.model_copy(update={"adopted": {**jobs, **entry.adopted}})
            return store.write(draft).serial

    def force_unlock(self, lock_id: str) -> str:
        store = self.store()
        store.force_unlock(lock_id)
        return store.describe()


@dataclass
class StatusSnapshot:
    """One look at the models: rows (or in-depth details for named models), and how many of the
    models with jobs have only final jobs, of how many."""

    rows: list[dict[str, Any]]
    others: list[dict[str, Any]]
    errors: list[str]
    details: list[dict[str, Any]] | None
    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


@dataclass
class StatusQuery:
    session: Session
    desired: list[DesiredModel]
    state: State
    names: list[str]
    parents: list[str]
    prune: bool
    metrics: bool

    def snapshot(self) -> StatusSnapshot:
        from reconciler.models import StateClass
        from reconciler.plan import compute_plan, derive_models, jobs_by_name
        from reconciler.status import model_detail, status_rows

        stack = self.session.settings.stack
        observation = self.session.observe(self.parents)
        plan = compute_plan(self.desired, observation, self.state, stack=stack, strict=False, prune=self.prune,
                            **self.session.lifecycle())
        owned = jobs_by_name(observation, stack, self.state)
        watched = [n for n in owned if not self.names or n in self.names]
        running = sum(1 for n in watched
                      if any(j.state_class in (StateClass.LIVE, StateClass.CANCELLING) for j in owned[n]))
        # Endpoints as the API shows them now, not as the state last recorded them.
        current = self.state.model_copy(update={"models": derive_models(
            self.desired, observation, self.state, stack=stack)})
        rows, others = status_rows(plan, observation, current)
        details = None
        if self.names:
            details = [model_detail(n, owned.get(n, []), plan, self.state) for n in self.names]
            if self.metrics:
                self._read_metrics(details)
        return StatusSnapshot(rows, others, plan.errors, details, len(watched) - running, len(watched))

    def _read_metrics(self, details: list[dict[str, Any]]) -> None:
        from reconciler.metrics import read_metrics

        for detail in details:
            uri = next((j["gcs_metrics_uri"] for j in detail["jobs"] if j["gcs_metrics_uri"]), None)
            detail["metrics"] = read_metrics(self.session.storage(), uri).lines() if uri else []


# -- helpers ------------------------------------------------------------------------------------
def interrupted_creates(state: State, observation: Observation) -> list[str]:
    """Creates an interrupted run started: said in the plan itself (text, JSON, the PR comment),
    since a reviewer must know that an earlier apply died half-way."""
    from reconciler.models import LABEL_REQUEST

    out = []
    for entry in state.journal:
        if any(j.labels.get(LABEL_REQUEST) == entry.request_id for j in observation.jobs):
            outcome = "its job exists and is taken into account."
        elif entry.parent in observation.parents:
            outcome = ("no job of it is listed yet; it is planned again if still wanted (apply first waits for a "
                       "create still in flight, and cancels a late duplicate).")
        else:
            outcome = f"{entry.parent} was not listed, so whether its job exists is unknown."
        out.append(f"{entry.name}: an interrupted run started a create at {entry.started} "
                   f"(request {entry.request_id}); {outcome}")
    return out


def behind(state: State, desired: Sequence[DesiredModel], observation: Observation, stack: str) -> list[str]:
    """Models whose state entry is older than what the API shows (a job finished, an endpoint
    appeared): a plan with no changes must still say that apply records them."""
    from reconciler.plan import derive_models

    recorded = [d.name for d in desired if d.name in state.models]  # only a recorded entry can be behind
    if not recorded:
        return []
    fresh = derive_models(desired, observation, state, stack=stack, names=recorded)
    stale = sorted(n for n, e in fresh.items() if n in state.models and _seen(state.models[n]) != _seen(e))
    if not stale:
        return []
    return [f"the state is behind the API for {', '.join(stale[:10])}{', …' if len(stale) > 10 else ''} "
            "(job states or endpoints changed); `apply` or `refresh` records them"]


def _seen(entry: Any) -> tuple[Any, ...]:
    return (entry.job, entry.state, entry.serving_job, entry.tuned_model.endpoint if entry.tuned_model else None)


def import_hints(plan: Plan, desired: Sequence[DesiredModel], observation: Observation) -> list[str]:
    """A model about to be created while an unmanaged job in its parent has exactly its spec:
    say that `import` adopts it instead of tuning again (hours, and money)."""
    from reconciler.models import spec_hash

    creating = {c.name for c in plan.creates if c.action.value == "create"}
    out = []
    for d in desired:
        if d.name not in creating:
            continue
        for job in observation.jobs:
            if job.managed or job.parent != d.parent:
                continue
            if spec_hash(d.seen_on(job)) == d.spec_hash:
                out.append(f"{d.name}: the unmanaged job {job.name} has exactly this spec; `reconciler import "
                           f"{job.name} --name {d.name}` adopts it instead of tuning again")
                break
    return out


def read_saved_plan(path: Path) -> Plan | None:
    """The plan in `path` if it is a saved plan file, else None (it is a manifest path). Read
    within bounds; a file that is not a plan of this version, or was edited, is refused."""
    from pydantic import ValidationError

    from reconciler.plan import PLAN_FORMAT_VERSION, Plan, fingerprint

    if not path.is_file():
        return None
    with path.open("rb") as f:
        if not f.read(4096).lstrip().startswith(b"{"):
            return None
        if path.stat().st_size > SAVED_PLAN_LIMIT:
            raise PlanError(f"{path}: {path.stat().st_size:,} bytes is not a saved plan (they are far smaller)")
        f.seek(0)
        data = f.read(SAVED_PLAN_LIMIT + 1)
    try:
        saved = Plan.model_validate_json(data)
    except ValidationError as exc:
        first = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise PlanError(f"{path}: not a saved plan of this version ({exc.error_count()} problem(s): "
                        f"{first}). Run plan again.") from None
    if saved.format_version != PLAN_FORMAT_VERSION:
        raise PlanError(f"{path}: a saved plan of format {saved.format_version}, this version reads "
                        f"{PLAN_FORMAT_VERSION}. Run plan again.")
    if fingerprint(saved) != saved.fingerprint:
        raise PlanError(f"{path} was edited after it was made (its content no longer matches its "
                        "fingerprint); nothing was applied. Run plan again.")
    return saved


def _looks_like_plan(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4096).lstrip().startswith(b"{")


def saved_models(saved: Plan, where: str) -> list[DesiredModel]:
    """The models a saved plan was made from; one that this version cannot read is refused."""
    from reconciler.models import DesiredModel

    out = []
    for i, data in enumerate(saved.desired):
        try:
            out.append(DesiredModel.from_dict(data))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            name = data.get("name") if isinstance(data, dict) else None
            raise PlanError(f"{where}: desired[{i}] ({name!r}) is not a model this version reads "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Run plan again.") from None
    return out


def _what_differs(saved: Plan, fresh: Plan) -> str:
    keys = {c.name: c.key for c in saved.actionable}
    now = {c.name: c.key for c in fresh.actionable}
    names = sorted(n for n in set(keys) | set(now) if keys.get(n) != now.get(n))
    if names:
        return "decisions differ for " + ", ".join(names[:10])
    return "the models, options, parents or state it was made from differ"


def _refuse_push(current: State, pushed: State, where: str, path: Path) -> None:
    if current.lineage != pushed.lineage:
        raise StateConflictError(f"{where} has another lineage ({current.lineage}) than {path} ({pushed.lineage}): "
                              "they are different states. Use --force to overwrite.")
    if current.serial > pushed.serial:
        raise StateConflictError(f"{where} is newer (serial {current.serial}) than {path} (serial {pushed.serial}). "
                              "Use --force to overwrite.")
    if current.serial == pushed.serial and current.models != pushed.models:
        raise StateConflictError(f"{where} and {path} have the same serial ({current.serial}) but different "
                              "content: they diverged. Use --force to overwrite.")


def _shown_of(path: Path) -> str:
    from reconciler.yamlio import shown_path

    return shown_path(path) + ":"


def _check_same_meaning(session: Session, path: Path, new: str, models: Sequence[DesiredModel]) -> None:
    """The formatted text validates to exactly the models the file held."""
    import tempfile

    from reconciler.manifest import Defaults, load_manifests

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        copy.write_text(new, encoding="utf-8")
        s = session.settings
        again = load_manifests([copy], Defaults(project=s.project, region=s.region), overrides=s.overrides)
    if [d.to_dict() | {"source": ""} for d in again.models] != [d.to_dict() | {"source": ""} for d in models]:
        raise ConfigError(f"{path}: formatting would change what it means; left as it is (please report this)")


def _check_emulator_data(data: Path) -> None:
    """The embedded emulator's data file: absent, or a regular file of sane size."""
    import os
    import stat

    try:
        info = os.stat(data)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{data}: cannot read the emulator data file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        return  # a folder holds emulator-state.json
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{data}: the emulator data file must be a regular file (not a device or a pipe)")
    if info.st_size > EMULATOR_DATA_LIMIT:
        raise ConfigError(f"{data}: {info.st_size:,} bytes is too large for an emulator data file")
