"""Carry each input record's place (file rank, line) through an analyst's DuckDB query.

A rejected row then names the file and line it came from, and the last record per feed key
wins by that place rather than by the query's output order. The query is edited as text (its
own SQL stays as written, sqlglot only finds where): the tag in the FROM of the outermost
SELECT (or of the CTEs and subqueries it reads) is swapped for a relation that also has the
two columns, and they are added to the projection where no `*` brings them already.

Queries the edit cannot follow keep their output order (carry_record_order returns None):
aggregates, GROUP BY, DISTINCT, set operations other than UNION ALL, a FROM that is not a tag.
"""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from courier.engines.base import LINE_COLUMN, RANK_COLUMN
from courier.engines.remembered_order import QUOTES

Edit = tuple[int, int, str]  # replace text[start:end] with the string


def quote(identifier: str, dialect: str = "duckdb") -> str:
    q = QUOTES[dialect]
    return q + identifier.replace(q, q + q) + q


def carry_record_order(sql: str, relations: dict[str, str], dialect: str = "duckdb") -> str | None:
    """sql with RANK_COLUMN and LINE_COLUMN in its result, read from relations (tag -> the
    relation holding the tag's columns and those two); None when the query's shape does not
    let them through (its rows then keep the query's output order). dialect: the query's
    ("duckdb", or "spark" for a Spark engine's query text)."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
        tokens = sqlglot.tokenize(sql, read=dialect)
    except SqlglotError:
        return None
    edits: list[Edit] = []
    carrier = _Carrier(sql, tokens, relations, edits, dialect)
    try:
        if not isinstance(tree, exp.Expression) or not carrier.carries(tree, {}):
            return None
    except _NoPosition:
        return None
    out = sql
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text + out[end:]
    return out


class _Carrier:
    def __init__(
        self,
        sql: str,
        tokens: list[Any],
        relations: dict[str, str],
        edits: list[Edit],
        dialect: str = "duckdb",
    ):
        self.dialect = dialect
        self.sql = sql
        self.tokens = tokens
        self.relations = relations
        self.edits = edits

    def carries(self, node: exp.Expression, ctes: dict[str, bool]) -> bool:
        """Whether node's result has the two columns once edited (edits are only added when
        the whole query carries them: the caller drops them otherwise)."""
        if isinstance(node, exp.Subquery):
            return self.carries(node.this, ctes)
        if isinstance(node, exp.Union):
            return self._union(node, ctes)
        if isinstance(node, exp.Select):
            return self._select(node, ctes)
        return False

    def _scope(self, node: exp.Expression, ctes: dict[str, bool]) -> dict[str, bool] | None:
        scope = dict(ctes)
        with_ = node.args.get("with_") or node.args.get("with")
        if with_ is not None:
            if with_.args.get("recursive"):
                return None
            for cte in with_.expressions:
                scope[cte.alias_or_name] = self.carries(cte.this, scope)
        return scope

    def _union(self, node: exp.Union, ctes: dict[str, bool]) -> bool:
        if node.args.get("distinct"):
            return False  # UNION (not ALL) dedupes rows: the place would change that
        scope = self._scope(node, ctes)
        if scope is None:
            return False
        sides = [self.carries(node.this, scope), self.carries(node.expression, scope)]
        if node.args.get("by_name"):
            return any(sides)  # a side without them has NULLs there (by name)
        return all(sides)

    def _select(self, node: exp.Select, ctes: dict[str, bool]) -> bool:
        scope = self._scope(node, ctes)
        if scope is None:
            return False
        for arg in ("group", "having", "distinct", "pivots"):
            if node.args.get(arg):
                return False
        for projection in node.expressions:
            if any(_aggregate(f) for f in projection.find_all(exp.AggFunc)):
                return False
            if projection.find(exp.Columns) is not None:
                return False  # COLUMNS(...) may or may not match them
        source = node.args.get("from_") or node.args.get("from")
        table = source.this if source is not None else None
        if isinstance(table, exp.Subquery):
            if not table.alias or not self.carries(table.this, scope):
                return False
            alias = table.alias
        elif isinstance(table, exp.Table) and not table.args.get("db") and table.name:
            name = table.name
            if name in scope:
                if not scope[name]:
                    return False
            elif name in self.relations:
                self._swap(table)
            else:
                return False
            alias = table.alias_or_name
        else:
            return False
        star = self._star(node, alias)
        joined = [j.this for j in node.args.get("joins") or []]
        if star == "all" and any(isinstance(t, exp.Table) and scope.get(t.name) for t in joined):
            return False  # a joined CTE brings the columns too: twice under one name
        if not star:
            where = self._from_token(table)
            if where is None:
                return False
            cols = ", ".join(
                f"{self._quote(alias)}.{self._quote(c)}" for c in (RANK_COLUMN, LINE_COLUMN)
            )
            self.edits.append((where, where, f", {cols} "))
        return True

    def _swap(self, table: exp.Table) -> None:
        ident = table.this
        meta = ident.meta if isinstance(ident, exp.Identifier) else {}
        if "start" not in meta:
            raise _NoPosition
        start, end = meta["start"], meta["end"] + 1
        q = QUOTES[self.dialect]
        if self.sql[start - 1 : start] == q and self.sql[end : end + 1] == q:
            start, end = start - 1, end + 1
        text = self._quote(self.relations[table.name])
        if not table.alias:
            text += f" AS {self._quote(table.name)}"  # `tag.col` references keep working
        self.edits.append((start, end, text))

    def _quote(self, identifier: str) -> str:
        return quote(identifier, self.dialect)

    def _star(self, node: exp.Select, alias: str) -> str:
        """ "all" when the projection holds `*`, "source" for `alias.*`, else ""."""
        found = ""
        for projection in node.expressions:
            if isinstance(projection, exp.Star):
                return "all"
            if (
                isinstance(projection, exp.Column)
                and isinstance(projection.this, exp.Star)
                and projection.table == alias
            ):
                found = "source"
        return found

    def _from_token(self, table: exp.Expression) -> int | None:
        """Offset of the FROM keyword before the table (the projection ends there): found
        back from the table's name, or from a subquery's alias past its parentheses."""
        ident = table.this if isinstance(table, exp.Table) else table.args["alias"].this
        start = ident.meta.get("start") if isinstance(ident, exp.Identifier) else None
        if start is None:
            return None
        index = next((i for i, t in enumerate(self.tokens) if t.start >= start), None)
        if index is None:
            return None
        depth = 0
        for token in reversed(self.tokens[:index]):
            if token.token_type == TokenType.R_PAREN:
                depth += 1
            elif token.token_type == TokenType.L_PAREN:
                depth -= 1
            elif token.token_type == TokenType.FROM and depth == 0:
                return int(token.start)
        return None


class _NoPosition(Exception):
    pass


def _aggregate(node: exp.Expression) -> bool:
    """An aggregate that folds rows (not one inside a window, which keeps them)."""
    return not isinstance(node.parent, exp.Window)
