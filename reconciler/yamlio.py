"""YAML through the safe loader, with the line of every key kept for error messages.

Documents are composed with PyYAML's safe loader and converted by hand so that each key keeps its
line, duplicate keys are errors (PyYAML would silently keep the last), and alias expansion is
bounded: a billion-laughs document is refused, not expanded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML has it (several times faster), else the pure-Python one: both are
# safe loaders (SafeConstructor), both keep marks for line numbers.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 50_000  # per file, counting alias expansions

KeyPath = tuple[str | int, ...]


class YamlProblem(Exception):
    """A problem at a line of a YAML file."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class LineMap:
    """Turns composed YAML nodes into plain data, recording the line of every key."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.lines: dict[KeyPath, int] = {}
        self.nodes = 0
        self._checked: set[int] = set()

    def convert(self, node: yaml.Node, path: KeyPath = ()) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise YamlProblem(
                node.start_mark.line + 1,
                f"document too large after alias expansion (more than {MAX_NODES} nodes); "
                "YAML aliases that multiply content are refused",
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            if id(node) not in self._checked:
                self._check_keys(node, path)
                self.loader.flatten_mapping(node)  # merge keys (<<): explicit keys come last and win
                self._checked.add(id(node))
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._key(key_node)
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                result[key] = self.convert(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)

    def _key(self, key_node: yaml.Node) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlProblem(key_node.start_mark.line + 1, "mapping keys must be plain strings")
        key = self.loader.construct_object(key_node)
        return key if isinstance(key, str) else str(key_node.value)

    def _check_keys(self, node: yaml.MappingNode, path: KeyPath) -> None:
        """Explicit keys must be unique (a merged key may be overridden, as YAML allows)."""
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node)
            if key in seen:
                raise YamlProblem(key_node.start_mark.line + 1, f"{dotted(path + (key,))}: duplicate key")
            seen.add(key)

    def line_of(self, loc: KeyPath) -> int:
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1


def dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise YamlProblem(1, f"file is larger than {MAX_FILE_BYTES // 1024} KiB; split it")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlProblem(line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None


def read_documents(path: Path) -> Iterator[tuple[int, Any, LineMap]]:
    """(line, data, converter) for each non-empty document of a file."""
    text = read_text(path)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise YamlProblem(line, f"character {exc.character!r} is not allowed in YAML") from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            conv = LineMap(loader)
            yield node.start_mark.line + 1, conv.convert(node), conv
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(line, f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise YamlProblem(line, f"character {exc.character!r} is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"YAML error: {exc}") from None
    except RecursionError:
        raise YamlProblem(1, "YAML nesting too deep") from None
    finally:
        loader.dispose()


