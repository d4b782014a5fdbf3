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


def _fenced_yaml(text: str) -> list[str]:
    blocks, inside, current = [], False, []
    for line in text.splitlines(keepends=True):
        if line.startswith("```yaml"):
            inside, current = True, []
        elif line.startswith("```") and inside:
            inside = False
            blocks.append("".join(current))
        elif inside:
            current.append(line)
    return blocks


def test_ci_recipes_are_valid_and_documented_verbatim():
    import yaml

    docs = _fenced_yaml((ROOT / "docs" / "ci.md").read_text())
    for name in ("examples/github-actions.yml", "examples/gitlab-ci.yml", ".pre-commit-hooks.yaml"):
        text = (ROOT / name).read_text()
        assert yaml.safe_load(text), name
        assert text in docs, f"docs/ci.md must show {name} verbatim"


def test_ci_recipes_use_only_existing_flags():
    import re

    from typer.main import get_command

    from reconciler.cli import app

    group = get_command(app)
    known_global = {o for p in group.params for o in p.opts}
    for name in ("examples/github-actions.yml", "examples/gitlab-ci.yml"):
        for line in (ROOT / name).read_text().splitlines():
            m = re.search(r"\breconciler ((?:--[\w-]+ (?:\S+ )?)*)(\w[\w-]*)(.*)", line)
            if not m or "pip install" in line:
                continue
            command = group.commands[m.group(2)]  # KeyError: an unknown command
            known = {o for p in command.params for o in p.opts} | known_global
            for flag in re.findall(r"(--[\w-]+)", m.group(1) + m.group(3)):
                assert flag in known, f"{name}: {line.strip()}: unknown flag {flag}"


def test_pre_commit_hook_validates_manifests():
    import yaml

    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["entry"] == "reconciler validate" and hook["language"] == "python"
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "manifests").glob("*.yaml"))
    result = subprocess.run([*hook["entry"].split(), *files], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
