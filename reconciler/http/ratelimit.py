"""Client-side pacing under Vertex AI's per-minute, per-region request quotas.

Vertex AI documents its quotas per project, per region and per minute (600 resource-management
requests, 60 job submissions). Sending faster only buys 429s and backoff, so the client keeps its
own sliding 60-second window per region: at most `limit` requests in any 60 s. A sliding window
never exceeds a per-minute quota however the server counts it (a token bucket with a full burst
could send twice the limit within one minute). Every attempt, retries included, takes a slot.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from reconciler import interrupt

WINDOW_SECONDS = 60.0


class SlidingWindowLimiter:
    """At most `limit` acquisitions per key in any `window` seconds (0 = unlimited)."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = interrupt.sleep,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: dict[str, deque[float]] = {}
        self.waited = 0.0  # total seconds callers spent waiting (reported by benchmarks)
        # Told (key, seconds) before a wait of a second or more: a paced run says what it waits for.
        self.on_wait: Callable[[str, float], None] | None = None

    def acquire(self, key: str) -> float:
        """Take a slot for `key`, waiting if the window is full; return the seconds waited."""
        if self.limit <= 0:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                sent = self._sent.setdefault(key, deque())
                while sent and sent[0] <= now - self.window:
                    sent.popleft()
                if len(sent) < self.limit:
                    sent.append(now)
                    return waited
                # At least 1 ms: a float sum landing a hair short of the window's end must not spin.
                delay = max(sent[0] + self.window - now, 0.001)
                self.waited += delay
            if self.on_wait is not None and delay >= 1.0:
                self.on_wait(key, delay)
            self._sleep(delay)
            waited += delay
