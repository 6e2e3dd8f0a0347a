"""Feed tables in DuckDB: DDL from feed definitions, casts, quarantine of rejected rows, upsert."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from courier.config.models import FeedConfig
from courier.destinations.base import (
    SYSTEM_COLUMNS as NEUTRAL_SYSTEM_COLUMNS,
)
from courier.destinations.base import (
    FeedDestination,
    FeedType,
    LoadContext,
    LoadResult,
    TLoadMode,
)
from courier.engines.base import LINE_COLUMN, RANK_COLUMN, Rows
from courier.engines.duckdb import (
    DEFAULT_MEMORY_LIMIT,
    FILE_NAMES,
    DuckDBRows,
    arrow_relation,
    feeds_connection,
    literal,
    quote,
    table_exists,
)
from courier.errors import LoadError
from courier.plan import FeedCounts

if TYPE_CHECKING:
    import pyarrow as pa

    from courier.backends import Session
    from courier.config.models import DuckDBDestinationConfig
    from courier.state.base import StateStore

# feed type -> DuckDB type
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "json": "JSON",
}


def sql_type(feed_type: str) -> str:
    """A feed type (feeds/FEED.toml) as DuckDB spells it."""
    return FeedType.parse(feed_type).sql(DUCKDB_TYPES)


SYSTEM_COLUMNS = {name: sql_type(t) for name, t in NEUTRAL_SYSTEM_COLUMNS.items()}
RAW_LIMIT = 4096
COMMITS = "courier.feed_commits"  # run ids whose loads committed here


def open_backend(name: str, config: DuckDBDestinationConfig, session: Session) -> DuckDBDestination:
    """Registry entry (courier.backends): feed tables in a DuckDB database."""
    return DuckDBDestination(feeds_connection(session, config.database))


class DuckDBDestination(FeedDestination):
    type = "duckdb"
    schema = "main"
    create = "CREATE TABLE"

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        # fully qualified: a file tag's temp view may carry the same name as a feed
        self.catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        self.ctx: LoadContext | None = None
        self._truncated: set[str] = set()

    def shares_transaction_with(self, state: StateStore) -> bool:
        """True when the state store writes on this connection: one COMMIT holds both."""
        return getattr(state, "con", None) is self.con

    # -- the run ---------------------------------------------------------------------------------
    def begin(self, ctx: LoadContext) -> None:
        self._create_commits_table()
        self.ctx = ctx
        self._truncated.clear()
        self.con.execute("BEGIN TRANSACTION")

    def _create_commits_table(self) -> None:
        """courier.feed_commits, once. Couriers of a group begin in parallel threads; the first
        time, their CREATEs collide on the catalog ("write-write conflict"): the loser finds the
        table the winner made."""
        for attempt in range(20):
            if table_exists(self.con, "courier", "feed_commits"):
                return
            try:
                self.con.execute("CREATE SCHEMA IF NOT EXISTS courier")
                self.con.execute(
                    f"CREATE TABLE IF NOT EXISTS {COMMITS} "
                    "(run_id VARCHAR, committed_at TIMESTAMPTZ)"
                )
                return
            except duckdb.TransactionException:
                if attempt == 19:
                    raise
                time.sleep(0.05)

    def commit(self, run_id: str) -> None:
        if self.ctx is None or self.ctx.run_id != run_id:
            if self.committed(run_id):
                return
            raise LoadError(f"run {run_id} has no open load to commit")
        self.con.execute(f"INSERT INTO {COMMITS} VALUES (?, now())", [run_id])
        self.con.execute("COMMIT")
        self.ctx = None

    def abort(self) -> None:
        self.ctx = None
        try:
            self.con.execute("ROLLBACK")
        except duckdb.TransactionException:
            pass  # nothing was open

    def committed(self, run_id: str) -> bool:
        if not table_exists(self.con, "courier", "feed_commits"):
            return False
        return bool(self._count(f"SELECT count(*) FROM {COMMITS} WHERE run_id = {literal(run_id)}"))

    def table_name(self, feed_id: str) -> str:
        return feed_id

    def table(self, feed_id: str) -> str:
        return f"{quote(self.catalog)}.{quote(self.schema)}.{quote(self.table_name(feed_id))}"

    def existing_columns(self, feed_id: str) -> dict[str, str] | None:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [self.catalog, self.schema, self.table_name(feed_id)],
        ).fetchall()
        return {r[0]: r[1] for r in rows} if rows else None

    def ensure_table(self, feed: FeedConfig) -> list[str]:
        existing = self.existing_columns(feed.id)
        wanted = {name: sql_type(t) for name, t in feed.fields.items()}
        if existing is None:
            cols = [f"{quote(n)} {t}" for n, t in {**wanted, **SYSTEM_COLUMNS}.items()]
            self.con.execute(f"{self.create} {self.table(feed.id)} ({', '.join(cols)})")
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

    def _truncate(self, feed: FeedConfig) -> int:
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

    def arrow(self, feed_id: str, columns: list[str] | None = None) -> pa.RecordBatchReader:
        """The feed table's rows (or some of its columns) as an Arrow stream."""
        cols = ", ".join(quote(c) for c in columns) if columns else "*"
        query = f"SELECT {cols} FROM {self.table(feed_id)}"
        return arrow_relation(self.con, query).to_arrow_reader()

    def truncated(self, feed_id: str) -> bool:
        """Did the open run empty the feed table first (truncateAndLoad)?"""
        return feed_id in self._truncated

    def load(self, feed: FeedConfig, rows: Rows, mode: TLoadMode = "load") -> LoadResult:
        if self.ctx is None:
            raise LoadError(f"feed {feed.id}: load called outside a run (call begin first)")
        ctx = self.ctx
        if mode == "truncateAndLoad" and feed.id not in self._truncated:
            self._truncated.add(feed.id)
            self._truncate(feed)
        source = rows.native("duckdb")
        staged = None
        if not isinstance(source, DuckDBRows) or source.con is not self.con:
            source = staged = self._stage_arrow(feed, rows)
        try:
            return self._load(feed, source, ctx)
        finally:
            if staged is not None:
                self.con.execute(f"DROP TABLE IF EXISTS {quote(staged.name)}")

    def _stage_arrow(self, feed: FeedConfig, rows: Rows) -> DuckDBRows:
        """Rows from another engine: their Arrow stream in a temp table, in record order, with
        each row's storage key in the file column (so quarantine names the file)."""
        name = f"_courier_arrow_{feed.id}"
        reader = rows.to_arrow()
        view = f"{name}_src"
        self.con.register(view, reader)
        try:
            # with the files the ranks point into, each row keeps its record's place; the
            # stream comes in record order (Rows.to_arrow) and is kept in it (no second sort)
            cols = ", ".join(f"a.{quote(c)}" for c in reader.schema.names)
            if not rows.files:
                visible = [c for c in reader.schema.names if c not in (RANK_COLUMN, LINE_COLUMN)]
                cols = ", ".join(f"a.{quote(c)}" for c in visible)
            self.con.execute("SET preserve_insertion_order = true")
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {quote(name)} AS SELECT {cols} FROM {view} a"
            )
        finally:
            self.con.unregister(view)
        columns = {r[0]: r[1] for r in self.con.execute(f"DESCRIBE {quote(name)}").fetchall()}
        count = self._count(f"SELECT count(*) FROM {quote(name)}")
        return DuckDBRows(
            self.con, name, columns, count, files=rows.files, ordered=bool(rows.files)
        )

    def _load(self, feed: FeedConfig, source: DuckDBRows, ctx: LoadContext) -> LoadResult:
        incoming = {c: source.columns[c] for c in source.visible}
        by_lower = {c.lower(): c for c in incoming}
        matched: dict[str, str | None] = {}
        for field in feed.fields:
            matched[field] = field if field in incoming else by_lower.get(field.lower())
        used = {m for m in matched.values() if m}
        ignored = [c for c in incoming if c not in used]

        # selects: the feed's columns cast from the incoming ones; reasons: why a row is
        # rejected (text, for quarantine); rejects: the same conditions as booleans (cheap check)
        selects, reasons, rejects = [], [], []
        for field, ftype in feed.fields.items():
            target = sql_type(ftype)
            src = matched[field]
            if src is None:
                selects.append(f"CAST(NULL AS {target}) AS {quote(field)}")
                if field in feed.not_null:
                    reasons.append(literal(f"{field}: required field is missing"))
                    rejects.append("TRUE")
                continue
            col, source_type = f"s.{quote(src)}", incoming[src]
            if source_type.upper() == "JSON" and ftype != "json":
                # a field of mixed types arrives as JSON: take its value as text (a string
                # unquoted, JSON null as NULL, objects as JSON text), then cast that
                col, source_type = f"({col} ->> '$')", "VARCHAR"
            cast = cast_expr(col, source_type, ftype)
            selects.append(f"{cast} AS {quote(field)}")
            if ftype != "json" and not same_type(source_type, target):
                uncastable = f"{col} IS NOT NULL AND {cast} IS NULL"
                reasons.append(
                    f"CASE WHEN {uncastable} THEN "
                    f"{literal(f'{field}: cannot cast ')} || left(CAST({col} AS VARCHAR), 60) || "
                    f"{literal(f' to {ftype}')} END"
                )
                rejects.append(f"({uncastable})")
            if field in feed.not_null:
                null_reason = literal(f"{field}: required field is null")
                reasons.append(f"CASE WHEN {col} IS NULL THEN {null_reason} END")
                rejects.append(f"{col} IS NULL")
        if feed.unknown_columns == "reject":
            for col in ignored:
                # col is a key from the data: a literal, never spliced into SQL text
                reasons.append(
                    f"CASE WHEN s.{quote(col)} IS NOT NULL THEN "
                    f"{literal(f'{col}: column is not in feed {feed.id}')} END"
                )
                rejects.append(f"s.{quote(col)} IS NOT NULL")
        # The rows to load, in input order (_courier_ord, after the record's file rank and line
        # when they carry them): cast straight from the source, or, only when some row is
        # rejected, from a stage table that also keeps the reasons.
        place, latest = "", "_courier_ord DESC"
        if source.ordered:
            place = f", s.{RANK_COLUMN}, s.{LINE_COLUMN}"
            latest = f"{RANK_COLUMN} DESC NULLS LAST, {LINE_COLUMN} DESC NULLS LAST, {latest}"
        rows = (
            f"SELECT {', '.join(selects)}, s.rowid AS _courier_ord{place} "
            f"FROM {quote(source.name)} s"
        )
        cast_of = dict(zip(feed.fields, selects, strict=True))
        # the keys the run replaces: every row's key, cast (no rejects: all rows load)
        replaced = (
            f"SELECT {', '.join(cast_of[k] for k in feed.primary_key)} FROM {quote(source.name)} s"
        )
        stage = f"_courier_stage_{feed.id}"
        dups = f"_courier_dups_{feed.id}"
        losers = f"_courier_losers_{feed.id}"
        rejected, deduped = 0, False
        if rejects and self._count(
            f"SELECT count(*) FROM {quote(source.name)} s WHERE {' OR '.join(rejects)}"
        ):
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {quote(stage)} AS SELECT {', '.join(selects)}, "
                f"s.rowid AS _courier_ord{place}, concat_ws('; ', {', '.join(reasons)}) "
                f"AS _courier_reason FROM {quote(source.name)} s"
            )
            rejected = self._quarantine(stage, source, feed, ctx)
            rows = (
                f"SELECT * EXCLUDE (_courier_reason) FROM {quote(stage)} WHERE _courier_reason = ''"
            )
            replaced = rows
        fields = ", ".join(quote(f) for f in feed.fields)
        table = self.table(feed.id)
        deleted = 0
        if feed.primary_key:
            keys = [quote(k) for k in feed.primary_key]
            # Last record wins, by file and line order. Only keys held more than once need
            # work: one aggregate on a 64-bit hash of the key finds candidates (a collision
            # only adds a candidate), the exact key then ranks just their rows, and the
            # earlier ones (the losers) are left out by an anti join on the row order.
            key_hash = f"hash({', '.join(keys)})"
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {quote(dups)} AS SELECT {key_hash} AS _h "
                f"FROM ({rows}) GROUP BY _h HAVING count(*) > 1"
            )
            if self._count(f"SELECT count(*) FROM {quote(dups)}"):
                self.con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {quote(losers)} AS SELECT _courier_ord "
                    f"FROM ({rows}) WHERE {key_hash} IN (SELECT _h FROM {quote(dups)}) "
                    f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} "
                    f"ORDER BY {latest}) > 1"
                )
                deduped = True
                rows = (
                    f"SELECT * FROM ({rows}) WHERE _courier_ord NOT IN "
                    f"(SELECT _courier_ord FROM {quote(losers)})"
                )
            if self._count(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)"):
                match = " AND ".join(f"f.{k} = g.{k}" for k in keys)
                deleted = self._count(f"DELETE FROM {table} f USING ({replaced}) g WHERE {match}")
        final = (
            f"SELECT {fields}, {literal(ctx.run_id)} AS _courier_run_id, "
            f"CAST({literal(ctx.loaded_at.isoformat())} AS TIMESTAMPTZ) AS _courier_loaded_at "
            f"FROM ({rows})"
        )

        def expected() -> int:  # the rows `final` gives: all but the rejected and the losers
            lost = self._count(f"SELECT count(*) FROM {quote(losers)}") if deduped else 0
            return source.rows - rejected - lost

        loaded = self._insert(feed, final, [stage, dups, losers], expected)
        counts = FeedCounts(read=source.rows, loaded=loaded, rejected=rejected)
        counts.deleted = deleted
        return LoadResult(counts, ignored)

    def _insert(
        self, feed: FeedConfig, final: str, scratch: list[str], expected: Callable[[], int]
    ) -> int:
        """Insert the rows of `final` (the feed's columns, then the system ones) into the feed
        table and drop the scratch tables it reads; the rows inserted. (`expected` counts
        them without inserting, for a destination that inserts later.)"""
        fields = ", ".join(quote(c) for c in [*feed.fields, *SYSTEM_COLUMNS])
        # The feed's physical row order means nothing (the dedupe above already used the input
        # order), so DuckDB may insert in any order: less buffering, less memory.
        self.con.execute("SET preserve_insertion_order = false")
        try:
            loaded = self._count(f"INSERT INTO {self.table(feed.id)} ({fields}) {final}")
        finally:
            self.con.execute("RESET preserve_insertion_order")
        self._drop(scratch)
        return loaded

    def _drop(self, tables: list[str]) -> None:
        for t in tables:
            self.con.execute(f"DROP TABLE IF EXISTS {quote(t)}")

    def _count(self, sql: str) -> int:
        """Run a statement that answers one number (a count, or rows changed)."""
        return int(self.con.execute(sql).fetchone()[0])  # type: ignore[index]

    def _quarantine(
        self, stage: str, source: DuckDBRows, feed: FeedConfig, ctx: LoadContext
    ) -> int:
        n = self.con.execute(
            f"SELECT count(*) FROM {quote(stage)} WHERE _courier_reason <> ''"
        ).fetchone()[0]  # type: ignore[index]
        if not n:
            return 0
        visible = source.visible
        raw = (
            "to_json(struct_pack("
            + ", ".join(f"{quote(c)} := s.{quote(c)}" for c in visible)
            + "))"
        )
        if source.ordered:  # each row names its record's file (by rank) and line
            keys = ", ".join(f"({f.rank}, {literal(f.key)})" for f in source.files or [])
            keys = keys or "(NULL, NULL)"
            numbered = (
                f"SELECT s.rowid AS _ord, k.key AS _file, coalesce(s.{LINE_COLUMN}, "
                f"s.rowid + 1) AS _line, s.* FROM {quote(source.name)} s "
                f"LEFT JOIN (VALUES {keys}) k(rank, key) ON k.rank = s.{RANK_COLUMN}"
            )
            file_expr = "s._file"
            names = ""
        elif source.file_column:
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
                "SELECT s.rowid AS _ord, NULL AS _file, "
                "row_number() OVER (ORDER BY s.rowid) AS _line, s.* "
                f"FROM {quote(source.name)} s"
            )
            file_expr = "NULL"
            names = ""
        rejected = (
            f"FROM ({numbered}) s JOIN {quote(stage)} r ON r._courier_ord = s._ord {names} "
            "WHERE r._courier_reason <> ''"
        )
        if ctx.quarantine is not None and getattr(ctx.quarantine, "con", None) is self.con:
            # the state's quarantine table is on this connection: straight in, same transaction
            self.con.execute(
                "INSERT INTO courier.quarantine (run_id, courier, feed, file, line, reason, raw, "
                "quarantined_at) "
                f"SELECT {literal(ctx.run_id)}, {literal(ctx.courier)}, {literal(feed.id)}, "
                f"{file_expr}, s._line, r._courier_reason, left({raw}, {RAW_LIMIT}), "
                f"CAST({literal(ctx.loaded_at.isoformat())} AS TIMESTAMPTZ) {rejected}"
            )
        elif ctx.quarantine is not None:
            table = arrow_relation(
                self.con,
                f"SELECT {file_expr} AS file, s._line AS line, r._courier_reason AS reason, "
                f"left({raw}, {RAW_LIMIT}) AS raw {rejected}",
            ).to_arrow_table()
            ctx.quarantine.quarantine_arrow(ctx.run_id, ctx.courier, feed.id, table)
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


STAGE_MEMORY_LIMIT = "512MB"  # half the engine's default ([feeds] memory_limit sets both)


@dataclass
class PendingRows:
    """A feed's staged rows not written to its stage table: the statement that gives them
    (reading the engine's rows and the scratch tables of their dedupe) for `arrow` to stream."""

    feed: FeedConfig
    select: str
    scratch: list[str]


class StagingDestination(DuckDBDestination):
    """Where another destination (Delta) stages a run's rows: cast, checked, quarantined and
    deduplicated as DuckDB feeds are, then read as Arrow (`arrow`). Rows the engine made on
    this connection stay where they are: the cast and dedupe statement streams from them at
    the commit (the load says `holds_rows`, so the engine keeps them until then) instead of
    copying them into a temp table first; rows of another engine, and a feed loaded twice in a
    run, go to a temp table. It keeps no transaction of its own, since it may share its
    connection with the state (`stage_for`): abort() drops the tables it made."""

    create = "CREATE TEMP TABLE"

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        owns_connection: bool,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
    ):
        super().__init__(con)
        self.catalog, self.schema = "temp", "main"
        self.owns_connection = owns_connection
        self.memory_limit = memory_limit  # the connection's, as it was set
        self._readers: list[pa.RecordBatchReader] = []  # handed out by arrow, maybe not read
        self._made: set[str] = set()
        self._pending: dict[str, PendingRows] = {}
        self._loaded: set[str] = set()  # feeds the open run loaded
        self._may_hold = False  # the rows being loaded are the engine's, on this connection

    def table_name(self, feed_id: str) -> str:
        return f"_courier_staged_{feed_id}"  # beside the file tags' views, never one of them

    def begin(self, ctx: LoadContext) -> None:
        self.abort()
        self.ctx = ctx
        self._truncated.clear()

    def ensure_table(self, feed: FeedConfig) -> list[str]:
        self._made.add(feed.id)
        return super().ensure_table(feed)

    def load(self, feed: FeedConfig, rows: Rows, mode: TLoadMode = "load") -> LoadResult:
        again = feed.id in self._loaded
        self._loaded.add(feed.id)
        if again:  # a second load of the feed upserts into the first one's rows: both staged
            self._settle(feed.id)
        source = rows.native("duckdb")
        self._may_hold = not again and isinstance(source, DuckDBRows) and source.con is self.con
        try:
            result = super().load(feed, rows, mode)
        finally:
            self._may_hold = False
        result.holds_rows = feed.id in self._pending
        return result

    def _insert(
        self, feed: FeedConfig, final: str, scratch: list[str], expected: Callable[[], int]
    ) -> int:
        if not self._may_hold:
            return super()._insert(feed, final, scratch, expected)
        self._pending[feed.id] = PendingRows(feed, final, scratch)
        return expected()

    def _settle(self, feed_id: str) -> None:
        """Write a feed's pending rows to its stage table."""
        pending = self._pending.pop(feed_id, None)
        if pending is not None:
            super()._insert(pending.feed, pending.select, pending.scratch, lambda: 0)

    def arrow(self, feed_id: str, columns: list[str] | None = None) -> pa.RecordBatchReader:
        self.close_readers()  # one stream at a time: an earlier attempt's is done with
        pending = self._pending.get(feed_id)
        if pending is None:
            reader = super().arrow(feed_id, columns)
        else:
            # typed as the stage table is (a cast to the same type costs nothing)
            types = self.existing_columns(feed_id) or {}
            wanted = columns or list(types)
            cols = ", ".join(f"CAST(p.{quote(c)} AS {types[c]}) AS {quote(c)}" for c in wanted)
            query = f"SELECT {cols} FROM ({pending.select}) p"
            reader = arrow_relation(self.con, query).to_arrow_reader()
        self._readers.append(reader)
        return reader

    def close_readers(self) -> None:
        """Let go of the Arrow streams handed out (a writer that failed half way leaves its
        result open, and DuckDB then refuses every other statement on the connection)."""
        for reader in self._readers:
            reader.close()
        self._readers.clear()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """While a writer streams the staged rows out (delta-rs: ~350 MB of buffers of its own
        at a 1 GB window, measured), DuckDB keeps WRITER_SHARE of its memory limit, so the
        two together stay within what the limit promises ([feeds] memory_limit)."""
        limit = limit_bytes(self.memory_limit)
        if limit:
            self.con.execute(f"SET memory_limit = '{int(limit * WRITER_SHARE)}B'")
        try:
            yield
        finally:
            self.close_readers()
            if limit:
                self.con.execute(f"SET memory_limit = {literal(self.memory_limit)}")

    def commit(self, run_id: str) -> None:
        raise LoadError("a staging destination is read (arrow), never committed")

    def abort(self) -> None:
        self.ctx = None
        self.close_readers()
        for pending in self._pending.values():
            self._drop(pending.scratch)
        self._pending.clear()
        self._loaded.clear()
        for feed_id in sorted(self._made):
            self.con.execute(f"DROP TABLE IF EXISTS {self.table(feed_id)}")
        self._made.clear()

    def close(self) -> None:
        self.abort()
        if self.owns_connection:
            self.con.close()


def stage_for(rows: Rows, session: Session | None) -> StagingDestination:
    """A staging destination for rows: on the DuckDB engine's own connection when the rows are
    its tables (no copy of them, one memory budget), else on a private in-memory database
    (spilling to .courier/tmp) that their Arrow stream is copied into."""
    from courier.engines.duckdb import connect

    source = rows.native("duckdb")
    feeds = session.project.settings.feeds if session is not None else None
    if isinstance(source, DuckDBRows):
        limit = (feeds.memory_limit if feeds else None) or DEFAULT_MEMORY_LIMIT
        return StagingDestination(source.con, owns_connection=False, memory_limit=limit)
    if session is None or feeds is None:
        return StagingDestination(connect(":memory:"), owns_connection=True)
    # the engine's database holds the run's input meanwhile: the two share the budget
    limit = feeds.memory_limit or STAGE_MEMORY_LIMIT
    con = connect(":memory:", limit, feeds.threads)
    scratch = session.project.path(".courier/tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {literal(str(scratch))}")
    return StagingDestination(con, owns_connection=True, memory_limit=limit)


WRITER_SHARE = 0.5
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def limit_bytes(text: str) -> int | None:
    """A DuckDB memory limit ("1GB", "953.6 MiB", "500000000B") in bytes; None for one this
    does not read (e.g. a share of the machine's memory, "80%")."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*", text, re.IGNORECASE)
    if found is None:
        return None
    return int(float(found.group(1)) * _UNITS[(found.group(2) or "").upper()])
