"""Moved to `reconciler.http.ratelimit`; kept importable for code not yet moved."""

from reconciler.http.ratelimit import WINDOW_SECONDS, SlidingWindowLimiter

__all__ = ["WINDOW_SECONDS", "SlidingWindowLimiter"]
