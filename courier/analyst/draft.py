"""`courier query draft`: a starting flattening query written from a courier's nested input.

Struct fields become columns named by their path (customer.id -> customer_id); one list of
structs is unnested into rows with its 1-based position (--explode PATH, default: the first
list of structs); key/value lists ({key, value} or {name, value[, type]}) are pivoted into one
column per key found in the data, cast by their declared type when it is consistent.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from courier.analyst.preview import InputReport, read_courier_input
from courier.analyst.schema import TypeNode
from courier.analyst.workbench import TagInput, Workbench, literal
from courier.context import Context
from courier.errors import ConfigError, QueryError
from courier.project import SavedQuery
from courier.windows import Window

MAX_PIVOT_KEYS = 100
# declared attribute types -> engine casts (None: keep the text)
KV_TYPES: dict[str, str | None] = {
    "string": None,
    "str": None,
    "text": None,
    "varchar": None,
    "int": "BIGINT",
    "integer": "BIGINT",
    "long": "BIGINT",
    "bigint": "BIGINT",
    "short": "BIGINT",
    "double": "DOUBLE",
    "float": "DOUBLE",
    "number": "DOUBLE",
    "numeric": "DOUBLE",
    "decimal": "DOUBLE",
    "bool": "BOOLEAN",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "datetime": "TIMESTAMPTZ",
    "date": "DATE",
}
SIMPLE = re.compile(r"^[a-z_][a-z0-9_]*$")
ROW = "e"  # alias of the input's rows
EXPLODED = "x"  # alias of the unnested list


@dataclass
class Column:
    expr: str
    name: str
    comment: str = ""


@dataclass
class Draft:
    sql: str
    columns: list[Column]
    explode: str | None
    pivots: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    inputs: list[InputReport] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.columns)} column(s)"]
        parts.append(
            f"one row per element of {self.explode}" if self.explode else "one row per record"
        )
        for path, keys in self.pivots.items():
            parts.append(f"{path} pivoted into {len(keys)} column(s)")
        return "; ".join(parts)


def snake(parts: list[str]) -> str:
    text = "_".join(parts)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    if not text:
        text = "col"
    return "_" + text if text[0].isdigit() else text


def parse_path(text: str) -> list[str]:
    return [p for p in text.replace("[]", "").split(".") if p]


def list_paths(root: TypeNode) -> list[tuple[list[str], TypeNode]]:
    """Lists reachable through structs only, depth-first in field order."""
    out: list[tuple[list[str], TypeNode]] = []

    def walk(node: TypeNode, path: list[str]) -> None:
        for name, child in node.fields:
            if child.kind == "list":
                out.append((path + [name], child))
            elif child.kind == "struct":
                walk(child, path + [name])

    walk(root, [])
    return out


class Drafter:
    def __init__(self, wb: Workbench, entry: TagInput, explode: str | None):
        self.wb = wb
        self.entry = entry
        self.root = entry.schema
        self.reserved = {
            str(k).lower()
            for (k,) in wb.sql(
                "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'"
            )
        }
        self.columns: list[Column] = []
        self.names: set[str] = set()
        self.pivots: dict[str, list[str]] = {}
        self.notes: list[str] = []
        self.explode_path, self.explode_node = self.choose(explode)

    # -- naming -------------------------------------------------------------------------------
    def ident(self, name: str) -> str:
        if SIMPLE.match(name) and name not in self.reserved:
            return name
        return '"' + name.replace('"', '""') + '"'

    def access(self, base: str, name: str) -> str:
        return f"{base}.{self.ident(name)}"

    def add(self, expr: str, parts: list[str], comment: str = "") -> None:
        name = snake(parts)
        unique, n = name, 2
        while unique in self.names:
            unique, n = f"{name}_{n}", n + 1
        self.names.add(unique)
        self.columns.append(Column(expr, unique, comment))

    # -- the list to unnest ---------------------------------------------------------------------
    def choose(self, explode: str | None) -> tuple[list[str] | None, TypeNode | None]:
        lists = list_paths(self.root)
        if explode is not None:
            path = parse_path(explode)
            node: TypeNode | None = self.root
            walked: list[str] = []
            for part in path:
                if node is None or node.kind != "struct":
                    break
                child = node.child(part)
                if child is None:
                    node = None
                    break
                walked.append(next(n for n, t in node.fields if t is child))
                node = child
            if node is None or node.kind != "list" or len(walked) != len(path):
                found = ", ".join(".".join(p) for p, _ in lists) or "none"
                raise ConfigError(
                    f"--explode {explode}: not a list reached through structs; "
                    f"the lists are: {found}"
                )
            return walked, node
        for path, node in lists:
            if node.is_list_of_structs and node.kv_fields() is None:
                return path, node
        return None, None

    # -- columns --------------------------------------------------------------------------------
    def from_clause(self) -> str:
        tag = self.ident(self.entry.tag)
        if self.explode_path is None:
            return f"FROM {tag} AS {ROW}"
        expr = self.list_expr()
        return (
            f"FROM {tag} AS {ROW}\n"
            "CROSS JOIN LATERAL (\n"
            f"    SELECT unnest({expr}) AS item, generate_subscripts({expr}, 1) AS idx\n"
            f") AS {EXPLODED}"
        )

    def list_expr(self) -> str:
        assert self.explode_path is not None
        expr = ROW
        for part in self.explode_path:
            expr = self.access(expr, part)
        return expr

    def walk(self, node: TypeNode, expr: str, parts: list[str], path: list[str]) -> None:
        for name, child in node.fields:
            here = path + [name]
            child_expr = self.access(expr, name)
            if here == self.explode_path:
                self.exploded(parts + [name])
                continue
            if child.kind == "struct" and child.fields:
                self.walk(child, child_expr, parts + [name], here)
            elif child.kv_fields() is not None:
                self.pivot(child, child_expr, parts + [name], ".".join(here).replace(".[]", "[]"))
            else:
                comment = ""
                if child.kind in ("list", "map"):
                    comment = f"{child.short()}: loads as json"
                self.add(child_expr, parts + [name], comment)

    def exploded(self, parts: list[str]) -> None:
        assert self.explode_node is not None and self.explode_node.element is not None
        element = self.explode_node.element
        self.add(f"{EXPLODED}.idx", parts + ["idx"], "1-based position in the list")
        item = f"{EXPLODED}.item"
        if element.kind == "struct" and element.fields:
            self.walk(element, item, parts, [*(self.explode_path or []), "[]"])
        elif element.kv_fields() is not None:
            self.pivot(element, item, parts, ".".join(self.explode_path or []) + "[]")
        else:
            self.add(item, parts + ["value"])

    def pivot(self, node: TypeNode, expr: str, parts: list[str], path: str) -> None:
        shape = node.kv_fields()
        assert shape is not None and node.element is not None
        key_f, value_f, type_f = shape
        value_node = node.element.child(value_f)
        kv_type = f"kv.{self.ident(type_f)}" if type_f else "NULL"
        # pairs inside the unnested list are read through it; the others from every record
        inside = expr.startswith(f"{EXPLODED}.")
        rows = self.from_clause() if inside else f"FROM {self.ident(self.entry.tag)} AS {ROW}"
        source = f"SELECT unnest({expr}) AS kv {rows}"
        found = self.wb.sql(
            f"SELECT kv.{self.ident(key_f)} AS k, lower(CAST({kv_type} AS VARCHAR)) AS t, "
            f"count(*) AS n FROM ({source}) WHERE k IS NOT NULL GROUP BY ALL"
        )
        keys: dict[str, dict[str, int]] = {}
        for k, t, n in found:
            keys.setdefault(str(k), {})[t] = int(n)
        ranked = sorted(keys, key=lambda k: (-sum(keys[k].values()), k))
        if not ranked:
            self.notes.append(f"{path}: no key/value pairs in the data read: kept as a list")
            self.add(expr, parts)
            return
        kept = ranked[:MAX_PIVOT_KEYS]
        self.pivots[path] = kept
        if len(ranked) > MAX_PIVOT_KEYS:
            self.notes.append(
                f"{path}: {len(ranked)} keys; the {MAX_PIVOT_KEYS} most frequent became columns, "
                "the list is kept as well"
            )
            self.add(expr, parts, "all pairs (json)")
        is_json = value_node is not None and value_node.sql() == "JSON"
        for key in kept:
            pick = (
                f"list_filter({expr}, lambda kv: kv.{self.ident(key_f)} = {literal(key)})"
                f"[1].{self.ident(value_f)}"
            )
            if is_json:
                pick = f"json_extract_string({pick}, '$')"
            declared = {t for t in keys[key] if t is not None}
            comment = ""
            if len(declared) == 1:
                typ = next(iter(declared))
                cast = KV_TYPES.get(typ)
                if cast:
                    pick = f"TRY_CAST({pick} AS {cast})"
                elif typ not in KV_TYPES:
                    comment = f"declared type {typ!r}: kept as text"
            elif len(declared) > 1:
                comment = f"declared as {', '.join(sorted(declared))}: kept as text"
            self.add(pick, parts + [key], comment)

    def sql(self, header: list[str]) -> str:
        self.walk(self.root, ROW, [], [])
        lines = [f"-- {h}" if h else "--" for h in header]
        lines.append("SELECT")
        width = max((len(c.expr) for c in self.columns), default=0)
        width = min(width, 60)
        for i, col in enumerate(self.columns):
            comma = "," if i < len(self.columns) - 1 else ""
            text = f"    {col.expr} AS {self.ident(col.name)}{comma}"
            if col.comment:
                text = f"{text.ljust(width + 24)}  -- {col.comment}"
            lines.append(text)
        lines.append(self.from_clause())
        return "\n".join(lines) + "\n"


def draft_query(
    context: Context,
    courier_name: str,
    window: Window | None,
    sample: Path | None = None,
    explode: str | None = None,
    full: bool = False,
    command: str | None = None,
) -> Draft:
    courier = context.project.courier(courier_name)
    with Workbench() as wb:
        entry, report = read_courier_input(context, wb, courier, window, sample, full)
        if not entry.summary.schema:
            raise ConfigError(
                f"courier {courier.name}: no records were read ({report.source}); give a window "
                "with files, or --file PATH with a sample payload"
            )
        drafter = Drafter(wb, entry, explode)
        header = [
            f"Drafted by `{command or 'courier query draft ' + courier.name}` from "
            f"{report.records} record(s) of {entry.tag}.",
        ]
        if drafter.explode_path is not None:
            where = ".".join(drafter.explode_path)
            header += [
                f"One row per element of {where} (--explode PATH picks another list);",
                "records whose list is empty or missing give no row: to keep them, write",
                "LEFT JOIN LATERAL (...) AS x ON TRUE instead of CROSS JOIN LATERAL.",
            ]
        else:
            header.append("One row per record (no list of structs to unnest).")
        header.append("Review the names and types; then preview it and write a query test.")
        sql = drafter.sql(header)
        draft = Draft(
            sql, drafter.columns,
            ".".join(drafter.explode_path) if drafter.explode_path else None,
            drafter.pivots, drafter.notes, [report],
        )  # fmt: skip
        try:  # a draft that does not run is a bug here, not the analyst's problem
            wb.run_query(SavedQuery(f"draft_{courier.name}", Path("draft.sql"), sql), [entry.tag])
        except QueryError as exc:
            raise QueryError(f"the drafted query does not run ({exc}); draft:\n{sql}") from exc
        return draft


def write_draft(target: Path, sql: str, force: bool) -> None:
    """Write a drafted or translated query atomically; an existing file only with force."""
    if target.exists() and not force:
        raise ConfigError(
            f"{target} exists; pass --force to overwrite it, or --out FILE to write elsewhere"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(sql, encoding="utf-8")
    os.replace(tmp, target)
