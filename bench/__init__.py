"""Performance benchmark of the reconciler against the API's lower bound and the official SDK.

Run `python -m bench.run` from the repository root; `bench/README.md` explains every figure.
"""
