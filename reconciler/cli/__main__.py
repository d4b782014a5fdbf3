"""`python -m reconciler.cli`."""

from reconciler.cli import run

run()
