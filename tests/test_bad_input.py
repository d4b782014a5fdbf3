"""Broken manifests: a corpus of known-bad files plus property-based fuzzing.

Every case must end in exit code 1 with a `file:line:` message, no traceback, and change nothing
(no job created, no state written).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from tests.clihelp import Cli

GOOD = """\
apiVersion: reconciler/v1
kind: TunedModel
metadata:
  name: good
spec:
  baseModel: gemini-3.5-flash
  supervisedTuningSpec:
    trainingDatasetUri: gs://bucket/train.jsonl
"""

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)

CORPUS: dict[str, bytes] = {
    "bad-yaml.yaml": b"apiVersion: reconciler/v1\nkind: TunedModel\nmetadata: {name: x\n",
    "tab-indent.yaml": b"apiVersion: reconciler/v1\nkind:\n\t- TunedModel\n",
    "wrong-types.yaml": GOOD.replace("name: good", "name: 12").replace("trainingDatasetUri: gs://bucket/train.jsonl",
                                                                     "trainingDatasetUri: [1, 2]").encode(),
    "epoch-string.yaml": (GOOD + "    hyperParameters: {epochCount: 'three'}\n").encode(),
    "epoch-bool.yaml": (GOOD + "    hyperParameters: {epochCount: true}\n").encode(),
    "lr-negative.yaml": (GOOD + "    hyperParameters: {learningRateMultiplier: -1}\n").encode(),
    "adapter-unknown.yaml": (GOOD + "    hyperParameters: {adapterSize: ADAPTER_SIZE_THREE}\n").encode(),
    "adapter-not-for-model.yaml": GOOD.replace("gemini-3.5-flash", "gemini-1.5-pro-002").encode()
    + b"    hyperParameters: {adapterSize: ADAPTER_SIZE_SIXTEEN}\n",
    "unknown-field.yaml": GOOD.replace("kind: TunedModel", "kind: TunedModel\nstatus: {}").encode(),
    "unknown-nested.yaml": (GOOD + "    batchSize: 8\n").encode(),
    "wrong-kind.yaml": GOOD.replace("kind: TunedModel", "kind: Deployment").encode(),
    "wrong-version.yaml": GOOD.replace("reconciler/v1", "reconciler/v2").encode(),
    "missing-spec.yaml": b"apiVersion: reconciler/v1\nkind: TunedModel\nmetadata: {name: x}\n",
    "not-a-mapping.yaml": b"- just\n- a\n- list\n",
    "scalar.yaml": b"hello\n",
    "empty.yaml": b"",
    "only-comments.yaml": b"# nothing here\n",
    "non-utf8.yaml": GOOD.encode().replace(b"name: good", b"name: g\xff\xfeod"),
    "duplicate-key.yaml": GOOD.replace("kind: TunedModel", "kind: TunedModel\nkind: TunedModel").encode(),
    "billion-laughs.yaml": BILLION_LAUGHS.encode(),
    "huge.yaml": GOOD.encode() + b"# " + b"x" * (1024 * 1024) + b"\n",
    "url-injection-project.yaml": GOOD.replace("spec:\n", "spec:\n  project: evil.com/x?\n").encode(),
    "url-injection-region.yaml": GOOD.replace("spec:\n", "spec:\n  region: us-central1/../../x\n").encode(),
    "http-dataset.yaml": GOOD.replace("gs://bucket", "https://bucket").encode(),
    "bad-label.yaml": GOOD.replace("name: good", "name: good\n  labels: {Team: x}").encode(),
    "reserved-label.yaml": GOOD.replace("name: good", "name: good\n  labels: {managed-by: me}").encode(),
    "long-display-name.yaml": GOOD.replace("spec:\n", "spec:\n  tunedModelDisplayName: " + "x" * 129 + "\n").encode(),
    "python-tag.yaml": b"!!python/object/apply:os.system ['echo pwned']\n",
    "bad-name.yaml": GOOD.replace("name: good", "name: Good_Name").encode(),
    "yaml-bool-region.yaml": GOOD.replace("spec:\n", "spec:\n  region: no\n").encode(),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_case_fails_cleanly_and_changes_nothing(cli: Cli, emulator, name: str):
    bad = cli.workdir / "manifests" / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(CORPUS[name])
    cli.manifest("fine")  # a good manifest beside the bad one must not be applied either
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        r = cli(*command)
        assert r.code == 1, (name, command, r.out, r.err)
        assert re.search(rf"manifests/{re.escape(name)}:\d+: ", r.err), (name, r.err)
        assert "Traceback" not in r.err + r.out
        assert len(r.err.strip().splitlines()) <= 12, r.err
    assert emulator.stats()["requests"].get("create", 0) == 0
    assert not (cli.workdir / "reconciler.state.json").exists()


def _run_validate(tmp: Path, content: bytes, capsys) -> tuple[int, str]:
    path = tmp / "m.yaml"
    path.write_bytes(content)
    capsys.readouterr()
    code = main(["--project", "demo-project", "--region", "us-central1", "validate", str(path)])
    return code, capsys.readouterr().err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_fuzzed_bytes_never_crash(tmp_path: Path, capsys, content: bytes):
    code, err = _run_validate(tmp_path, content, capsys)
    assert code in (0, 1)
    assert "Traceback" not in err and "Error: unexpected" not in err
    if code == 1:
        assert re.search(r"m\.yaml(:\d+)?: ", err), err


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=30), st.sampled_from(["gs://bucket/x.jsonl", "ADAPTER_SIZE_FOUR", "gemini-3.1-flash-lite"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3), max_leaves=8)


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict:
    doc = yaml.safe_load(GOOD + "    hyperParameters: {epochCount: 3, adapterSize: ADAPTER_SIZE_FOUR}\n")
    paths = [("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "labels"), ("spec", "baseModel"),
             ("spec", "region"), ("spec", "project"), ("spec", "supervisedTuningSpec", "trainingDatasetUri"),
             ("spec", "supervisedTuningSpec", "hyperParameters", "epochCount"),
             ("spec", "supervisedTuningSpec", "hyperParameters", "adapterSize"),
             ("spec", "supervisedTuningSpec", "hyperParameters", "learningRateMultiplier"), ("spec", "extra")]
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = draw(_values)
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_manifests())
def test_fuzzed_manifest_fields_are_valid_or_reported_with_a_line(tmp_path: Path, capsys, doc: dict):
    try:
        content = yaml.safe_dump(doc, allow_unicode=True).encode()
    except yaml.YAMLError:
        return
    code, err = _run_validate(tmp_path, content, capsys)
    assert code in (0, 1) and "Traceback" not in err and "Error: unexpected" not in err
    if code == 1:
        assert re.search(r"m\.yaml:\d+: ", err), err
