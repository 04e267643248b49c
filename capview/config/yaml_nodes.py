"""YAML text -> a tree of located values.

Every node (mappings, lists and scalars alike) keeps its 1-based line and column
and its key path (``environments.prod.hosts[0].port``), so config errors can say
exactly where they are. On top of what PyYAML does, this layer:

* refuses duplicate keys in a mapping (PyYAML silently keeps the last one),
* refuses keys that are not strings (``1:``, ``on:`` which YAML 1.1 reads as true),
* refuses tags other than the standard ones (no ``!!python/...``: SafeLoader only),
* bounds the work done on aliases (a "billion laughs" document fails fast),
* supports ``<<: *anchor`` merge keys (explicit keys win over merged ones).

Errors are raised as :class:`YamlProblem` (position, key path, one-line message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# libyaml's parser (same marks, ~10x faster on a big file); the pure-Python one otherwise.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_NODES = 100_000  # after alias expansion; a real deploy.yaml has a few hundred
MAX_DEPTH = 50

_TAG_MAP = "tag:yaml.org,2002:map"
_TAG_SEQ = "tag:yaml.org,2002:seq"
_TAG_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_@-][A-Za-z0-9_.@-]*$")


@dataclass(frozen=True)
class Pos:
    line: int  # 1-based
    column: int  # 1-based


class YamlProblem(Exception):
    """A problem found while reading the YAML; ``path`` may be "" (not inside a key)."""

    def __init__(self, pos: Pos, path: str, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.path = path
        self.message = message


@dataclass(eq=False)
class YNode:
    pos: Pos
    path: str


@dataclass(eq=False)
class YScalar(YNode):
    value: Any  # str, int, float, bool, None, date, bytes ...
    raw: str  # the text as written (without quotes)


@dataclass(eq=False)
class YSeq(YNode):
    items: list[YNode]


@dataclass(eq=False)
class YMap(YNode):
    items: dict[str, YNode]
    key_pos: dict[str, Pos]


def show(value: object, limit: int = 60) -> str:
    """A value for an error message: quoted, control characters escaped, one line, short."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    if len(text) > limit:
        text = text[: limit - 4] + "...'"
    return text


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _PLAIN_KEY.match(key) else f"[{show(key)}]"
    if not path:
        return part
    return f"{path}{part}" if part.startswith("[") else f"{path}.{part}"


def _pos(mark: Any) -> Pos:
    return Pos(mark.line + 1, mark.column + 1)


def _pos_at(text: str, index: int) -> Pos:
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return Pos(line, column)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _kind_of_key(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return f"a {type(value).__name__}"


def parse(text: str) -> YNode | None:
    """Parse one YAML document into located nodes; None for an empty document."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = _pos(mark) if mark is not None else Pos(1, 1)
        what = _one_line(exc.problem or exc.context or "cannot parse")
        hint = ""
        lines = text.splitlines()
        at = lines[pos.line - 1][pos.column - 1 : pos.column] if pos.line <= len(lines) else ""
        if at == "\t" or "'\\t'" in what:
            hint = "; indent with spaces, not tabs"
            what = what.replace("found character that", "found a tab that")
        elif exc.context and exc.problem and exc.problem.startswith("but "):
            what = f"{_one_line(exc.context)} {what}"  # "expected a single document ... but found another"
        elif exc.context and exc.problem:
            what = f"{what} ({_one_line(exc.context)}"
            if exc.context_mark is not None and exc.context_mark is not mark:
                what += f" at line {exc.context_mark.line + 1}"
            what += ")"
        raise YamlProblem(pos, "", f"YAML syntax error: {what}{hint}") from None
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(
            _pos_at(text, exc.position),
            "",
            f"YAML syntax error: unacceptable character #x{exc.character if isinstance(exc.character, int) else ord(exc.character):04x}"
            "; remove control characters from the file",
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - defensive
        raise YamlProblem(Pos(1, 1), "", f"YAML error: {_one_line(exc)}") from None
    except RecursionError:
        raise YamlProblem(Pos(1, 1), "", "YAML nesting is too deep") from None
    if root is None:
        return None
    return _Converter().convert(root, "", 0)


class _Converter:
    def __init__(self) -> None:
        self.count = 0
        self.ctor = SafeConstructor()

    def scalar(self, node: ScalarNode, path: str) -> Any:
        try:
            return self.ctor.construct_object(node, deep=True)
        except ConstructorError as exc:
            problem = _one_line(exc.problem or exc)
            raise YamlProblem(_pos(node.start_mark), path, f"cannot read this value: {problem}") from None
        except (ValueError, TypeError) as exc:  # e.g. an impossible !!timestamp
            raise YamlProblem(_pos(node.start_mark), path, f"cannot read this value: {_one_line(exc)}") from None

    def convert(self, node: Node, path: str, depth: int) -> YNode:
        pos = _pos(node.start_mark)
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlProblem(pos, path, f"document is too large after expanding aliases (over {MAX_NODES} values)")
        if depth > MAX_DEPTH:
            raise YamlProblem(pos, path, f"nested more than {MAX_DEPTH} levels deep (a recursive alias?)")
        if isinstance(node, ScalarNode):
            return YScalar(pos, path, self.scalar(node, path), node.value)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG_SEQ:
                raise YamlProblem(pos, path, f"unsupported tag {show(node.tag)}; remove the tag")
            return YSeq(pos, path, [self.convert(n, join(path, i), depth + 1) for i, n in enumerate(node.value)])
        if isinstance(node, MappingNode):
            if node.tag != _TAG_MAP:
                raise YamlProblem(pos, path, f"unsupported tag {show(node.tag)}; remove the tag")
            return self.mapping(node, path, depth, pos)
        raise YamlProblem(pos, path, "unsupported YAML node")  # pragma: no cover

    def mapping(self, node: MappingNode, path: str, depth: int, pos: Pos) -> YMap:
        items: dict[str, YNode] = {}
        key_pos: dict[str, Pos] = {}
        merged: dict[str, YNode] = {}
        merged_pos: dict[str, Pos] = {}
        for key_node, value_node in node.value:
            kpos = _pos(key_node.start_mark)
            if key_node.tag == _TAG_MERGE:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, MappingNode):
                        raise YamlProblem(
                            _pos(src.start_mark), path, "'<<' merges mappings only; use <<: *anchor of a mapping"
                        )
                    sub = self.convert(src, path, depth + 1)
                    assert isinstance(sub, YMap)
                    for k, v in sub.items.items():
                        if k not in merged:
                            merged[k] = v
                            merged_pos[k] = sub.key_pos[k]
                continue
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(kpos, path, "mapping keys must be plain strings, not lists or mappings")
            key = self.scalar(key_node, path)
            if not isinstance(key, str):
                raise YamlProblem(
                    kpos,
                    join(path, str(key_node.value)),
                    f"key {show(key_node.value)} is read as {_kind_of_key(key)}, not a string; quote it",
                )
            kpath = join(path, key)
            if key in items:
                raise YamlProblem(
                    kpos, kpath, f"duplicate key (first set on line {key_pos[key].line}); keep only one of them"
                )
            key_pos[key] = kpos
            items[key] = self.convert(value_node, kpath, depth + 1)
        if merged:
            items = {**{k: v for k, v in merged.items() if k not in items}, **items}
            key_pos = {**{k: p for k, p in merged_pos.items() if k not in key_pos}, **key_pos}
        return YMap(pos, path, items, key_pos)
