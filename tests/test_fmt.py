"""`reconciler fmt`: the canonical layout, comments kept, meaning unchanged (issue 14, missing #7)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import yaml

from tests.clihelp import Cli

ROOT = Path(__file__).resolve().parent.parent


def shuffled(text: str, seed: int) -> str:
    """The same manifests with every mapping's keys in a random order (meaning unchanged)."""
    rng = random.Random(seed)

    def shuffle(node):
        if isinstance(node, dict):
            items = list(node.items())
            rng.shuffle(items)
            return {k: shuffle(v) for k, v in items}
        if isinstance(node, list):
            return [shuffle(v) for v in node]
        return node

    docs = [shuffle(d) for d in yaml.safe_load_all(text) if d is not None]
    return yaml.safe_dump_all(docs, sort_keys=False, indent=4)


def test_the_shipped_manifests_are_in_the_canonical_layout(cli: Cli):
    shutil.copytree(ROOT / "manifests", cli.workdir / "manifests", dirs_exist_ok=True)
    r = cli("fmt", "--check")
    assert r.code == 0, r.out + r.err


def test_fmt_reorders_keeps_comments_and_meaning_and_is_idempotent(cli: Cli):
    shutil.copytree(ROOT / "manifests", cli.workdir / "manifests", dirs_exist_ok=True)
    for i, path in enumerate(sorted((cli.workdir / "manifests").glob("*.yaml"))):
        path.write_text("# kept\n" + shuffled(path.read_text(), i))
    models_before = sorted(cli.ok("validate").out.splitlines())
    check = cli("fmt", "--check")
    assert check.code == 1 and "manifests/" in check.out
    diff = cli.ok("fmt", "--diff").out
    assert diff.startswith("--- ") and "+apiVersion: reconciler/v1" in diff
    cli.ok("fmt")
    for path in (cli.workdir / "manifests").glob("*.yaml"):
        text = path.read_text()
        assert text.startswith("# kept\napiVersion: reconciler/v1\nkind: TunedModel\nmetadata:\n")
    assert sorted(cli.ok("validate").out.splitlines()) == models_before
    assert cli("fmt", "--check").code == 0  # idempotent


def test_fmt_refuses_a_manifest_that_does_not_validate(cli: Cli):
    bad = cli.manifest("alpha", spec={"baseModel": 5})
    text = bad.read_text()
    r = cli("fmt")
    assert r.code == 1 and "alpha.yaml" in r.err
    assert bad.read_text() == text
