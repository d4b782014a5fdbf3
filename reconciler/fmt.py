"""`reconciler fmt`: manifests in one canonical layout, comments kept (terraform's `fmt`).

The layout: documents start with `apiVersion`, `kind`, `metadata`, `spec`; inside them, keys in
the order of docs/manifest.md (what the job is tuned from, then the method's spec, then the
reconciler's own settings); a key the order does not know keeps its place after the known ones;
two-space indentation. Values, quoting and comments are kept as written (a round trip through
ruamel.yaml), so formatting never changes what a manifest means — `fmt` refuses files that do
not validate, and a test checks that every formatted manifest validates to the same models.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ORDER: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("apiVersion", "kind", "metadata", "spec"),
    ("metadata",): ("name", "labels", "protect"),
    # docs/manifest.md's order: what the job is tuned from, the reconciler's settings, the method's spec
    ("spec",): ("project", "region", "baseModel", "preTunedModel", "tunedModelDisplayName", "description",
                "serviceAccount", "encryptionSpec", "protect", "retryPolicy", "pinDatasets", "servingCheckpoint",
                "ignoreChanges", "smokeTest", "supervisedTuningSpec", "preferenceOptimizationSpec"),
    ("spec", "preTunedModel"): ("model", "tunedModelName", "checkpointId"),
    ("spec", "supervisedTuningSpec"): ("trainingDatasetUri", "validationDatasetUri", "exportLastCheckpointOnly",
                                       "hyperParameters", "evaluationConfig"),
    ("spec", "preferenceOptimizationSpec"): ("trainingDatasetUri", "validationDatasetUri",
                                             "exportLastCheckpointOnly", "hyperParameters"),
    ("spec", "supervisedTuningSpec", "hyperParameters"): ("epochCount", "adapterSize", "learningRateMultiplier"),
    ("spec", "preferenceOptimizationSpec", "hyperParameters"): ("epochCount", "adapterSize",
                                                                 "learningRateMultiplier", "beta"),
    ("spec", "smokeTest"): ("prompt", "expectContains", "gate"),
}


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value onto a second line
    return yaml


def _reorder(node: Any, path: tuple[str, ...] = ()) -> None:
    """Reorder the keys of `node` in place (comments travel with their keys)."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(node, CommentedMap):
        return
    order = ORDER.get(path, ())
    keys = list(node.keys())
    wanted = [k for k in order if k in node] + [k for k in keys if k not in order]
    if wanted != keys:
        for position, key in enumerate(wanted):
            value = node.pop(key)  # comment attached to the key stays in node.ca.items
            node.insert(position, key, value)
    for key in wanted:
        _reorder(node[key], (*path, str(key)))


def formatted(text: str) -> str:
    """`text` in the canonical layout (every document of it)."""
    yaml = _yaml()
    docs = list(yaml.load_all(text))
    for doc in docs:
        _reorder(doc)
    if not docs:
        return text
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def plan_changes(files: Iterable[Path]) -> list[tuple[Path, str, str]]:
    """(file, text now, text formatted) of each file whose layout is not the canonical one."""
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        new = formatted(text)
        if new != text:
            out.append((path, text, new))
    return out


def unified(path: Path, old: str, new: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{path}", f"{path} (fmt)"))


def write(changes: Sequence[tuple[Path, str, str]]) -> None:
    """Each file replaced whole (a temporary file renamed over it, its mode kept)."""
    import os
    import tempfile

    for path, _old, new in changes:
        mode = path.stat().st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".fmt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(new)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
