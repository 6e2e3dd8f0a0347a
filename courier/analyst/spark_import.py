"""`courier query import FILE --from spark`: an existing Spark SQL ingest query -> DuckDB SQL.

sqlglot does the bulk of the translation; courier rewrites what sqlglot leaves as Spark
(LATERAL VIEW [OUTER] explode/posexplode/inline/json_tuple, explode_outer, inline, json_tuple,
from_json with a DDL schema) and then checks the result with the engine's own parser: every
function it calls must exist in DuckDB. Anything else stops the import, naming the construct
and its line; nothing is written (no half-translated query).

Spark runs each LATERAL VIEW as a cross product with the rows so far; the translation keeps
that (one LATERAL join per view). Two generators in one SELECT list are refused by Spark but
zipped by DuckDB (UNNEST calls in one SELECT advance together): the import warns about it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, UnsupportedError

from courier.engines.spark_dialect import parse_statement
from courier.errors import ConfigError, QueryError

Node = Any  # a sqlglot expression (its base class was renamed across sqlglot versions)
GENERATORS = ("explode", "posexplode", "explode_outer", "posexplode_outer", "inline", "stack")
# sqlglot node types it writes unchanged into DuckDB SQL when courier has not rewritten them
PASSED_THROUGH = {
    "Stack": "stack",
    "Inline": "inline",
    "ExplodeOuter": "explode_outer",
    "PosexplodeOuter": "posexplode_outer",
}


@dataclass
class Translation:
    source: Path
    sql: str
    rewrites: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        done = ", ".join(dict.fromkeys(self.rewrites)) or "nothing needed rewriting"
        return f"rewrote: {done}; {len(self.warnings)} warning(s)"


class Untranslatable(QueryError):
    """A construct the import cannot translate faithfully."""


def line_of(text: str, name: str) -> int | None:
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}\s*\(", re.I)
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line.split("--", 1)[0]):
            return number
    return None


def duck(sql: str) -> Node:
    return sqlglot.parse_one(sql, read="duckdb")


class Importer:
    def __init__(self, source: Path, text: str):
        self.source = source
        self.text = text
        self.rewrites: list[str] = []
        self.warnings: list[str] = []

    def stop(self, construct: str, why: str, line: int | None = None) -> Untranslatable:
        where = f"line {line}: " if line else ""
        return Untranslatable(
            f"{where}cannot translate {construct}: {why}. Nothing was written; rewrite that part "
            "(in the Spark query, or by hand after importing the rest) and import again",
            self.source.stem,
            self.source,
        )

    def line(self, name: str) -> int | None:
        return line_of(self.text, name)

    # -- parsing ----------------------------------------------------------------------------
    def parse(self) -> Node:
        return parse_statement(self.text, "spark", self.source.stem, self.source)

    # -- rewrites on the Spark tree ------------------------------------------------------------
    def rewrite(self, tree: Node) -> Node:
        # expressions first: the generator rewrites below write their arguments as DuckDB SQL
        for node in list(tree.find_all(exp.FromJson)):
            node.replace(self.from_json(node))
        for node in list(tree.find_all(exp.ArraysZip)):
            node.replace(self.arrays_zip(node))
        for node in list(tree.find_all(exp.Struct)):
            if any(isinstance(e, exp.Star) or e.find(exp.Star) for e in node.expressions):
                node.replace(self.struct_of_row(node))
        for node in list(tree.find_all(exp.JSONFormat)):
            # Spark's to_json leaves out NULL fields (ignoreNullFields); DuckDB's keeps them
            node.replace(exp.Anonymous(this="json_strip_nulls", expressions=[node.copy()]))
            self.rewrites.append("to_json (without NULL fields)")
        for select in list(tree.find_all(exp.Select)):
            self.warn_zipped(select)
            self.lateral_views(select)
            self.select_generators(select)
        return tree

    def arrays_zip(self, node: Node) -> Node:
        """Spark names the zipped struct's fields after the array columns (z.a, z.b), or
        "0", "1", ... for other expressions; sqlglot's translation would name them $1, $2."""
        arrays = generator_args(node)
        if not arrays:
            raise self.stop("arrays_zip()", "it needs at least one array", self.line("arrays_zip"))
        sqls = [
            a.sql("duckdb") if isinstance(a, exp.Column) else f"({a.sql('duckdb')})" for a in arrays
        ]
        names = [
            a.name if isinstance(a, exp.Column) and a.name else str(i) for i, a in enumerate(arrays)
        ]
        fields = ", ".join(f"{lit(n)}: {a}[__i]" for n, a in zip(names, sqls, strict=True))
        longest = f"GREATEST({', '.join(f'LEN({a})' for a in sqls)})"
        nulls = " OR ".join(f"{a} IS NULL" for a in sqls)
        self.rewrites.append("arrays_zip")
        return duck(
            f"CASE WHEN {nulls} THEN NULL ELSE "
            f"LIST_TRANSFORM(RANGE(1, {longest} + 1), LAMBDA __i: {{{fields}}}) END"
        )

    def struct_of_row(self, node: Node) -> Node:
        """Spark's struct(t.*) is the row of t as a struct; in DuckDB that is the table alias
        itself (sqlglot would write {'_0': t.*}, which DuckDB refuses to bind)."""
        [star] = node.expressions if len(node.expressions) == 1 else [None]
        table = star.table if isinstance(star, exp.Column) and star.is_star else ""
        if not table:
            raise self.stop(
                "struct(*)",
                "only struct(t.*) of one table's alias translates (as the row t itself); name "
                "the table, or list the fields",
                self.line("struct"),
            )
        self.rewrites.append("struct(t.*)")
        return exp.column(table)

    def warn_zipped(self, select: exp.Select) -> None:
        generators = []
        for projection in select.expressions:
            for node in projection.walk():
                if node is not projection and isinstance(node, exp.Select | exp.Subquery):
                    break
                name = function_name(node)
                if name in GENERATORS:
                    generators.append(name)
        if len(generators) > 1:
            self.warnings.append(
                f"line {self.line(generators[1]) or '?'}: {len(generators)} generators "
                f"({', '.join(generators)}) in one SELECT list. Spark refuses this; in DuckDB "
                "the UNNEST calls of one SELECT are zipped (element i with element i), not "
                "crossed. For Spark's cross product use one LATERAL VIEW per list; to zip, "
                "keep this or use arrays_zip"
            )

    def lateral_views(self, select: exp.Select) -> None:
        laterals = select.args.get("laterals") or []
        if not laterals:
            return
        joins = list(select.args.get("joins") or [])
        for lateral in laterals:
            joins.append(self.lateral_join(lateral))
        select.set("laterals", None)
        select.set("joins", joins)

    def lateral_join(self, lateral: exp.Lateral) -> Node:
        generator = lateral.this
        outer = bool(lateral.args.get("outer"))
        alias = lateral.args.get("alias")
        view = alias.name if alias is not None and alias.name else "_view"
        columns = [c.name for c in (alias.columns if alias is not None else [])]
        name = function_name(generator)
        args = generator_args(generator)
        kind = "LEFT JOIN LATERAL" if outer else "CROSS JOIN LATERAL"
        label = f"LATERAL VIEW {'OUTER ' if outer else ''}{name}"
        if name in ("explode", "explode_outer") and args:
            arr = args[0].sql("duckdb")
            if len(columns) == 2:  # a map: key and value columns
                body = (
                    f"SELECT UNNEST(MAP_KEYS({arr})) AS {q(columns[0])}, "
                    f"UNNEST(MAP_VALUES({arr})) AS {q(columns[1])}"
                )
            else:
                body = f"SELECT UNNEST({arr}) AS {q(columns[0] if columns else 'col')}"
        elif name in ("posexplode", "posexplode_outer") and args:
            arr = args[0].sql("duckdb")
            pos, col = (columns + ["pos", "col"][len(columns) :])[:2]
            body = (
                f"SELECT GENERATE_SUBSCRIPTS({arr}, 1) - 1 AS {q(pos)}, UNNEST({arr}) AS {q(col)}"
            )
        elif name == "inline" and args:
            if columns:
                raise self.stop(
                    f"{label} with column aliases",
                    "DuckDB names the struct fields itself; drop the AS list and use the "
                    "field names",
                    self.line("inline"),
                )
            body = f"SELECT UNNEST({args[0].sql('duckdb')}, max_depth => 2)"
        elif name == "json_tuple" and len(args) >= 2:
            doc = args[0].sql("duckdb")
            fields = [a for a in args[1:]]
            names = columns or [f"c{i}" for i in range(len(fields))]
            parts = []
            for f, n in zip(fields, names, strict=False):
                if not isinstance(f, exp.Literal) or not f.is_string:
                    raise self.stop(
                        "json_tuple with a computed field name",
                        "use literals",
                        self.line("json_tuple"),
                    )
                parts.append(f"{doc} ->> {lit('$.' + f.this)} AS {q(n)}")
            body = "SELECT " + ", ".join(parts)
        else:
            raise self.stop(
                label or "LATERAL VIEW",
                "no DuckDB equivalent is known to courier",
                self.line(name or "lateral"),
            )
        self.rewrites.append(label)
        join = duck(f"SELECT 1 FROM _t {kind} ({body}) AS {q(view)}{' ON TRUE' if outer else ''}")
        return join.args["joins"][0]

    def select_generators(self, select: exp.Select) -> None:
        out: list[Node] = []
        changed = False
        for projection in select.expressions:
            node = (
                projection.this if isinstance(projection, exp.Alias | exp.Aliases) else projection
            )
            name = function_name(node)
            args = generator_args(node)
            if name == "explode_outer" and args:
                arr = args[0].sql("duckdb")
                new = duck(f"UNNEST(CASE WHEN LEN({arr}) > 0 THEN {arr} ELSE [NULL] END)")
                out.append(exp.alias_(new, projection.alias or "col"))
                self.rewrites.append("explode_outer")
                changed = True
            elif name == "posexplode_outer" and args:
                arr = args[0].sql("duckdb")
                padded = f"CASE WHEN LEN({arr}) > 0 THEN {arr} ELSE [NULL] END"
                out.append(duck(f"GENERATE_SUBSCRIPTS({padded}, 1) - 1 AS pos"))
                out.append(duck(f"UNNEST({padded}) AS col"))
                self.rewrites.append("posexplode_outer")
                self.warnings.append(
                    f"line {self.line('posexplode_outer') or '?'}: posexplode_outer of an empty "
                    "or NULL list gives position 0 (Spark: NULL) next to its NULL element"
                )
                changed = True
            elif name == "inline" and args:
                out.append(duck(f"UNNEST({args[0].sql('duckdb')}, max_depth => 2)"))
                self.rewrites.append("inline")
                changed = True
            elif name == "json_tuple" and len(args) >= 2:
                doc = args[0].sql("duckdb")
                names = (
                    [e.name for e in projection.expressions]
                    if isinstance(projection, exp.Aliases)
                    else [f"c{i}" for i in range(len(args) - 1)]
                )
                for f, n in zip(args[1:], names, strict=False):
                    if not isinstance(f, exp.Literal) or not f.is_string:
                        raise self.stop(
                            "json_tuple with a computed field name",
                            "use literals",
                            self.line("json_tuple"),
                        )
                    out.append(duck(f"{doc} ->> {lit('$.' + f.this)} AS {q(n)}"))
                self.rewrites.append("json_tuple")
                changed = True
            else:
                out.append(projection)
        if changed:
            select.set("expressions", out)

    def from_json(self, node: Node) -> Node:
        schema = node.expression
        if not isinstance(schema, exp.Literal) or not schema.is_string:
            raise self.stop(
                "from_json with a computed schema",
                "give the schema as a string literal (a DDL like 'a INT, b STRING')",
                self.line("from_json"),
            )
        if node.args.get("options") is not None:
            raise self.stop(
                "from_json options", "DuckDB's json_transform takes none", self.line("from_json")
            )
        structure = ddl_structure(schema.this)
        if structure is None:
            raise self.stop(
                f"from_json schema {schema.this!r}",
                "not a Spark DDL schema courier can read",
                self.line("from_json"),
            )
        self.rewrites.append("from_json")
        doc = node.this.sql("duckdb")
        return duck(f"JSON_TRANSFORM({doc}, {lit(json.dumps(structure))})")

    # -- generation and checks ------------------------------------------------------------------
    def untranslated(self, tree: Node, known: set[str]) -> None:
        """Spark constructs still in the tree after the rewrites, that sqlglot would pass
        through as they are; all of them are named at once, the first with its line."""
        found: dict[str, str] = {}
        for node in tree.walk():
            kind = type(node).__name__.lstrip("_")
            if kind in PASSED_THROUGH:
                found.setdefault(f"{PASSED_THROUGH[kind]}()", PASSED_THROUGH[kind])
            elif isinstance(node, exp.Anonymous) and str(node.name).lower() not in known:
                found.setdefault(f"{str(node.name).lower()}()", str(node.name))
            elif isinstance(node, exp.Func) and not isinstance(node, exp.Anonymous):
                name = passed_through(node)
                if name and name not in known and name not in SQL_FORMS:
                    found.setdefault(f"{name}()", name)
            elif isinstance(node, exp.Aliases):
                name = function_name(node.this)
                found.setdefault(f"{name or 'an expression'} AS (...)", name)
        if found:
            ordered = sorted(found.items(), key=lambda kv: self.line(kv[1]) or 10**9)
            construct, name = ordered[0]
            others = [c for c, _ in ordered[1:]]
            raise self.stop(
                construct + (f" (and {', '.join(others)})" if others else ""),
                "DuckDB has no equivalent courier knows of",
                self.line(name),
            )

    def generate(self, tree: Node) -> str:
        try:
            return tree.sql(dialect="duckdb", pretty=True, unsupported_level=ErrorLevel.RAISE)
        except UnsupportedError as exc:
            message = str(exc).splitlines()[0] if str(exc) else "unsupported"
            raise self.stop("part of the query", f"sqlglot: {message}") from exc

    def check(self, sql: str, known: set[str]) -> None:
        """The translated text must parse in DuckDB and call only functions DuckDB has."""
        parsed = parse_with_engine(sql)
        if parsed.get("error"):
            raise self.stop(
                "the query",
                f"the translation does not parse in DuckDB ({parsed.get('error_message')})",
            )
        missing = sorted({n for n in function_names(parsed) if n not in known})
        if missing:
            name = missing[0]
            raise self.stop(
                f"{name}()",
                f"DuckDB has no function {name!r}"
                + (f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else ""),
                self.line(name),
            )


# SQL syntax that reads like a call but is no catalog function
SQL_FORMS = {"cast", "try_cast", "coalesce", "nullif", "extract", "exists", "interval", "if"}
_LEADING_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(")


def passed_through(node: Node) -> str | None:
    """The function name when sqlglot writes a Spark function unchanged into DuckDB SQL."""
    try:
        spark = _LEADING_CALL.match(node.sql("spark"))
        duckdb = _LEADING_CALL.match(node.sql("duckdb"))
    except Exception:  # a node sqlglot cannot write alone
        return None
    if spark and duckdb and spark.group(1).lower() == duckdb.group(1).lower():
        return spark.group(1).lower()
    return None


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def function_name(node: Any) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower() if hasattr(node, "sql_name") else type(node).__name__.lower()
    return ""


def generator_args(node: Any) -> list[Node]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    if isinstance(node, exp.Func):
        args = [node.this] if node.this is not None else []
        return args + list(node.expressions)
    return []


SPARK_TO_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "varchar": "VARCHAR",
    "char": "VARCHAR",
    "int": "INTEGER",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "long": "BIGINT",
    "smallint": "SMALLINT",
    "short": "SMALLINT",
    "tinyint": "TINYINT",
    "byte": "TINYINT",
    "double": "DOUBLE",
    "float": "FLOAT",
    "real": "FLOAT",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "binary": "BLOB",
}


def ddl_structure(ddl: str) -> Any:
    """A Spark DDL schema ('a INT, b ARRAY<STRING>' or 'struct<...>') -> json_transform's
    structure ({"a": "INTEGER", "b": ["VARCHAR"]}); None when it cannot be read."""
    text = ddl.strip()
    wrapped = text if re.match(r"^(struct|array|map)\s*<", text, re.I) else f"STRUCT<{text}>"
    try:
        data_type = exp.DataType.build(wrapped, dialect="spark")
    except Exception:  # sqlglot raises several types for unreadable DDL
        return None
    return structure_of(data_type)


def structure_of(data_type: exp.DataType) -> Any:
    kind = data_type.this
    if kind == exp.DataType.Type.STRUCT:
        out = {}
        for column in data_type.expressions:
            inner = column.args.get("kind")
            if inner is None:
                return None
            value = structure_of(inner)
            if value is None:
                return None
            out[column.name] = value
        return out
    if kind == exp.DataType.Type.ARRAY:
        inner = structure_of(data_type.expressions[0]) if data_type.expressions else None
        return None if inner is None else [inner]
    if kind == exp.DataType.Type.MAP:
        return data_type.sql("duckdb")
    if kind == exp.DataType.Type.DECIMAL:
        return data_type.sql("duckdb")
    return SPARK_TO_DUCKDB_TYPES.get(data_type.sql("spark").lower(), data_type.sql("duckdb"))


def parse_with_engine(sql: str) -> dict[str, Any]:
    from courier.analyst.workbench import Workbench

    with Workbench() as wb:
        rows = wb.sql("SELECT json_serialize_sql(?)", [sql])
    parsed: dict[str, Any] = json.loads(rows[0][0])
    return parsed


def function_names(tree: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(tree, dict):
        name = tree.get("function_name")
        if (
            tree.get("class") == "FUNCTION"
            and isinstance(name, str)
            and not tree.get("is_operator")
        ):
            out.add(name.lower())
        for value in tree.values():
            out |= function_names(value)
    elif isinstance(tree, list):
        for value in tree:
            out |= function_names(value)
    return out


def engine_functions() -> set[str]:
    from courier.analyst.workbench import Workbench

    with Workbench() as wb:
        rows = wb.sql("SELECT DISTINCT lower(function_name) FROM duckdb_functions()")
    return {str(r[0]) for r in rows}


def import_spark(source: Path) -> Translation:
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {source}: {exc}", source) from exc
    importer = Importer(source, text)
    known = engine_functions()
    tree = importer.rewrite(importer.parse())
    importer.untranslated(tree, known)
    body = importer.generate(tree)
    importer.check(body, known)
    header = (
        f"-- Translated from Spark SQL ({source.name}) by `courier query import --from spark`.\n"
        "-- Review it, then prove it with a query test (queries/tests/) on sample payloads.\n"
    )
    for warning in importer.warnings:
        header += f"-- WARNING: {warning}\n"
    return Translation(source, header + body + "\n", importer.rewrites, importer.warnings)


def default_target(source: Path, root: Path) -> Path:
    name = source.name.removesuffix(".sql").removesuffix(".spark")
    return root / "queries" / f"{name}.sql"
