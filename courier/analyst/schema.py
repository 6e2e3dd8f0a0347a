"""Nested schemas as plain trees: parsed from engine type names, walked by the draft and preview.

The engine describes columns with SQL type names (`STRUCT(id BIGINT, "a b" VARCHAR[])`,
`MAP(VARCHAR, BIGINT)`, `DECIMAL(12,2)`); `parse_type` turns one into a `TypeNode`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A list of structs with these fields (case-insensitive) holds key/value pairs to pivot.
KV_SHAPES = (("key", "value"), ("name", "value"))


@dataclass
class TypeNode:
    kind: str  # scalar | struct | list | map | union
    name: str = ""  # scalar type name (VARCHAR, BIGINT, DECIMAL(12,2), JSON, ...)
    fields: list[tuple[str, TypeNode]] = field(default_factory=list)  # struct / union members
    element: TypeNode | None = None  # list element; map value
    key: TypeNode | None = None  # map key

    def sql(self) -> str:
        if self.kind == "scalar":
            return self.name
        if self.kind == "list":
            assert self.element is not None
            return f"{self.element.sql()}[]"
        if self.kind == "map":
            assert self.key is not None and self.element is not None
            return f"MAP({self.key.sql()}, {self.element.sql()})"
        inner = ", ".join(f"{quote_name(n)} {t.sql()}" for n, t in self.fields)
        return f"{self.kind.upper()}({inner})"

    def short(self) -> str:
        """A one-word type for trees: STRUCT, STRUCT[], VARCHAR[], MAP(VARCHAR, BIGINT)."""
        if self.kind == "struct":
            return "STRUCT"
        if self.kind == "list":
            assert self.element is not None
            return self.element.short() + "[]"
        return self.sql()

    def child(self, name: str) -> TypeNode | None:
        for n, t in self.fields:
            if n == name:
                return t
        lowered = name.lower()
        for n, t in self.fields:
            if n.lower() == lowered:
                return t
        return None

    @property
    def is_list_of_structs(self) -> bool:
        return self.kind == "list" and self.element is not None and self.element.kind == "struct"

    def kv_fields(self) -> tuple[str, str, str | None] | None:
        """(key field, value field, type field or None) when this is a key/value list."""
        if not self.is_list_of_structs:
            return None
        assert self.element is not None
        names = {n.lower(): n for n, _ in self.element.fields}
        for key, value in KV_SHAPES:
            rest = set(names) - {key, value}
            if key in names and value in names and rest <= {"type"}:
                return names[key], names[value], names.get("type")
        return None


_NAME_NEEDS_QUOTES = re.compile(r"[^A-Za-z0-9_]|^[0-9]")


def quote_name(name: str) -> str:
    if _NAME_NEEDS_QUOTES.search(name) or not name:
        return '"' + name.replace('"', '""') + '"'
    return name


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, what: str) -> ValueError:
        return ValueError(f"cannot read type {self.text!r} at {self.pos}: {what}")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.pos)

    def expect(self, token: str) -> None:
        if not self.peek(token):
            raise self.error(f"expected {token!r}")
        self.pos += len(token)

    def name(self) -> str:
        self.skip()
        if self.peek('"'):
            self.pos += 1
            out = []
            while self.pos < len(self.text):
                ch = self.text[self.pos]
                if ch == '"':
                    if self.text.startswith('""', self.pos):
                        out.append('"')
                        self.pos += 2
                        continue
                    self.pos += 1
                    return "".join(out)
                out.append(ch)
                self.pos += 1
            raise self.error("unterminated quoted name")
        m = re.compile(r"[^\s,()\"]+").match(self.text, self.pos)
        if not m:
            raise self.error("expected a name")
        self.pos = m.end()
        return m.group(0)

    def balanced(self) -> str:
        """Text up to the matching ')' (for DECIMAL(12,2), ENUM('a', 'b'))."""
        depth, start = 0, self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "'":
                end = self.text.find("'", self.pos + 1)
                self.pos = end + 1 if end >= 0 else len(self.text)
                continue
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return self.text[start : self.pos]
            self.pos += 1
        raise self.error("unbalanced parentheses")

    def type(self) -> TypeNode:
        self.skip()
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\s+WITH\s+TIME\s+ZONE)?", re.I).match(
            self.text, self.pos
        )
        if not m:
            raise self.error("expected a type name")
        word = m.group(0)
        self.pos = m.end()
        upper = word.upper()
        if upper in ("STRUCT", "UNION") and self.peek("("):
            self.expect("(")
            fields: list[tuple[str, TypeNode]] = []
            while not self.peek(")"):
                n = self.name()
                fields.append((n, self.type()))
                if self.peek(","):
                    self.expect(",")
            self.expect(")")
            node = TypeNode(upper.lower(), fields=fields)
        elif upper == "MAP" and self.peek("("):
            self.expect("(")
            key = self.type()
            self.expect(",")
            value = self.type()
            self.expect(")")
            node = TypeNode("map", key=key, element=value)
        elif self.peek("("):
            self.skip()
            node = TypeNode("scalar", name=upper + self.balanced().replace(" ", ""))
        else:
            node = TypeNode("scalar", name=" ".join(upper.split()))
        while self.peek("["):
            self.expect("[")
            size = re.compile(r"\d*").match(self.text, self.pos)
            self.pos = size.end() if size else self.pos
            self.expect("]")
            node = TypeNode("list", element=node)
        return node


def parse_type(text: str) -> TypeNode:
    parser = _Parser(text)
    node = parser.type()
    parser.skip()
    if parser.pos != len(text):
        raise parser.error("unexpected text")
    return node


def parse_schema(columns: dict[str, str]) -> TypeNode:
    """A relation's columns as one struct node."""
    return TypeNode("struct", fields=[(n, parse_type(t)) for n, t in columns.items()])


@dataclass(frozen=True)
class SchemaLine:
    path: str  # dotted, with [] after lists: items[].sku
    depth: int
    name: str
    type: str


def schema_lines(root: TypeNode) -> list[SchemaLine]:
    """Depth-first lines for printing a schema as an indented tree."""
    out: list[SchemaLine] = []

    def walk(node: TypeNode, prefix: str, depth: int) -> None:
        for name, child in node.fields:
            path = f"{prefix}.{name}" if prefix else name
            out.append(SchemaLine(path, depth, name, child.short()))
            inner, suffix = child, ""
            while inner.kind == "list" and inner.element is not None:
                inner, suffix = inner.element, suffix + "[]"
            if inner.kind == "struct":
                walk(inner, path + suffix, depth + 1)

    walk(root, "", 0)
    return out
