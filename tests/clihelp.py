"""Helpers for driving the CLI in tests: run `reconciler.cli.main` and write manifests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs the CLI in-process in a working directory with a reconciler.yaml."""

    def __init__(self, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.workdir = workdir
        self.capsys = capsys

    def __call__(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.code == 0, f"exit {result.code}\nstdout:\n{result.out}\nstderr:\n{result.err}"
        return result

    def manifest(self, name: str, *, epochs: int | None = 3, base: str = "gemini-3.5-flash",
                 spec: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                 folder: str = "manifests") -> Path:
        """Write manifests/NAME.yaml; `spec`/`metadata` add or override fields."""
        sts: dict[str, Any] = {"trainingDatasetUri": f"gs://bucket/{name}/train.jsonl"}
        if epochs is not None:
            sts["hyperParameters"] = {"epochCount": epochs}
        doc = {
            "apiVersion": "reconciler/v1",
            "kind": "TunedModel",
            "metadata": {"name": name, **(metadata or {})},
            "spec": {"baseModel": base, "supervisedTuningSpec": sts, **(spec or {})},
        }
        path = self.workdir / folder / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def state(self) -> dict[str, Any]:
        return json.loads((self.workdir / "reconciler.state.json").read_text())


def write_config(workdir: Path, **extra: Any) -> None:
    """reconciler.yaml for tests: fast retries and a 5 s request timeout unless given."""
    settings: dict[str, Any] = {
        "project": "demo-project",
        "region": "us-central1",
        "stack": "test",
        "retry": {"initial": 0.01, "maximum": 0.05, "deadline": 20, "maxAttempts": 12},
        # The emulator answers in milliseconds: a short request timeout keeps the wait for an
        # interrupted run's create (the in-flight window) short in the kill trials.
        "requestTimeout": 5,
    }
    settings.update(extra)
    (workdir / "reconciler.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))


# The project, region and stack every CLI test runs in (write_config), and the labels of its jobs.
PARENT = "projects/demo-project/locations/us-central1"
OWNED = {"managed-by": "vertex-tuning-reconciler", "reconciler-stack": "test"}


def clean(r: Result, *codes: int) -> Result:
    """The run ended with one of `codes` and neither crashed nor called itself buggy."""
    assert r.code in (codes or (0,)), f"exit {r.code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
    for text in (r.out, r.err):
        assert "Traceback" not in text and "this is a bug" not in text and "unexpected" not in text, text
    return r


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
