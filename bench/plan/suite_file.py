"""Reading a suite file into plain data: bounded size, UTF-8 text, and YAML without the traps.

The YAML is composed into nodes first, with a bound on nesting; the node graph is then checked for duplicate keys,
recursive aliases and the size it has once aliases are expanded (an alias bomb is a few lines that expand to
billions of nodes), and only then turned into Python objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bench.plan.bounded import read_bounded

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class SuiteFileProblem(Exception):
    """Where (a field path, a line or `(file)`) and what was expected."""

    def __init__(self, where: str, message: str):
        self.where = where
        super().__init__(f"{where}: {message}")


def read_suite_data(path: Path) -> Any:
    """The suite file's YAML as plain Python data; SuiteFileProblem if it is not a small UTF-8 YAML document."""
    data = read_bounded(
        path, MAX_BYTES, lambda message: SuiteFileProblem("(file)", message),
        "a readable suite file", f"a suite file of at most {MAX_BYTES >> 10} KiB, got more",
    )  # fmt: skip
    return parse_yaml(decode(data))


def decode(data: bytes) -> str:
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise SuiteFileProblem(f"line {line}", "expected a text file, got binary data (a NUL byte)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SuiteFileProblem(f"line {line}", f"expected UTF-8 text, got the byte 0x{data[exc.start]:02x}")


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH while composing (composing recurses)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise SuiteFileProblem(f"line {line}", f"expected nesting at most {MAX_DEPTH} levels deep, got deeper")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_yaml(text: str) -> Any:
    try:
        loader = BoundedLoader(text)  # reads the whole text: refuses unprintable characters here
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            GraphCheck().visit(node, (), 0)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise SuiteFileProblem(_yaml_where(exc, text), f"expected valid YAML, got {_yaml_problem(exc)}")


def _yaml_where(exc: yaml.YAMLError, text: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f"line {mark.line + 1}"
    position = getattr(exc, "position", None)  # a ReaderError: an unacceptable character
    if isinstance(position, int):
        return f"line {text.count(chr(10), 0, position) + 1}"
    return "(file)"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    if problem == "but found another document":
        return "a second document (a suite is one YAML document)"
    if problem:
        return problem
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        return f"the unprintable character #x{exc.character:04x}"
    return str(exc).splitlines()[0]


class GraphCheck:
    """Walks the node graph once per node: duplicate keys, recursive aliases, depth and size with aliases expanded."""

    def __init__(self):
        self.done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
        self.open: set[int] = set()

    def visit(self, node: Node, path: tuple, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in self.open:
            self.fail(node, path, "expected no recursive alias (a node that contains itself), got one")
        if key not in self.done:
            self.open.add(key)
            self.done[key] = self.measure(node, path, depth)
            self.open.discard(key)
        size, height = self.done[key]
        if depth + height > MAX_DEPTH:
            self.fail(node, path, f"expected nesting at most {MAX_DEPTH} levels deep (aliases expanded), got deeper")
        return size, height

    def measure(self, node: Node, path: tuple, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            self.fail(node, path, f"expected nesting at most {MAX_DEPTH} levels deep (aliases expanded), got deeper")
        children: list[tuple[Node, tuple]] = []
        if isinstance(node, SequenceNode):
            children = [(item, path + (i,)) for i, item in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            self.check_keys(node, path)
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, ScalarNode) else "?"
                children += [(key_node, path), (value_node, path + (name,))]
        size, height = 1, 0
        for child, child_path in children:
            child_size, child_height = self.visit(child, child_path, depth + 1)
            size, height = size + child_size, max(height, child_height + 1)
            if size > MAX_NODES:
                self.fail(node, path, f"expected at most {MAX_NODES} values once aliases are expanded, got more")
        return size, height

    def check_keys(self, node: MappingNode, path: tuple) -> None:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in first_line:
                raise SuiteFileProblem(
                    field_path(path + (key_node.value,)),
                    f"expected each key once, got {short_repr(key_node.value)} again at line {line}"
                    f" (first at line {first_line[key_node.value]})",
                )
            first_line[key_node.value] = line

    @staticmethod
    def fail(node: Node, path: tuple, message: str):
        raise SuiteFileProblem(f"{field_path(path)} (line {node.start_mark.line + 1})", message)


def field_path(loc: tuple) -> str:
    """`models[0].name`; each key shortened so that a huge key is never echoed whole."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part) if len(str(part)) <= 40 else str(part)[:37] + "..."
            out += f".{part}" if out else part
    return out or "(top level)"


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
