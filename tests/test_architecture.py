"""Structure that must not rot: import layers, and a CLI that starts without heavy libraries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("httpx", "google.auth", "deepdiff", "uvicorn", "starlette")


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is a test dependency"
    result = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _modules_after(args: list[str], tmp_path: Path) -> set[str]:
    code = (
        "import sys\n"
        "from reconciler.cli import main\n"
        f"code = main({args!r})\n"
        f"print('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    marker = [line for line in result.stdout.splitlines() if line.startswith("LOADED:")]
    assert marker, result.stdout + result.stderr
    return {m for m in marker[-1].removeprefix("LOADED:").split(",") if m}


def test_help_and_validate_do_not_import_heavy_libraries(tmp_path: Path):
    assert _modules_after(["--help"], tmp_path) == set()
    (tmp_path / "m.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: TunedModel\nmetadata: {name: a}\nspec:\n  project: demo-project\n"
        "  region: us-central1\n  baseModel: gemini-2.5-flash\n  supervisedTuningSpec: {trainingDatasetUri: gs://bkt/t.jsonl}\n"
    )
    assert _modules_after(["validate", "m.yaml"], tmp_path) == set()


def test_committed_schema_matches_the_code():
    from reconciler.manifest import json_schema

    committed = json.loads((ROOT / "docs" / "manifest.schema.json").read_text())
    assert committed == json_schema(), "run: reconciler schema > docs/manifest.schema.json"


def test_example_manifests_validate_against_the_schema():
    import jsonschema
    import yaml

    schema = json.loads((ROOT / "docs" / "manifest.schema.json").read_text())
    docs = [d for p in sorted((ROOT / "manifests").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    assert len(docs) >= 3
    for doc in docs:
        jsonschema.validate(doc, schema)
