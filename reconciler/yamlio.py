"""YAML through the safe loader, with the line of every key kept for error messages.

Documents are composed with PyYAML's safe loader and converted by hand so that each key keeps its
line, duplicate keys are errors (PyYAML would silently keep the last), and alias expansion is
bounded: a billion-laughs document is refused, not expanded.

Bounds and refusals, each a `YamlProblem` with a line (never a crash):
- a file is opened without following it into a FIFO, socket or device (only regular files are
  read), its size is checked before it is read, and at most `MAX_FILE_BYTES + 1` bytes are read
  (a file that grows while it is read is refused, not read whole);
- every document of a file together may have at most `MAX_NODES` nodes, counting alias expansions;
- a scalar the YAML resolver turns into a value that cannot be built (`2024-02-30` as a date,
  `!!int abc`, a 5,000-digit integer, bad `!!binary`) is an error naming the key, and so is any
  tag outside YAML's standard set (`!!python/...`, `!Ref`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML has it (several times faster), else the pure-Python one: both are
# safe loaders (SafeConstructor), both keep marks for line numbers.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, its tag resolution remembered: the composer asks the resolver about every
    scalar (keys included), and manifests repeat the same few hundred texts. The answer depends
    only on the node kind, the text and how it was written (the safe loader has no path
    resolvers), so it is kept, up to `_RESOLVED_MAX` answers (~20 us of the ~0.1 ms a manifest
    takes to compose)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if self.yaml_path_resolvers:  # pragma: no cover - the safe loader has none
            return super().resolve(kind, value, implicit)
        key = (kind, value, implicit)
        tag = _RESOLVED.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_RESOLVED) >= _RESOLVED_MAX:
                _RESOLVED.clear()
            _RESOLVED[key] = tag
        return tag


_RESOLVED: dict[tuple[Any, Any, Any], str] = {}
_RESOLVED_MAX = 4096
MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 50_000  # per file (all its documents together), counting alias expansions
MAX_INT_DIGITS = 100  # no setting needs more; Python refuses over 4,300 digits anyway

_TAG = "tag:yaml.org,2002:"
# Tags the safe loader can build, by node kind; any other tag is refused (never silently ignored).
SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary"))
MAPPING_TAGS = frozenset(_TAG + t for t in ("map", "set"))
SEQUENCE_TAGS = frozenset(_TAG + t for t in ("seq", "omap", "pairs"))
TEXT_TAGS = frozenset(_TAG + t for t in ("merge", "value"))  # `<<`, `=`: text outside a key
_SCALAR_OR_TEXT_TAGS = SCALAR_TAGS | TEXT_TAGS
_STR_TAG = _TAG + "str"
_MERGE_TAG = _TAG + "merge"
_ALLOWED_TAGS = {yaml.MappingNode: MAPPING_TAGS, yaml.SequenceNode: SEQUENCE_TAGS, yaml.ScalarNode: _SCALAR_OR_TEXT_TAGS}
_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a date or timestamp",
    "binary": "base64 binary data",
}

KeyPath = tuple[str | int, ...]


class YamlProblem(Exception):
    """A problem at a line of a YAML file (line 0: the file as a whole, e.g. it is a FIFO)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line

    def located(self, path: Path | str) -> str:
        """`file:line: message`, or `file: message` for a problem of the whole file."""
        where = shown_path(path)
        return f"{where}:{self.line}: {self}" if self.line > 0 else f"{where}: {self}"


def shown_path(path: Path | str) -> str:
    """A path for a message: as it is, or with repr when it holds a character that is not
    printable (a newline, an ESC, a trailing NBSP), so that a message is always one line and
    shows the name exactly."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


class NodeBudget:
    """Nodes converted so far in one file, shared by all its documents."""

    def __init__(self, limit: int = MAX_NODES) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, node: yaml.Node) -> None:
        self.used += 1
        if self.used > self.limit:
            raise YamlProblem(
                node.start_mark.line + 1,
                f"file too large after alias expansion (more than {self.limit} YAML nodes in all "
                "its documents); YAML aliases that multiply content are refused",
            )


class LineMap:
    """Turns composed YAML nodes into plain data, recording the line of every key."""

    def __init__(self, loader: Any, budget: NodeBudget | None = None) -> None:
        self.loader = loader
        self.lines: dict[KeyPath, int] = {}
        self.budget = budget or NodeBudget()
        self._checked: set[int] = set()

    @property
    def nodes(self) -> int:
        return self.budget.used

    def convert(self, node: yaml.Node, path: KeyPath = ()) -> Any:
        self.budget.spend(node)
        if path not in self.lines:
            self.lines[path] = node.start_mark.line + 1
        kind = type(node)
        if kind not in _ALLOWED_TAGS:  # a node class of another composer: its base class
            kind = next((k for k in _ALLOWED_TAGS if isinstance(node, k)), yaml.ScalarNode)
        if node.tag not in _ALLOWED_TAGS[kind]:
            self._check_tag(node, path)  # raises
        if kind is yaml.MappingNode:
            # after the first visit (an alias visits again) every key of it is known to be good
            plain = id(node) in self._checked or self._first_visit(node, path)
            result: dict[str, Any] = {}
            lines = self.lines
            for key_node, value_node in node.value:
                key = str(key_node.value) if plain else self._key(key_node)
                lines[path + (key,)] = key_node.start_mark.line + 1
                result[key] = self.convert(value_node, path + (key,))
            return result
        if kind is yaml.SequenceNode:
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        if node.tag == _STR_TAG:  # most values: what the safe constructor makes of them, at once
            return str(node.value)
        return self._scalar(node, path)

    def _first_visit(self, node: yaml.MappingNode, path: KeyPath) -> bool:
        """Check a mapping's explicit keys and merge its `<<` keys in (explicit keys come last
        and win); whether it had no merge key (every key then checked here)."""
        plain = self._check_keys(node, path)
        if not plain:
            self.loader.flatten_mapping(node)
        self._checked.add(id(node))
        return plain

    def _check_tag(self, node: yaml.Node, path: KeyPath) -> None:
        allowed = (
            MAPPING_TAGS if isinstance(node, yaml.MappingNode)
            else SEQUENCE_TAGS if isinstance(node, yaml.SequenceNode)
            else _SCALAR_OR_TEXT_TAGS
        )
        if node.tag not in allowed:
            where = f"{dotted(path)}: " if path else ""
            raise YamlProblem(
                node.start_mark.line + 1,
                f"{where}unsupported YAML tag {short_tag(node.tag)} (only plain YAML values are read)",
            )

    def _scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        """The value of a scalar node, or a YamlProblem naming it: building a value from text the
        resolver tagged (a date, a number) can fail in many ways, and none of them is a bug."""
        if node.tag == _STR_TAG:  # most values: what the safe constructor makes of them, at once
            return str(node.value)
        kind = node.tag.removeprefix(_TAG)
        text = str(node.value)
        if node.tag in TEXT_TAGS:  # a bare `<<` or `=` as a value: the text itself
            return text
        where = f"{dotted(path)}: " if path else ""
        line = node.start_mark.line + 1
        if kind == "int" and sum(c.isdigit() for c in text) > MAX_INT_DIGITS:
            raise YamlProblem(
                line, f"{where}integer too long ({len(text)} characters; at most {MAX_INT_DIGITS} digits)"
            )
        try:
            value = self.loader.construct_object(node)
        except Exception as exc:  # any failure to build a scalar from its text is bad input
            if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
                reason = exc.problem
            elif type(exc) is ValueError:
                reason = str(exc).split(";")[0]
            else:  # e.g. a regular expression that did not match inside the constructor
                reason = f"not {_KIND_WORDS.get(kind, 'a valid ' + kind)}"
            hint = ""
            if not getattr(node, "style", None) and kind in _KIND_WORDS and self._implicit(node):
                hint = f" (YAML reads it as {_KIND_WORDS[kind]}: quote it to mean text)"
            raise YamlProblem(
                line, f"{where}invalid {short_tag(node.tag)} value {_preview(text)}: {reason}{hint}"
            ) from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_INT_DIGITS:
            # hexadecimal, octal and binary literals have no digit limit in Python
            raise YamlProblem(line, f"{where}integer too large (at most {MAX_INT_DIGITS} digits)")
        return value

    def _implicit(self, node: yaml.Node) -> bool:
        """Whether the resolver, not an explicit tag, gave a plain scalar its type."""
        try:
            return bool(self.loader.resolve(yaml.ScalarNode, node.value, (True, False)) == node.tag)
        except Exception:  # a resolver is only consulted for a hint
            return False

    def _key(self, key_node: yaml.Node) -> str:
        """A key as its text: keys are names, whatever a resolver would make of them."""
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlProblem(key_node.start_mark.line + 1, "mapping keys must be plain strings")
        if key_node.tag not in _SCALAR_OR_TEXT_TAGS:
            raise YamlProblem(key_node.start_mark.line + 1,
                              f"unsupported YAML tag {short_tag(key_node.tag)} on a key")
        return str(key_node.value)

    def _check_keys(self, node: yaml.MappingNode, path: KeyPath) -> bool:
        """Explicit keys must be unique (a merged key may be overridden, as YAML allows);
        whether the mapping has no merge key."""
        seen: set[str] = set()
        plain = True
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                plain = False
                continue
            key = self._key(key_node)
            if key in seen:
                raise YamlProblem(key_node.start_mark.line + 1, f"{dotted(path + (key,))}: duplicate key")
            seen.add(key)
        return plain

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


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def unreadable(path: Path, exc: OSError | ValueError) -> str:
    """Why `path` cannot be read, in words (a dangling symlink is not 'no such file')."""
    where = shown_path(path)
    if isinstance(exc, ValueError):  # e.g. an embedded NUL byte
        return f"{where}: invalid path ({exc})"
    if exc.errno == errno.ELOOP:
        return f"{where}: symlink loop (the link resolves to itself)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if path.is_symlink():
            try:
                target = shown_path(os.readlink(path))
            except OSError:
                target = "?"
            return f"{where}: dangling symlink (points to {target}, which does not exist)"
        return f"{where}: no such file or directory"
    return f"{where}: cannot read: {exc.strerror or exc}"


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    The size is checked before anything is read, and at most `limit + 1` bytes are read, so a
    huge (or sparse) file, or one that grows while it is read, costs no more than the limit. A
    FIFO, socket or device is refused without waiting on it (opened non-blocking, checked with
    fstat). Raises YamlProblem for what the file is, OSError when it cannot be opened."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise YamlProblem(0, "is a directory, not a file") from None
    with os.fdopen(fd, "rb", buffering=0) as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise YamlProblem(0, f"is {file_kind(info.st_mode)}, not a regular file")
        too_large = YamlProblem(1, f"file is larger than {limit // 1024} KiB; split it")
        if info.st_size > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = handle.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise too_large
        return b"".join(chunks)


def read_text(path: Path) -> str:
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlProblem(line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None


def read_documents(path: Path) -> Iterator[tuple[int, Any, LineMap]]:
    """(line, data, converter) for each non-empty document of a file.

    The node budget (`MAX_NODES`) is for the whole file, not each document. A YamlProblem with
    line 0 concerns the file itself (its kind), not a line of it."""
    text = read_text(path)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise YamlProblem(line, f"character {exc.character!r} is not allowed in YAML") from None
    budget = NodeBudget()
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            conv = LineMap(loader, budget)
            yield node.start_mark.line + 1, conv.convert(node), conv
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlProblem(mark.line + 1 if mark else 1, f"YAML error: {exc.problem or exc.context}") from None
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
