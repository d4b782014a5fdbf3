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
