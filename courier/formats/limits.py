"""Valid JSON records that DuckDB's JSON reader cannot load, found per record.

DuckDB refuses (or silently mangles) a whole read for a record that is valid JSON:

- nesting deeper than MAX_DEPTH containers ("JSON exceeds maximum recursion depth");
- two keys of one object that differ only in ASCII case (struct and column names are
  case-insensitive: "Duplicate name in struct" when nested; at the top level one of the two
  values is silently dropped);
- an empty key at the top level (it cannot be a column: "expected records");
- a top-level key naming courier's own file column (RESERVED_KEYS);
- the same key twice in one object ("has duplicate key").

`record_problem` says which, for one parsed record. The ingest API refuses such a payload
with a 400 (courier/ingest/payloads.py); the load path only looks when DuckDB refused a read,
then quarantines the records it names and loads the rest (engines/duckdb.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 128  # DuckDB's JSON reader: containers nested deeper fail the read
RESERVED_KEYS = frozenset({"_courier_file"})  # engines/duckdb.py FILE_COLUMN
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def record_problem(record: dict[str, Any], max_depth: int = MAX_DEPTH) -> str | None:
    """Why DuckDB cannot load this record (one sentence), or None. Iterative: any depth."""
    return inspect(record, max_depth)[0]


def inspect(record: dict[str, Any], max_depth: int = MAX_DEPTH) -> tuple[str | None, int]:
    """(record_problem, the number of keys of all its objects: fewer than the text holds
    means a duplicate key, which a parse into a dict hides)."""
    for key in record:
        if key == "":
            return "an empty key at the top level (a column needs a name)", 0
        if key in RESERVED_KEYS:
            return f"the top-level key {key!r} is reserved for courier's own column", 0
    keys = 0
    # (node, depth, path): the path is a chain (parent path, key or index), spelled out
    # only for the message, so the walk of a sound record allocates one tuple a container
    stack: list[tuple[Any, int, Any]] = [(record, 1, None)]
    lower = str.lower
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels (at {_spell(path)})", keys
        if type(node) is dict:
            keys += len(node)
            if len(node) > 1 and len(set(map(lower, node))) < len(node):
                clash = _case_clash(node)  # str.lower folds more than ASCII: confirm
                if clash:
                    return (
                        f"keys {clash[0]!r} and {clash[1]!r} differ only in case "
                        f"(in {_spell(path)}); DuckDB's names are case-insensitive"
                    ), keys
            for key, value in node.items():
                kind = type(value)
                if kind is dict or kind is list:
                    stack.append((value, depth + 1, (path, key)))
        else:
            for i, value in enumerate(node):
                kind = type(value)
                if kind is dict or kind is list:
                    stack.append((value, depth + 1, (path, i)))
    return None, keys


def _spell(path: Any) -> str:
    """A path chain as `customer.ids[0]` (the top level: "the top level")."""
    parts: list[str] = []
    while path is not None:
        path, step = path
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    text = "".join(reversed(parts)).lstrip(".")
    return text or "the top level"


def _case_clash(node: dict[str, Any]) -> tuple[str, str] | None:
    folded: dict[str, str] = {}
    for key in node:
        fold = key.translate(_ASCII_FOLD)
        if fold in folded:
            return folded[fold], key
        folded[fold] = key
    return None


def duplicate_key(line: bytes) -> str | None:
    """A key that appears twice in one object of this JSON text, or None (a parse with the
    standard library: only for lines already known to be suspicious)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(line, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def keys_collide(keys: list[str]) -> bool:
    """Whether a window's distinct top-level keys hold a key DuckDB cannot make a column of
    (empty, reserved) or two that differ only in case: then its records are checked one by
    one (in one record such a pair silently loses a value)."""
    folded = {k.translate(_ASCII_FOLD) for k in keys}
    return len(folded) != len(keys) or "" in folded or not RESERVED_KEYS.isdisjoint(keys)


class ColumnBudget:
    """The top-level keys a file tag may still take as columns (options.max_columns), given
    to records in file and line order; a record whose new keys do not fit is refused whole."""

    def __init__(self, known: Iterable[str], bound: int):
        self.known = set(known)
        self.bound = bound

    def refuse(self, record: dict[str, Any]) -> str | None:
        new = [k for k in record if k not in self.known]
        if not new:
            return None
        if len(self.known) + len(new) > self.bound:
            return (
                f"its {len(new)} key(s) without a column (e.g. {new[0]!r}) would take the "
                f"file tag past options.max_columns = {self.bound} columns; raise it to load "
                "them as columns"
            )
        self.known.update(new)
        return None
