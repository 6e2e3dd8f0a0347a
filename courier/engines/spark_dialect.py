"""A saved query (DuckDB SQL) -> Spark SQL, for the Spark engine (SPEC 8).

sqlglot does the bulk; courier rewrites what sqlglot translates into something that runs on Spark
but means something else, and refuses what it cannot translate faithfully:

- `unnest()` calls in one SELECT advance together in DuckDB (a zip, padded with NULL); sqlglot
  writes one EXPLODE per call, a cross product. courier writes one generator over the zipped
  lists: `JOIN LATERAL inline(arrays_zip(...)) AS alias(columns)`. `generate_subscripts(l, 1)`
  becomes a zipped list of 1-based positions (BIGINT, as in DuckDB). `LEFT JOIN LATERAL (SELECT
  unnest(...)) ON TRUE` keeps its outer rows (`inline_outer`). The join is a plain JOIN LATERAL,
  not a comma: Sail treats `, LATERAL explode(...)` as an outer join (a row of NULLs for an empty
  list), and refuses LATERAL table functions with an ON condition.
- `unnest(l) WITH ORDINALITY` is 1-based in DuckDB; POSEXPLODE is 0-based.
- `len(l)` / `length(l)` of a list becomes `array_size` (sqlglot writes string LENGTH); courier
  needs the argument's type to tell a list from a string, and refuses when it cannot tell.
- `l[i]` is 1-based in DuckDB and NULL out of bounds (negative from the end); Spark's `l[i]` is
  0-based and raises under ANSI mode. It becomes `get(l, ...)` with DuckDB's meaning.
- Refused: `UNION ... BY NAME`, list slices, lambdas with an index parameter (1-based in DuckDB,
  0-based in Spark), unnest anywhere else, and DuckDB functions Spark lacks (named).

A translation is trusted only when the query's tests give identical rows on both engines
(`courier query test`); a query that needs more has a hand-written twin, queries/NAME.spark.sql.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from courier.errors import QueryError

Node = Any  # a sqlglot expression
LAMBDA_E = "__courier_e"
LAMBDA_K = "__courier_k"
UNNEST_ALIAS = "__courier_unnest"
# DuckDB functions without a Spark twin of the same meaning (sqlglot passes them through)
DUCKDB_ONLY = {
    "json_strip_nulls",
    "json_valid",
    "json_type",
    "json",
    "list_position",
    "list_concat",
    "list_distinct",
    "list_reduce",
    "map_from_entries",
    "strftime",
    "strptime",
    "struct_pack",
    "epoch_ms",
    "regexp_full_match",
    "generate_subscripts",
    "unnest",
}
LIST_TYPES = (exp.DataType.Type.ARRAY, exp.DataType.Type.LIST)
TEXT_TYPES = exp.DataType.TEXT_TYPES


class Untranslatable(QueryError):
    """A construct of a DuckDB query that courier cannot translate to Spark SQL faithfully."""


@dataclass
class SparkTranslation:
    sql: str
    rewrites: list[str] = field(default_factory=list)


def translate(
    sql: str,
    query: str = "query",
    location: Path | None = None,
    schema: dict[str, dict[str, str]] | None = None,
) -> SparkTranslation:
    """Translate a saved query; schema: table (file tag) -> column -> DuckDB type, used to tell
    lists from strings. Raises Untranslatable naming the construct and its line."""
    return _Translator(sql, query, location, schema or {}).run()


class _Translator:
    def __init__(
        self, text: str, query: str, location: Path | None, schema: dict[str, dict[str, str]]
    ):
        self.text = text
        self.query = query
        self.location = location
        self.schema = schema
        self.rewrites: list[str] = []
        self.counter = 0

    def stop(self, construct: str, why: str, name: str | None = None) -> Untranslatable:
        line = _line_of(self.text, name) if name else None
        where = f"line {line}: " if line else ""
        return Untranslatable(
            f"{where}cannot translate {construct} to Spark SQL faithfully: {why}. Write the "
            f"Spark SQL by hand as queries/{self.query}.spark.sql (its query tests check it "
            "against this query)",
            self.query,
            self.location,
        )

    def run(self) -> SparkTranslation:
        tree = self.parse()
        self.refuse_unsupported(tree)
        self.index_lambdas(tree)
        self.lengths(tree)
        self.brackets(tree)
        selects = list(tree.find_all(exp.Select))
        for select in selects:
            self.lateral_unnests(select)
            self.from_unnests(select)
        for select in selects:
            if select.root() is tree:  # not a LATERAL subquery replaced above
                self.select_unnests(select)
        leftover = next(iter(tree.find_all(exp.Explode, exp.Unnest, exp.Posexplode)), None)
        if leftover is not None:
            raise self.stop("unnest()", "it is used where courier cannot zip it", "unnest")
        self.unknown_functions(tree)
        return SparkTranslation(tree.sql(dialect="spark", pretty=True), self.rewrites)

    def parse(self) -> Node:
        return parse_statement(self.text, "duckdb", self.query, self.location)

    # -- refusals ---------------------------------------------------------------------------
    def refuse_unsupported(self, tree: Node) -> None:
        for node in tree.find_all(exp.Union, exp.Except, exp.Intersect):
            if node.args.get("by_name"):
                raise self.stop(
                    "UNION ... BY NAME", "Spark SQL has no set operation by column name", "BY"
                )
        if tree.find(exp.Slice) is not None:
            raise self.stop("a list slice l[a:b]", "use slice(l, start, length) by hand", ":")

    def index_lambdas(self, tree: Node) -> None:
        for node in tree.find_all(exp.Lambda):
            if len(node.expressions) > 1:
                raise self.stop(
                    "a lambda with an index parameter",
                    "the index is 1-based in DuckDB and 0-based in Spark",
                    "lambda",
                )

    def unknown_functions(self, tree: Node) -> None:
        for node in tree.find_all(exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in DUCKDB_ONLY:
                raise self.stop(f"{name}()", "Spark has no function of that meaning", name)

    # -- len() and l[i] ---------------------------------------------------------------------
    def type_of(self, node: Node) -> exp.DataType | None:
        """The DuckDB type of a column reference t.c / c / t.c.field, from the tags' schema."""
        if not isinstance(node, exp.Column):
            return None  # an expression: courier does not infer types through functions
        parts = [p.name for p in node.parts]
        tables = self.aliases(node)
        candidates: list[tuple[str, list[str]]] = []
        if len(parts) >= 2 and parts[0] in tables:
            candidates.append((tables[parts[0]], parts[1:]))
        for table in set(tables.values()) or set(self.schema):
            candidates.append((table, parts))
        for table, path in candidates:
            columns = self.schema.get(table)
            if not columns or path[0] not in columns:
                continue
            try:
                dtype = exp.DataType.build(columns[path[0]], dialect="duckdb")
            except (ParseError, ValueError):
                return None
            for name in path[1:]:
                fields = {
                    f.name: f.args.get("kind")
                    for f in dtype.expressions
                    if isinstance(f, exp.ColumnDef)
                }
                field_type = fields.get(name)
                if dtype.this != exp.DataType.Type.STRUCT or field_type is None:
                    return None
                dtype = field_type
            return dtype
        return None

    def aliases(self, node: Node) -> dict[str, str]:
        select = node.find_ancestor(exp.Select)
        out: dict[str, str] = {}
        if select is None:
            return out
        for table in select.find_all(exp.Table):
            if table.find_ancestor(exp.Select) is select:
                out[table.alias_or_name] = table.name
        return out

    def lengths(self, tree: Node) -> None:
        for node in list(tree.find_all(exp.Length)):
            dtype = self.type_of(node.this)
            if dtype is not None and dtype.this in TEXT_TYPES:
                continue
            if dtype is None or dtype.this not in LIST_TYPES:
                raise self.stop(
                    f"len()/length() of {node.this.sql(dialect='duckdb')}",
                    "courier cannot tell whether it is a list (array_size in Spark) or a "
                    "string (length); write array_length(...) for a list",
                    "len" if _line_of(self.text, "len") else "length",
                )
            node.replace(exp.func("array_size", node.this))
            self.rewrites.append("len(list) -> array_size")
        for node in list(tree.find_all(exp.ArraySize)):
            node.replace(exp.Anonymous(this="array_size", expressions=[node.this]))
            self.rewrites.append("array_length -> array_size (NULL for NULL, as in DuckDB)")

    def brackets(self, tree: Node) -> None:
        for node in list(tree.find_all(exp.Bracket)):
            if len(node.expressions) != 1:
                raise self.stop("l[a, b]", "one index at a time", "[")
            index = node.expressions[0]
            if isinstance(index, exp.Literal) and index.is_string:
                continue  # a map key or a struct field: the same in Spark
            base = node.this
            dtype = self.type_of(base)
            if dtype is not None and dtype.this in TEXT_TYPES:
                raise self.stop("s[i] on a string", "use substring(s, i, 1)", "[")
            size = exp.Anonymous(this="array_size", expressions=[base.copy()])
            if isinstance(index, exp.Literal | exp.Neg) and _int(index) is not None:
                n = (_int(index) or 0) + 1  # sqlglot stores DuckDB's l[n] as n - 1
                zero_based: Node = (
                    exp.Literal.number(n - 1)
                    if n > 0
                    else exp.Add(this=size, expression=exp.Literal.number(n))
                )
                if n == 0:
                    zero_based = exp.Literal.number(-1)
            else:
                zero_based = exp.Case(
                    ifs=[
                        exp.If(
                            this=exp.LT(this=index.copy(), expression=exp.Literal.number(0)),
                            true=exp.Add(this=size, expression=index.copy()),
                        )
                    ],
                    default=exp.Sub(this=index.copy(), expression=exp.Literal.number(1)),
                )
            node.replace(exp.Anonymous(this="get", expressions=[base, zero_based]))
            self.rewrites.append("l[i] (1-based, NULL out of bounds) -> get()")

    # -- unnest ------------------------------------------------------------------------------
    def zipped(self, lists: list[tuple[str, Node, bool]]) -> Node:
        """inline(arrays_zip(...)) over (alias, list, is_subscripts) entries."""
        args = []
        for _alias, lst, subscripts in lists:
            value = lst.copy()
            if subscripts:
                value = sqlglot.parse_one(
                    f"transform({lst.sql(dialect='spark')}, ({LAMBDA_E}, {LAMBDA_K}) -> "
                    f"CAST({LAMBDA_K} + 1 AS BIGINT))",
                    read="spark",
                )
            if len(lists) > 1:  # DuckDB pads a NULL list like a short one
                value = exp.Coalesce(this=value, expressions=[exp.Array(expressions=[])])
            args.append(value)
        return exp.Anonymous(this="arrays_zip", expressions=args)

    def generator_join(self, lists: list[tuple[str, Node, bool]], alias: str, outer: bool) -> Node:
        zipped = self.zipped(lists)
        columns = ", ".join(_quote(a) for a, _l, _s in lists)
        fn = "inline_outer" if outer else "inline"
        generator = f"{fn}({zipped.sql(dialect='spark')}) AS {_quote(alias)}({columns})"
        sql = f"SELECT 1 FROM t INNER JOIN LATERAL {generator}"
        join = sqlglot.parse_one(sql, read="spark").args["joins"][0]
        join.set("on", None)  # Sail refuses LATERAL table functions with an ON condition
        if len(lists) > 1:
            self.rewrites.append("zipped unnest() -> one inline(arrays_zip())")
        else:
            self.rewrites.append("unnest() -> JOIN LATERAL inline()")
        return join

    def unnest_entry(self, projection: Node) -> tuple[str, Node, bool] | None:
        if not isinstance(projection, exp.Alias):
            return None
        value = projection.this
        if isinstance(value, exp.Explode) and not isinstance(value, exp.Posexplode):
            return projection.alias, value.this, False
        if isinstance(value, exp.Anonymous) and value.name.lower() == "generate_subscripts":
            args = value.expressions
            if len(args) == 2 and isinstance(args[1], exp.Literal) and args[1].name == "1":
                return projection.alias, args[0], True
        return None

    def lateral_unnests(self, select: Node) -> None:
        """FROM t, LATERAL (SELECT unnest(a) AS x, generate_subscripts(a, 1) AS i) AS u."""
        for join in list(select.args.get("joins") or []):
            lateral = join.this
            if not isinstance(lateral, exp.Lateral) or not isinstance(lateral.this, exp.Subquery):
                continue
            inner = lateral.this.this
            if not isinstance(inner, exp.Select) or not any(
                isinstance(p, exp.Alias) and isinstance(p.this, exp.Explode | exp.Anonymous)
                for p in inner.expressions
            ):
                continue
            entries = [self.unnest_entry(p) for p in inner.expressions]
            extra = [k for k in inner.args if k != "expressions" and inner.args.get(k)]
            if any(e is None for e in entries) or extra:
                raise self.stop(
                    "a LATERAL subquery mixing unnest() with other columns or clauses",
                    "courier zips only SELECT unnest(...) AS a, generate_subscripts(..., 1) AS b",
                    "unnest",
                )
            outer = self.outer_join(join)
            alias = lateral.alias or self.next_alias()
            join.replace(self.generator_join([e for e in entries if e], alias, outer))

    def outer_join(self, join: Node) -> bool:
        side = (join.side or "").upper()
        on = join.args.get("on")
        if side == "LEFT":
            if on is not None and not (isinstance(on, exp.Boolean) and on.this is True):
                raise self.stop("LEFT JOIN LATERAL ... ON <condition>", "only ON TRUE", "LEFT")
            self.rewrites.append("LEFT JOIN LATERAL unnest ON TRUE -> inline_outer (keeps OUTER)")
            return True
        if side or (on is not None and not (isinstance(on, exp.Boolean) and on.this is True)):
            raise self.stop(f"{side} JOIN LATERAL with unnest()", "only inner or LEFT", "JOIN")
        return False

    def from_unnests(self, select: Node) -> None:
        """FROM t, unnest(t.a) [WITH ORDINALITY] AS u(x[, i])."""
        for join in list(select.args.get("joins") or []):
            node = join.this
            if not isinstance(node, exp.Unnest):
                continue
            alias = node.args.get("alias")
            names = [c.name for c in alias.columns] if alias is not None else []
            offset = node.args.get("offset")
            if len(node.expressions) != 1:
                raise self.stop(
                    "unnest() of several lists in FROM", "zip them in a LATERAL", "unnest"
                )
            lst = node.expressions[0]
            value_name = names[0] if names else "unnest"
            entries = [(value_name, lst, False)]
            if offset is not None:
                position = offset.name if isinstance(offset, exp.Identifier) else "ordinality"
                if len(names) > 1:
                    position = names[1]
                entries.append((position, lst, True))
                self.rewrites.append("WITH ORDINALITY (1-based) -> zipped 1-based positions")
            table_alias = alias.name if alias is not None and alias.name else self.next_alias()
            join.replace(self.generator_join(entries, table_alias, self.outer_join(join)))

    def select_unnests(self, select: Node) -> None:
        """SELECT id, unnest(a) AS x, unnest(b) AS y FROM t: one zipped generator joined to the
        FROM, the projections reading its columns."""
        entries = []
        for projection in select.expressions:
            if not projection.find(exp.Explode):
                continue
            entry = self.unnest_entry(projection)
            if entry is None or not select.args.get("from_"):
                raise self.stop(
                    "unnest() inside an expression, or without an alias",
                    "write unnest(l) AS name as a column of its own",
                    "unnest",
                )
            entries.append((entry, projection))
        if not entries:
            return
        if select.args.get("group") or select.args.get("distinct"):
            raise self.stop("unnest() in a grouped SELECT", "unnest in a subquery first", "unnest")
        alias = self.next_alias()
        join = self.generator_join([e for e, _p in entries], alias, outer=False)
        for (name, _lst, _s), projection in entries:
            projection.replace(
                exp.alias_(exp.column(name, table=alias, quoted=True), name, quoted=True)
            )
        select.append("joins", join)

    def next_alias(self) -> str:
        self.counter += 1
        return f"{UNNEST_ALIAS}_{self.counter}"


DIALECT_NAMES = {"duckdb": "DuckDB SQL", "spark": "Spark SQL"}


def parse_statement(text: str, dialect: str, query: str, location: Path | None) -> Node:
    """The one statement of a saved query, parsed by sqlglot; QueryError names the line."""
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise QueryError(
            f"line {first.get('line', '?')}, column {first.get('col', '?')}: "
            f"{DIALECT_NAMES.get(dialect, dialect)} syntax error: {first.get('description', exc)}",
            query,
            location,
        ) from exc
    if len(statements) != 1:
        raise QueryError(
            f"expected one SELECT statement, found {len(statements)}: a saved query is one "
            "statement",
            query,
            location,
        )
    return statements[0]


def _int(node: Node) -> int | None:
    try:
        return int(node.sql(dialect="duckdb"))
    except ValueError:
        return None


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _line_of(text: str, name: str) -> int | None:
    word = name[:1].isalnum()
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}" if word else re.escape(name), re.I)
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line.split("--", 1)[0]):
            return number
    return None


def with_order_columns(spark_sql: str, tags: list[str], columns: tuple[str, ...]) -> str | None:
    """The query with a tag's record-order columns (file rank, line) carried to its result, so
    the last record per feed key can win after the query: added to the outermost SELECT when its
    FROM reads a tag directly and it does not aggregate. None when that is not the case."""
    tree = sqlglot.parse_one(spark_sql, read="spark")
    if not isinstance(tree, exp.Select) or tree.args.get("group") or tree.args.get("distinct"):
        return None
    source = tree.args.get("from_")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or table.name not in tags:
        return None
    for name in columns:
        tree.append("expressions", exp.column(name, table=table.alias_or_name, quoted=True))
    for join in tree.find_all(exp.Join):  # the parser adds ON TRUE to JOIN LATERAL; Sail refuses
        if isinstance(join.this, exp.Lateral):
            join.set("on", None)
    return tree.sql(dialect="spark", pretty=True)
