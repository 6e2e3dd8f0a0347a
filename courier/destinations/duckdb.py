"""Feed tables in DuckDB: DDL from feed definitions, casts, quarantine of rejected rows, upsert."""

from __future__ import annotations

import duckdb

from courier.config.models import FeedConfig
from courier.destinations.base import (
    FeedDestination,
    LoadContext,
    LoadResult,
    sql_type,
)
from courier.engines.base import Relation
from courier.engines.duckdb import FILE_NAMES, literal, quote
from courier.errors import LoadError
from courier.plan import FeedCounts

SYSTEM_COLUMNS = {"_courier_run_id": "VARCHAR", "_courier_loaded_at": "TIMESTAMPTZ"}
RAW_LIMIT = 4096


class DuckDBDestination(FeedDestination):
    schema = "main"

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        # fully qualified: a file tag's temp view may carry the same name as a feed
        self.catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]

    def table(self, feed_id: str) -> str:
        return f"{quote(self.catalog)}.{quote(self.schema)}.{quote(feed_id)}"

    def existing_columns(self, feed_id: str) -> dict[str, str] | None:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [self.catalog, self.schema, feed_id],
        ).fetchall()
        return {r[0]: r[1] for r in rows} if rows else None

    def ensure_table(self, feed: FeedConfig) -> list[str]:
        existing = self.existing_columns(feed.id)
        wanted = {name: sql_type(t) for name, t in feed.fields.items()}
        if existing is None:
            cols = [f"{quote(n)} {t}" for n, t in {**wanted, **SYSTEM_COLUMNS}.items()]
            self.con.execute(f"CREATE TABLE {self.table(feed.id)} ({', '.join(cols)})")
            return [f"created feed table {feed.id}"]
        changes = []
        for name, typ in {**wanted, **SYSTEM_COLUMNS}.items():
            if name not in existing:
                self.con.execute(
                    f"ALTER TABLE {self.table(feed.id)} ADD COLUMN {quote(name)} {typ}"
                )
                changes.append(f"added column {feed.id}.{name} {typ}")
            elif not same_type(existing[name], typ):
                try:
                    self.con.execute(
                        f"ALTER TABLE {self.table(feed.id)} ALTER COLUMN {quote(name)} "
                        f"SET DATA TYPE {typ}"
                    )
                except duckdb.Error as exc:
                    raise LoadError(
                        f"feed {feed.id}: column {name} is {existing[name]} in the table but "
                        f"{typ} in feeds/{feed.id}.toml and the stored values cannot be "
                        f"converted ({exc}). Change the type back, or drop the table and reload "
                        "with --reload."
                    ) from exc
                changes.append(f"changed column {feed.id}.{name} {existing[name]} -> {typ}")
        return changes

    def truncate(self, feed: FeedConfig) -> int:
        n = self.con.execute(f"SELECT count(*) FROM {self.table(feed.id)}").fetchone()[0]  # type: ignore[index]
        self.con.execute(f"DELETE FROM {self.table(feed.id)}")
        return int(n)

    def row_count(self, feed_id: str) -> int | None:
        if self.existing_columns(feed_id) is None:
            return None
        return int(self.con.execute(f"SELECT count(*) FROM {self.table(feed_id)}").fetchone()[0])  # type: ignore[index]

    def sample(self, feed_id: str, limit: int) -> list[dict[str, object]]:
        cur = self.con.execute(f"SELECT * FROM {self.table(feed_id)} LIMIT {int(limit)}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def load(self, feed: FeedConfig, source: Relation, ctx: LoadContext) -> LoadResult:
        incoming = {c: t for c, t in source.columns.items() if c != source.file_column}
        by_lower = {c.lower(): c for c in incoming}
        matched: dict[str, str | None] = {}
        for field in feed.fields:
            matched[field] = field if field in incoming else by_lower.get(field.lower())
        used = {m for m in matched.values() if m}
        ignored = [c for c in incoming if c not in used]

        selects, reasons = [], []
        for field, ftype in feed.fields.items():
            target = sql_type(ftype)
            src = matched[field]
            if src is None:
                selects.append(f"CAST(NULL AS {target}) AS {quote(field)}")
                if field in feed.not_null:
                    reasons.append(f"'{field}: required field is missing'")
                continue
            col = f"s.{quote(src)}"
            cast = cast_expr(col, incoming[src], ftype)
            selects.append(f"{cast} AS {quote(field)}")
            if ftype != "json" and not same_type(incoming[src], target):
                reasons.append(
                    f"CASE WHEN {col} IS NOT NULL AND {cast} IS NULL THEN "
                    f"'{field}: cannot cast ' || left(CAST({col} AS VARCHAR), 60) || "
                    f"' to {ftype}' END"
                )
            if field in feed.not_null:
                reasons.append(
                    f"CASE WHEN {col} IS NULL THEN '{field}: required field is null' END"
                )
        if feed.unknown_columns == "reject":
            for col in ignored:
                reasons.append(
                    f"CASE WHEN s.{quote(col)} IS NOT NULL THEN "
                    f"'{col}: column is not in feed {feed.id}' END"
                )
        reason_sql = f"concat_ws('; ', {', '.join(reasons)})" if reasons else "''"
        stage = f"_courier_stage_{feed.id}"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote(stage)} AS SELECT {', '.join(selects)}, "
            f"s.rowid AS _courier_ord, {reason_sql} AS _courier_reason "
            f"FROM {quote(source.name)} s"
        )
        rejected = 0
        if reasons:
            rejected = self._quarantine(stage, source, feed, ctx)
        fields = ", ".join(quote(f) for f in feed.fields)
        good = (
            f"SELECT * FROM {quote(stage)} WHERE _courier_reason = ''"
            if reasons
            else (f"SELECT * FROM {quote(stage)}")
        )
        deleted = 0
        if feed.primary_key:
            pk = ", ".join(quote(k) for k in feed.primary_key)
            # last record wins, by file and line order (the stage keeps the input's row order)
            good = (
                f"SELECT * FROM ({good}) QUALIFY row_number() OVER "
                f"(PARTITION BY {pk} ORDER BY _courier_ord DESC) = 1"
            )
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(stage + '_good')} AS {good}")
            good = f"SELECT * FROM {quote(stage + '_good')}"
            match = " AND ".join(f"f.{quote(k)} = g.{quote(k)}" for k in feed.primary_key)
            deleted = self.con.execute(
                f"DELETE FROM {self.table(feed.id)} f USING {quote(stage + '_good')} g "
                f"WHERE {match}"
            ).fetchone()[0]  # type: ignore[index]
        loaded = self.con.execute(
            f"INSERT INTO {self.table(feed.id)} ({fields}, _courier_run_id, _courier_loaded_at) "
            f"SELECT {fields}, {literal(ctx.run_id)}, "
            f"CAST({literal(ctx.loaded_at.isoformat())} AS TIMESTAMPTZ) FROM ({good})"
        ).fetchone()[0]  # type: ignore[index]
        for t in (stage, stage + "_good"):
            self.con.execute(f"DROP TABLE IF EXISTS {quote(t)}")
        counts = FeedCounts(read=source.rows, loaded=int(loaded), rejected=rejected)
        counts.deleted = int(deleted)
        return LoadResult(counts, ignored)

    def _quarantine(self, stage: str, source: Relation, feed: FeedConfig, ctx: LoadContext) -> int:
        n = self.con.execute(
            f"SELECT count(*) FROM {quote(stage)} WHERE _courier_reason <> ''"
        ).fetchone()[0]  # type: ignore[index]
        if not n:
            return 0
        visible = [c for c in source.columns if c != source.file_column]
        raw = (
            "to_json(struct_pack("
            + ", ".join(f"{quote(c)} := s.{quote(c)}" for c in visible)
            + "))"
        )
        if source.file_column:
            fc = f"s.{quote(source.file_column)}"
            numbered = (
                f"SELECT s.rowid AS _ord, {fc} AS _file, row_number() OVER "
                f"(PARTITION BY {fc} ORDER BY s.rowid) AS _line, s.* FROM {quote(source.name)} s"
            )
            file_expr = "coalesce(n.key, s._file)"
            names = f"LEFT JOIN {FILE_NAMES} n ON n.path = s._file"
            self.con.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {FILE_NAMES} (path VARCHAR, key VARCHAR)"
            )
        else:
            numbered = (
                "SELECT s.rowid AS _ord, NULL AS _file, s.rowid + 1 AS _line, s.* "
                f"FROM {quote(source.name)} s"
            )
            file_expr = "NULL"
            names = ""
        self.con.execute(
            "INSERT INTO courier.quarantine (run_id, courier, feed, file, line, reason, raw, "
            "quarantined_at) "
            f"SELECT {literal(ctx.run_id)}, {literal(ctx.courier)}, {literal(feed.id)}, "
            f"{file_expr}, s._line, r._courier_reason, left({raw}, {RAW_LIMIT}), "
            f"CAST({literal(ctx.loaded_at.isoformat())} AS TIMESTAMPTZ) "
            f"FROM ({numbered}) s JOIN {quote(stage)} r ON r._courier_ord = s._ord {names} "
            "WHERE r._courier_reason <> ''"
        )
        return int(n)


def same_type(a: str, b: str) -> bool:
    norm = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "INT": "INTEGER", "INT4": "INTEGER"}
    a, b = a.upper().replace(" ", ""), b.upper().replace(" ", "")
    return norm.get(a, a) == norm.get(b, b) or (
        a.replace("WITHTIMEZONE", "TZ") == b.replace("WITHTIMEZONE", "TZ")
    )


def cast_expr(col: str, incoming_type: str, feed_type: str) -> str:
    target = sql_type(feed_type)
    if feed_type == "json":
        if incoming_type.upper() == "JSON":
            return col
        return f"to_json({col})"
    if feed_type == "timestamp" and incoming_type.upper() in ("BIGINT", "INTEGER", "UBIGINT"):
        return f"TRY_CAST(epoch_ms({col}) AS TIMESTAMPTZ)"
    if same_type(incoming_type, target):
        return col
    nested = incoming_type.upper().startswith(("STRUCT", "MAP")) or incoming_type.endswith("]")
    if feed_type == "string" and nested:
        return f"CAST(to_json({col}) AS VARCHAR)"
    return f"TRY_CAST({col} AS {target})"
