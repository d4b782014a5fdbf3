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


def _recipes() -> tuple[dict, dict]:
    import yaml

    return (yaml.safe_load((ROOT / "examples" / "github-actions.yml").read_text()),
            yaml.safe_load((ROOT / "examples" / "gitlab-ci.yml").read_text()))


def test_ci_recipes_keep_the_state_in_cloud_storage_and_expose_outputs():
    github, gitlab = _recipes()
    job = github["jobs"]["reconcile"]
    assert job["env"]["RECONCILER_STATE"] == "${{ vars.RECONCILER_STATE }}"
    assert not [s for s in job["steps"] if "cache" in s.get("uses", "")], "the state must not live in a cache"
    ids = {s["id"] for s in job["steps"] if "id" in s}
    for step in job["steps"]:
        if "GITHUB_OUTPUT" in step.get("run", ""):
            assert "id" in step, f"step {step.get('name')!r} writes outputs no one can read without an id"
    for value in job["outputs"].values():
        assert value.removeprefix("${{ steps.").split(".")[0] in ids
    assert not [name for name, j in gitlab.items() if isinstance(j, dict) and "cache" in j]
    for name in ("plan", "apply"):
        assert gitlab[name]["extends"] == ".google-cloud"
    assert any("gs://" in line and "RECONCILER_STATE" in line for line in gitlab[".google-cloud"]["before_script"])


def test_ci_recipe_steps_run_against_the_emulator_with_state_in_cloud_storage(
    tmp_path: Path, emulator, strict_gcs: str
):
    """The recipes' shell: exit 2 of plan passes and posts the plan, an error fails, apply writes
    the outputs, and the state is only in the bucket."""
    import os

    from tests.clihelp import write_config
    from tests.gcsfake import new_bucket

    github, gitlab = _recipes()
    steps = {s.get("name"): s["run"] for s in github["jobs"]["reconcile"]["steps"] if "run" in s}
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "manifests", work / "manifests")
    write_config(work, stack="not-this-one", retry={"initial": 0.01, "maximum": 0.05, "deadline": 2, "maxAttempts": 3})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gh", "curl"):  # record what would be posted
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "$POSTED"\n')
        (bin_dir / tool).chmod(0o755)
    state = f"gs://{new_bucket(strict_gcs)}/prod/reconciler.state.json"
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "STORAGE_EMULATOR_HOST": strict_gcs, "RECONCILER_API_ENDPOINT": emulator.url,
           "RECONCILER_STACK": "prod", "RECONCILER_STATE": state, "POSTED": str(tmp_path / "posted"),
           "GITHUB_OUTPUT": str(tmp_path / "github_output"), "PLAN_COMMENT_TOKEN": "t",
           "CI_API_V4_URL": "https://gitlab.invalid/api/v4", "CI_PROJECT_ID": "1", "CI_MERGE_REQUEST_IID": "2"}

    def run(script: str, **extra: str) -> int:
        script = script.replace("${{ github.event.number }}", "7")
        result = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=work, env={**env, **extra},
                                capture_output=True, text=True, timeout=120)
        return result.returncode

    gitlab_plan, gitlab_apply = "\n".join(gitlab["plan"]["script"]), "\n".join(gitlab["apply"]["script"])
    assert run(steps["check the state is in Cloud Storage"]) == 0
    assert run(steps["check the state is in Cloud Storage"], RECONCILER_STATE="") == 1
    assert run(steps["plan"]) == 0 and run(gitlab_plan) == 0  # plan exits 2: changes, not failure
    posted = (tmp_path / "posted").read_text()
    assert "gh pr comment 7 --body-file plan.md" in posted and "merge_requests/2/notes" in posted
    assert "3 to create" in (work / "plan.md").read_text()
    assert run(steps["apply"]) == 0
    outputs = (tmp_path / "github_output").read_text()
    assert "SUPPORT_BOT_ENDPOINT=" in outputs and "endpoints<<EOF" in outputs
    assert run(gitlab_apply) == 0 and "SUPPORT_BOT_ENDPOINT=" in (work / "endpoints.env").read_text()
    assert run(steps["plan"]) == 0 and "No changes" in (work / "plan.md").read_text()
    assert not list(work.glob("reconciler.state*")), "the state must be in the bucket only"
    unreachable = {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}
    assert run(steps["plan"], **unreachable) == 1 and run(gitlab_plan, **unreachable) == 1


def test_pre_commit_hook_validates_manifests():
    import yaml

    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["entry"] == "reconciler validate" and hook["language"] == "python"
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "manifests").glob("*.yaml"))
    result = subprocess.run([*hook["entry"].split(), *files], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- the shape rules of docs/architecture.md ------------------------------------------------------
MAX_FUNCTION_LINES = 60


def _package_functions():
    import ast

    for path in sorted((ROOT / "reconciler").rglob("*.py")):
        if "emulator" in path.parts:
            continue  # an independent reading of the REST contract, kept apart
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT), node


def test_no_function_is_longer_than_sixty_lines():
    long = [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, node in _package_functions() if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "split these functions:\n" + "\n".join(long)


def test_no_function_is_more_complex_than_twelve():
    exe = shutil.which("ruff")
    assert exe, "ruff is a test dependency (pip install -e '.[test]')"
    result = subprocess.run([exe, "check", "--select", "C901", "--output-format", "concise", "reconciler"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
