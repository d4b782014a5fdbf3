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
        "  region: us-central1\n  baseModel: gemini-3.1-flash-lite\n  supervisedTuningSpec: {trainingDatasetUri: gs://bkt/t.jsonl}\n"
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

    ci_md = (ROOT / "docs" / "ci.md").read_text()
    docs = _fenced_yaml(ci_md)
    for name in ("examples/github-actions.yml", "examples/gitlab-ci.yml", ".pre-commit-hooks.yaml"):
        text = (ROOT / name).read_text()
        assert yaml.safe_load(text), name
        assert text in docs, f"docs/ci.md must show {name} verbatim"
        assert "OWNER" not in text, f"{name}: no placeholder owner; say where the user's copy comes from"
    assert "OWNER" not in ci_md
    action = _action()
    for kind in ("inputs", "outputs"):
        for name in action[kind]:
            assert f"`{name}`" in ci_md, f"docs/ci.md must document the Action's {kind[:-1]} {name}"


_COMMAND_LINE = r"(?<![\w-])reconciler ((?:--[\w-]+ (?:\S+ )?)*)(\w[\w-]*)(.*)"
_FLAG = r"(?<![\w-])(--[\w-]+)"


def _options() -> tuple[set[str], dict[str, set[str]]]:
    """The global options and, per command, the options `reconciler COMMAND` accepts."""
    from typer.main import get_command

    from reconciler.cli import app

    group = get_command(app)
    known_global = {o for p in group.params for o in p.opts}
    return known_global, {name: {o for p in command.params for o in p.opts} | known_global
                          for name, command in group.commands.items()}


def test_ci_recipes_use_only_existing_flags():
    import re

    known_global, known = _options()
    for name in ("examples/github-actions.yml", "examples/gitlab-ci.yml"):
        for line in (ROOT / name).read_text().splitlines():
            m = re.search(_COMMAND_LINE, line)
            if not m or "pip install" in line:
                continue
            assert m.group(2) in known, f"{name}: {line.strip()}: unknown command {m.group(2)}"
            for flag in re.findall(_FLAG, m.group(1) + m.group(3)):
                assert flag in known[m.group(2)], f"{name}: {line.strip()}: unknown flag {flag}"
    # action.yml: a flag gathered into an array on its own line belongs to the next command line
    for step in _action()["runs"]["steps"]:
        lines = [line for line in step.get("run", "").splitlines() if not re.search(r"\b(pip|gh) ", line)]
        commands = [(i, m.group(2)) for i, m in enumerate(re.search(_COMMAND_LINE, line) for line in lines) if m]
        for i, line in enumerate(lines):
            after = [c for j, c in commands if j >= i] or [c for _, c in commands[-1:]]
            allowed = known[after[0]] if after else known_global
            for flag in re.findall(_FLAG, line):
                assert flag in allowed, f"action.yml step {step.get('name')!r}: {line.strip()}: unknown flag {flag}"
    # the example's extra-args go to the command it gives the Action
    for step in _action_uses(_recipes()[0]):
        with_ = step.get("with", {})
        for flag in re.findall(_FLAG, str(with_.get("extra-args", ""))):
            assert flag in known[with_["command"]], f"examples/github-actions.yml {step['name']}: unknown {flag}"


def _recipes() -> tuple[dict, dict]:
    import yaml

    return (yaml.safe_load((ROOT / "examples" / "github-actions.yml").read_text()),
            yaml.safe_load((ROOT / "examples" / "gitlab-ci.yml").read_text()))


def _action() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "action.yml").read_text())


def _action_uses(github: dict) -> list[dict]:
    """The example's steps that run the Action (its copy under .github/actions/)."""
    return [s for s in github["jobs"]["reconcile"]["steps"]
            if s.get("uses") == "./.github/actions/vertex-tuning-reconciler"]


def test_ci_recipes_action_is_a_composite_action():
    import re

    action = _action()
    text = (ROOT / "action.yml").read_text()
    assert action["name"] and action["description"] and action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    ids = {s["id"] for s in steps if "id" in s}
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
        if "uses" in step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), f"pin {step['uses']} to a major version"
            continue
        assert step.get("shell") == "bash" and step.get("name"), f"a run step needs shell: bash and a name: {step}"
        assert "${{" not in step["run"], f"step {step['name']!r}: pass expressions through env (no injection)"
        if "GITHUB_OUTPUT" in step["run"]:
            assert "id" in step, f"step {step['name']!r} writes outputs no one can read without an id"
        condition = step.get("if", "inputs.command == 'plan'")
        assert re.fullmatch(r"inputs\.command == '(plan|apply)'", condition), condition
    inputs = action["inputs"]
    referenced = set(re.findall(r"\binputs\.([\w-]+)", text))
    assert referenced <= set(inputs), f"inputs used but not declared: {referenced - set(inputs)}"
    assert set(inputs) <= referenced, f"inputs declared but unused: {set(inputs) - referenced}"
    for name, spec in inputs.items():
        assert spec.get("description") and not spec.get("required") and "default" in spec, name
    assert inputs["manifests"]["default"] == "manifests/" and inputs["github-token"]["default"] == "${{ github.token }}"
    assert {"exit-code", "changes", "endpoints"} <= set(action["outputs"])
    for name, spec in action["outputs"].items():
        m = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", spec["value"])
        assert m and m.group(1) in ids, f"output {name}: {spec['value']}"
        step = next(s for s in steps if s.get("id") == m.group(1))
        assert f"{m.group(2)}=" in step["run"] or f"{m.group(2)}<<" in step["run"], f"output {name} is never written"


def test_ci_recipes_keep_the_state_in_cloud_storage_and_expose_outputs():
    import re

    github, gitlab = _recipes()
    action = _action()
    job = github["jobs"]["reconcile"]
    assert job["env"]["RECONCILER_STATE"] == "${{ vars.RECONCILER_STATE }}"
    for steps in (job["steps"], action["runs"]["steps"]):
        assert not [s for s in steps if "cache" in s.get("uses", "")], "the state must not live in a cache"
    uses = {s["name"]: s for s in _action_uses(github)}
    assert set(uses) == {"plan", "apply"}
    for step in uses.values():
        assert set(step["with"]) <= set(action["inputs"]), step["with"]
    assert uses["plan"]["with"]["command"] == "plan" and uses["apply"]["with"]["command"] == "apply"
    assert uses["apply"]["with"]["wait"] is True, "apply must fail the run when a tuning job fails"
    ids = {s["id"]: s for s in job["steps"] if "id" in s}
    for value in job["outputs"].values():
        m = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}", value)
        assert m and m.group(1) in ids and m.group(2) in action["outputs"], value
    assert not [name for name, j in gitlab.items() if isinstance(j, dict) and "cache" in j]
    for name in ("plan", "apply"):
        assert gitlab[name]["extends"] == ".google-cloud"
    assert any("gs://" in line and "RECONCILER_STATE" in line for line in gitlab[".google-cloud"]["before_script"])
    assert any("reconciler apply" in line and "--wait" in line for line in gitlab["apply"]["script"])


_EXPRESSION = r"\$\{\{\s*(.*?)\s*\}\}"


def _action_steps(with_: dict, context: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """The Action's `run:` steps that `with_` selects, `${{ … }}` substituted as the runner would."""
    import re

    action = _action()
    values = dict(context)

    def sub(value: object) -> str:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return re.sub(_EXPRESSION, lambda m: values[m.group(1)], text)

    for name, spec in action["inputs"].items():
        values[f"inputs.{name}"] = sub(with_.get(name, spec["default"]))
    steps = []
    for step in action["runs"]["steps"]:
        m = re.fullmatch(r"inputs\.([\w-]+) == '([\w-]+)'", step.get("if", "inputs.command == 'plan'"))
        if "run" in step and ("if" not in step or values[f"inputs.{m.group(1)}"] == m.group(2)):
            steps.append((step["name"], sub(step["run"]), {k: sub(v) for k, v in step.get("env", {}).items()}))
    return steps


def _run_action(with_: dict, env: dict[str, str], cwd: Path, pr: str = "") -> tuple[int, str]:
    """Run the Action's shell steps in order as a runner does (bash -e, $GITHUB_ENV read between
    steps); the exit code of the first failing step and the log."""
    context = {"github.action_path": str(ROOT), "github.repository": "example/models", "github.token": "token",
               "github.event.pull_request.number": pr, "runner.temp": env["RUNNER_TEMP"]}
    env, log = dict(env), ""
    for name, script, step_env in _action_steps(with_, context):
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                                env={**env, **step_env}, capture_output=True, text=True, timeout=120)
        log += f"--- {name}\n{result.stdout}{result.stderr}"
        if result.returncode:
            return result.returncode, log
        github_env = Path(env["GITHUB_ENV"])
        if github_env.exists():
            env.update(line.split("=", 1) for line in github_env.read_text().splitlines() if "=" in line)
    return 0, log


def _github_output(path: Path) -> dict[str, str]:
    """Parse a $GITHUB_OUTPUT file (name=value lines and name<<DELIMITER blocks); the last wins."""
    outputs, lines = {}, iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<")[0]:
            name, delimiter = line.split("<<", 1)
            outputs[name] = "\n".join(iter(lambda: next(lines), delimiter))
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def _ci_workspace(tmp_path: Path, emulator, strict_gcs: str) -> tuple[Path, dict[str, str]]:
    """A checkout of the example manifests, the emulator's jobs finishing in a fraction of a second,
    the state in a fresh bucket of the fake Cloud Storage, and fake gh/curl/python that record what
    would be posted or installed."""
    import os

    from tests.clihelp import write_config
    from tests.gcsfake import new_bucket

    emulator.configure(clock="real", pending_seconds=0.1, running_seconds=0.2)
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "manifests", work / "manifests")
    write_config(work, stack="not-this-one", pollInterval=0.1,
                 retry={"initial": 0.01, "maximum": 0.05, "deadline": 2, "maxAttempts": 3})
    bin_dir, runner = tmp_path / "bin", tmp_path / "runner"
    bin_dir.mkdir()
    runner.mkdir()
    for tool in ("gh", "curl", "python"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "$POSTED"\n')
        (bin_dir / tool).chmod(0o755)
    state = f"gs://{new_bucket(strict_gcs)}/prod/reconciler.state.json"
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "STORAGE_EMULATOR_HOST": strict_gcs, "RECONCILER_API_ENDPOINT": emulator.url,
           "RECONCILER_STACK": "prod", "RECONCILER_STATE": state, "POSTED": str(tmp_path / "posted"),
           "RUNNER_TEMP": str(runner), "GITHUB_OUTPUT": str(runner / "output"), "GITHUB_ENV": str(runner / "env"),
           "GITHUB_STEP_SUMMARY": str(runner / "summary"), "PLAN_COMMENT_TOKEN": "t",
           "CI_API_V4_URL": "https://gitlab.invalid/api/v4", "CI_PROJECT_ID": "1", "CI_MERGE_REQUEST_IID": "2"}
    return work, env


def _run_script(script: str, env: dict[str, str], cwd: Path) -> int:
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120).returncode


def test_ci_recipe_steps_run_against_the_emulator_with_state_in_cloud_storage(
    tmp_path: Path, emulator, strict_gcs: str
):
    """The example workflow's Action steps and the GitLab recipe's shell: exit 2 of plan passes
    and posts the plan, an error fails, apply writes the outputs, and the state is only in the
    bucket."""
    github, gitlab = _recipes()
    uses = {s["name"]: s["with"] for s in _action_uses(github)}
    work, env = _ci_workspace(tmp_path, emulator, strict_gcs)
    posted, runner = tmp_path / "posted", Path(env["RUNNER_TEMP"])
    plan_md = runner / "reconciler-plan.md"
    gitlab_plan, gitlab_apply = "\n".join(gitlab["plan"]["script"]), "\n".join(gitlab["apply"]["script"])

    code, log = _run_action(uses["plan"], {**env, "RECONCILER_STATE": ""}, work, pr="7")
    assert code == 1 and log.rsplit("--- ", 1)[1].startswith("check the state is in Cloud Storage"), log
    assert "python -m pip install --disable-pip-version-check vertex-tuning-reconciler" in posted.read_text()
    assert _run_action({**uses["plan"], "command": "destroy"}, env, work)[0] == 1

    code, log = _run_action(uses["plan"], env, work, pr="7")
    assert code == 0, log  # plan exits 2: changes, not failure
    assert f"gh pr comment 7 --body-file {plan_md} --edit-last" in posted.read_text()
    outputs = _github_output(runner / "output")
    assert outputs["exit-code"] == "2" and outputs["changes"] == "true"
    assert "3 to create" in plan_md.read_text() and "3 to create" in (runner / "summary").read_text()
    assert _run_script(gitlab_plan, env, work) == 0 and "merge_requests/2/notes" in posted.read_text()

    code, log = _run_action(uses["apply"], env, work)
    assert code == 0, log
    endpoints = json.loads(_github_output(runner / "output")["endpoints"])
    assert endpoints["support-bot"]["endpoint"], "apply waited: the endpoint is ready"
    assert f"SUPPORT_BOT_ENDPOINT={endpoints['support-bot']['endpoint']}" in (runner / "env").read_text()
    assert _run_script(gitlab_apply, env, work) == 0
    assert "SUPPORT_BOT_ENDPOINT=" in (work / "endpoints.env").read_text()

    comments = posted.read_text().count("gh pr comment")
    code, log = _run_action(uses["plan"], env, work)  # a push: no pull request to comment on
    assert code == 0 and "No changes" in plan_md.read_text(), log
    assert _github_output(runner / "output")["changes"] == "false" and posted.read_text().count("gh pr comment") == comments
    assert not list(work.glob("reconciler.state*")), "the state must be in the bucket only"

    unreachable = {**env, "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}
    assert _run_action(uses["plan"], unreachable, work, pr="7")[0] == 1 and _run_script(gitlab_plan, unreachable, work) == 1

    # the state as an input, the tool from the Action's own checkout
    code, log = _run_action({**uses["plan"], "state": env["RECONCILER_STATE"], "install-from-action": True},
                            {**env, "RECONCILER_STATE": ""}, work)
    assert code == 0 and "No changes" in plan_md.read_text(), log
    assert f"python -m pip install --disable-pip-version-check {ROOT}" in posted.read_text()
    # extra-args reach validate too where it has the option
    (work / "empty").mkdir()
    assert _run_action({**uses["plan"], "manifests": "empty/"}, env, work)[0] == 1
    code, log = _run_action({**uses["plan"], "manifests": "empty/", "extra-args": "--allow-empty"}, env, work)
    assert code == 0, log  # not the manifest root: the models of the state are kept


def test_ci_recipe_steps_apply_with_wait_fails_when_tuning_fails(tmp_path: Path, emulator, strict_gcs: str):
    """`wait: true` (apply --wait) turns a failed tuning job into a failed run, on GitHub and on
    GitLab; the endpoints of the models that did succeed are still written."""
    github, gitlab = _recipes()
    uses = {s["name"]: s["with"] for s in _action_uses(github)}
    work, env = _ci_workspace(tmp_path, emulator, strict_gcs)
    runner = Path(env["RUNNER_TEMP"])
    emulator.fail(labels={"reconciler-name": "sentiment"}, message="bad rows")

    code, log = _run_action(uses["apply"], env, work)
    assert code == 1 and "Tuning did not succeed for: sentiment" in log, log
    endpoints = json.loads(_github_output(runner / "output")["endpoints"])
    assert endpoints["support-bot"]["endpoint"] and not endpoints.get("sentiment", {}).get("endpoint")
    assert "SUPPORT_BOT_ENDPOINT=" in (runner / "env").read_text()
    assert _run_script("\n".join(gitlab["apply"]["script"]), env, work) == 1
    assert not (work / "endpoints.env").exists()
    code, log = _run_action({**uses["apply"], "wait": False}, env, work)
    assert code == 0, log  # without wait, apply only starts the jobs: CI would stay green


def test_pre_commit_hook_validates_manifests(tmp_path: Path):
    import yaml

    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    [hook] = yaml.safe_load(text)
    assert hook["entry"] == "reconciler validate" and hook["language"] == "python"
    # the documented `repo: local` hook, for teams that install the tool themselves
    comment = [line.removeprefix("#") for line in text.splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(comment) if "- repo: local" in line)
    block = [comment[start]] + [line for line in comment[start + 1:] if line.startswith("       ")]
    [local] = yaml.safe_load("\n".join(line[5:] for line in block))
    assert local["repo"] == "local"
    [local_hook] = local["hooks"]
    assert local_hook["language"] == "system" and local_hook["entry"] == "reconciler validate"
    assert local_hook["id"] == hook["id"] and local_hook["files"] == hook["files"]
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "manifests").glob("*.yaml"))
    for entry in (hook["entry"], local_hook["entry"]):
        result = subprocess.run([*entry.split(), *files], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: reconciler/v1\nkind: TunedModel\nmetadata: {name: Bad_Name}\nspec: {}\n")
    result = subprocess.run([*hook["entry"].split(), str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1 and "bad.yaml" in result.stderr


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
