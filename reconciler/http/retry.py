"""How failed calls are retried: one policy type for the settings and the transport.

No dependency beyond the standard library's dataclasses, so `config` can hold one (from
`reconciler.yaml`'s `retry:`) without importing httpx, and `--help` and `validate` start fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried. Delays in seconds.

    google-api-core's defaults: 1 s initial, x2, 60 s cap, 120 s total; at most 10 attempts."""

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 60.0
    deadline: float = 120.0
    max_attempts: int = 10

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number `attempt` (1-based): exponential, capped, 'equal jitter'."""
        base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return base / 2 + rng.uniform(0, base / 2)
