"""The client's per-region pacing: a sliding 60 s window never exceeds a per-minute quota."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.http.ratelimit import SlidingWindowLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waits_only_when_the_window_is_full_and_per_region():
    t = FakeTime()
    limiter = SlidingWindowLimiter(3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        limiter.acquire("us-central1")
    assert t.now == 1000.0
    limiter.acquire("europe-west4")  # another region has its own window
    assert t.now == 1000.0
    limiter.acquire("us-central1")
    assert t.now == 1060.0 and limiter.waited == 60.0  # exactly the window, no more


def test_zero_means_unlimited():
    t = FakeTime()
    limiter = SlidingWindowLimiter(0, clock=t.clock, sleep=t.sleep)
    for _ in range(10_000):
        limiter.acquire("r")
    assert t.now == 1000.0


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 20), gaps=st.lists(st.floats(0, 30), min_size=1, max_size=120))
def test_no_sixty_second_window_ever_holds_more_than_the_limit(limit: int, gaps: list[float]):
    t = FakeTime()
    limiter = SlidingWindowLimiter(limit, clock=t.clock, sleep=t.sleep)
    sent = []
    for gap in gaps:
        t.now += gap
        limiter.acquire("r")
        sent.append(t.now)
    for i, start in enumerate(sent):
        in_window = [s for s in sent[i:] if s < start + 60]
        assert len(in_window) <= limit


def test_a_paced_call_says_what_it_waits_for_and_how_long():
    """Silence for up to a minute reads as a hang: the transport tells its notify (a warning on
    stderr) which quota is full, in which region, and for how long it waits (issue 14 item 11)."""
    import httpx

    from reconciler.http.transport import Transport

    t = FakeTime()
    said: list[str] = []
    transport = Transport(httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={}))),
                          clock=t.clock, sleep=t.sleep, creates_per_minute=1)
    transport.notify = said.append
    for _ in range(2):
        transport.send("POST", "http://127.0.0.1/v1/x", body={}, region="us-central1", create=True)
    assert said == ["us-central1: 1 job submissions a minute reached (rateLimit in reconciler.yaml); "
                    "waiting 60 s for the quota's window"]
    assert t.now >= 1060.0
