"""Smoke tests of tuned models: send a prompt to an endpoint (`generateContent`) and judge the reply.

`reconciler probe` runs them on demand against the endpoints in service; apply and refresh run a
gating `smokeTest` against each *new* endpoint before the state lets it replace the old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler import interrupt
from reconciler.errors import ApiError, ReconcilerError
from reconciler.models import DesiredModel, StateClass
from reconciler.plan import Observation, jobs_by_name
from reconciler.state.local import utc_now
from reconciler.state.model import SmokeRecord, State

DEFAULT_PROMPT = "Reply with the single word OK."
REPLY_KEEP = 300


class ContentApi(Protocol):
    def generate_content(self, endpoint: str, prompt: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ProbeResult:
    name: str
    job: str | None
    endpoint: str | None
    passed: bool
    reply: str | None = None
    error: str | None = None

    def record(self) -> SmokeRecord:
        return SmokeRecord(passed=self.passed, at=utc_now(), reply=self.reply, error=self.error)


def reply_text(response: dict[str, Any]) -> str:
    """The text of the first candidate of a GenerateContentResponse ('' when none)."""
    for candidate in response.get("candidates") or []:
        parts = (candidate.get("content") or {}).get("parts") or []
        return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    return ""


def probe(api: ContentApi, name: str, job: str | None, endpoint: str | None, prompt: str,
          expect: str | None) -> ProbeResult:
    """One prompt to one endpoint: passes when the reply is not empty and holds `expect`."""
    if not endpoint:
        return ProbeResult(name, job, endpoint, False, error="no endpoint in service")
    try:
        text = reply_text(api.generate_content(endpoint, prompt))
    except (ApiError, ReconcilerError) as exc:
        return ProbeResult(name, job, endpoint, False, error=str(exc))
    short = text if len(text) <= REPLY_KEEP else text[:REPLY_KEEP] + "…"
    if not text.strip():
        return ProbeResult(name, job, endpoint, False, short, "empty reply")
    if expect is not None and expect not in text:
        return ProbeResult(name, job, endpoint, False, short, f"reply does not contain {expect!r}")
    return ProbeResult(name, job, endpoint, True, short)


def gate_candidates(desired: Sequence[DesiredModel], observation: Observation, state: State,
                    stack: str) -> list[tuple[DesiredModel, str, str]]:
    """(model, job, endpoint) of each new succeeded job whose gating smokeTest has not passed."""
    owned = jobs_by_name(observation, stack, state)
    out = []
    for d in desired:
        if not d.smoke_gate:
            continue
        entry = state.models.get(d.name)
        done = [j for j in owned.get(d.name, []) if j.spec_hash == d.spec_hash
                and j.state_class is StateClass.SUCCEEDED and j.endpoint]
        if not done:
            continue
        job = max(done, key=lambda j: j.sort_key)
        record = entry.smoke_tests.get(job.name) if entry else None
        if entry is not None and entry.serving_job == job.name or record is not None and record.passed:
            continue
        assert job.endpoint is not None
        out.append((d, job.name, job.endpoint))
    return out


def run_gates(api: ContentApi, candidates: list[tuple[DesiredModel, str, str]]) -> list[ProbeResult]:
    def one(item: tuple[DesiredModel, str, str]) -> ProbeResult:
        d, job, endpoint = item
        return probe(api, d.name, job, endpoint, d.smoke_prompt or DEFAULT_PROMPT, d.smoke_expect)

    if not candidates:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(candidates)), initializer=interrupt.worker_thread) as pool:
        return list(pool.map(one, candidates))
