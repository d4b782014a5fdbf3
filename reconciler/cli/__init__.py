"""The command line: `reconciler validate | fmt | plan | show | apply | refresh | status | output |
models | probe | import | state … | schema | force-unlock | emulator`.

This package is the only place that prints or reads `os.environ`/`argv`; what each command does
is `reconciler.session`'s. Exit codes: 0 success, 1 error, 2 (with `plan --detailed-exitcode`)
success with changes — as terraform. Expected errors print one `Error: …` block; an unexpected
one says how to get details (`--debug`). Heavy libraries (httpx, google-auth, deepdiff, uvicorn)
are imported only by the commands that need them, so `--help` and `validate` start fast.

Modules: `app` (the typer app, global options, the run's Runtime, shared options and printing,
the entry point), `reconcile`, `inspect`, `manage` (the commands, registered on import, in the
order `--help` lists them).
"""

# isort: off
from reconciler.cli.app import app, main, run
from reconciler.cli import reconcile  # noqa: F401 (registers validate, fmt… in this order)
from reconciler.cli import inspect  # noqa: F401
from reconciler.cli import manage  # noqa: F401
# isort: on

__all__ = ["app", "main", "run"]
