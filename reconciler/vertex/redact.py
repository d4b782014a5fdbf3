"""Moved to `reconciler.http.redact`; kept importable for code not yet moved."""

from reconciler.http.redact import MASK, redact, register_secret

__all__ = ["MASK", "redact", "register_secret"]
