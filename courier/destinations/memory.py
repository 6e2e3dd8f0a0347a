"""An in-memory feed destination: Arrow tables in a dict, per destination name, for tests.

It is the proof that a destination is one module plus one registry line: it implements the
seam from courier.destinations.base on Arrow alone (no DuckDB), and passes the contract suite
in tests/destinations/contract.py. Tables live as long as the process.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from courier.destinations.base import (
    SYSTEM_COLUMNS,
    FeedDestination,
    FeedType,
    LoadContext,
    LoadResult,
    TLoadMode,
)
from courier.engines.base import LINE_COLUMN, RANK_COLUMN, Rows
from courier.errors import LoadError
from courier.plan import FeedCounts

if TYPE_CHECKING:
    from courier.backends import Session
    from courier.config.models import FeedConfig, MemoryDestinationConfig

RAW_LIMIT = 4096


@dataclass
class MemoryStore:
    tables: dict[str, pa.Table] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


STORES: dict[str, MemoryStore] = {}  # destination name -> its tables


def open_backend(name: str, config: MemoryDestinationConfig, session: Session) -> MemoryDestination:
    """Registry entry (courier.backends)."""
    return MemoryDestination(STORES.setdefault(name, MemoryStore()))


def feed_schema(feed: FeedConfig) -> pa.Schema:
    columns = {**feed.fields, **SYSTEM_COLUMNS}
    return pa.schema([(name, FeedType.parse(t).arrow()) for name, t in columns.items()])


class MemoryDestination(FeedDestination):
    type = "memory"

    def __init__(self, store: MemoryStore):
        self.store = store
        self.ctx: LoadContext | None = None
        self.pending: dict[str, pa.Table] = {}  # feed id -> its table as the run leaves it

    def begin(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.pending = {}
        self._truncated: set[str] = set()

    def _current(self, feed_id: str) -> pa.Table | None:
        if feed_id in self.pending:
            return self.pending[feed_id]
        return self.store.tables.get(feed_id)

    def ensure_table(self, feed: FeedConfig) -> list[str]:
        wanted = feed_schema(feed)
        table = self._current(feed.id)
        if table is None:
            self.pending[feed.id] = wanted.empty_table()
            return [f"created feed table {feed.id}"]
        changes = []
        for f in wanted:
            if f.name not in table.schema.names:
                table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
                changes.append(f"added column {feed.id}.{f.name} {f.type}")
            elif table.schema.field(f.name).type != f.type:
                old = table.schema.field(f.name).type
                try:
                    column = pc.cast(table[f.name], f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise LoadError(
                        f"feed {feed.id}: column {f.name} is {old} in the table but {f.type} "
                        f"in feeds/{feed.id}.toml and the stored values cannot be converted "
                        f"({exc}). Change the type back, or reload with --reload."
                    ) from exc
                table = table.set_column(table.schema.get_field_index(f.name), f.name, column)
                changes.append(f"changed column {feed.id}.{f.name} {old} -> {f.type}")
        self.pending[feed.id] = table.select(wanted.names)
        return changes

    def load(self, feed: FeedConfig, rows: Rows, mode: TLoadMode = "load") -> LoadResult:
        if self.ctx is None:
            raise LoadError(f"feed {feed.id}: load called outside a run (call begin first)")
        table = self._current(feed.id)
        if table is None:
            raise LoadError(f"feed {feed.id}: ensure_table was not called")
        deleted = 0
        if mode == "truncateAndLoad" and feed.id not in self._truncated:
            self._truncated.add(feed.id)
            deleted = table.num_rows
            table = table.schema.empty_table()
        incoming = rows.to_arrow().read_all()
        data = [c for c in incoming.schema.names if c not in (RANK_COLUMN, LINE_COLUMN)]
        by_lower = {c.lower(): c for c in data}
        matched = {f: f if f in data else by_lower.get(f.lower()) for f in feed.fields}
        used = {m for m in matched.values() if m}
        ignored = [c for c in data if c not in used]
        n = incoming.num_rows
        reasons: list[list[str]] = [[] for _ in range(n)]
        columns = {}
        for name, spelled in feed.fields.items():
            ftype = FeedType.parse(spelled)
            src = matched[name]
            if src is None:
                columns[name] = pa.nulls(n, ftype.arrow())
                if name in feed.not_null:
                    for r in reasons:
                        r.append(f"{name}: required field is missing")
                continue
            source = incoming[src].combine_chunks()
            cast, failed = cast_column(source, ftype)
            columns[name] = cast
            for i in failed:
                text = str(source[i].as_py())[:60]
                reasons[i].append(f"{name}: cannot cast {text} to {spelled}")
            if name in feed.not_null:
                for i in pc.indices_nonzero(pc.is_null(source)).to_pylist():
                    reasons[i].append(f"{name}: required field is null")
        if feed.unknown_columns == "reject":
            for col in ignored:
                for i in pc.indices_nonzero(pc.is_valid(incoming[col])).to_pylist():
                    reasons[i].append(f"{col}: column is not in feed {feed.id}")
        bad = [i for i, r in enumerate(reasons) if r]
        if bad:
            self._quarantine(feed, incoming, data, rows, bad, reasons)
        good = pa.table(columns).append_column(RANK_COLUMN, incoming[RANK_COLUMN])
        good = good.append_column(LINE_COLUMN, incoming[LINE_COLUMN])
        if bad:
            keep = pa.array([not r for r in reasons])
            good = good.filter(keep)
        if feed.primary_key:
            good = last_per_key(good, feed.primary_key)
            if table.num_rows and good.num_rows:
                before = table.num_rows
                table = table.join(
                    good.select(feed.primary_key), feed.primary_key, join_type="left anti"
                )
                deleted += before - table.num_rows
        ctx = self.ctx
        good = good.drop_columns([RANK_COLUMN, LINE_COLUMN])
        good = good.append_column("_courier_run_id", pa.array([ctx.run_id] * good.num_rows))
        good = good.append_column(
            "_courier_loaded_at",
            pa.array([ctx.loaded_at] * good.num_rows, pa.timestamp("us", tz="UTC")),
        )
        self.pending[feed.id] = pa.concat_tables(
            [table, good.select(table.schema.names).cast(table.schema)]
        )
        counts = FeedCounts(read=rows.count, loaded=good.num_rows, rejected=len(bad))
        counts.deleted = deleted
        return LoadResult(counts, ignored)

    def _quarantine(
        self,
        feed: FeedConfig,
        incoming: pa.Table,
        data: list[str],
        rows: Rows,
        bad: list[int],
        reasons: list[list[str]],
    ) -> None:
        assert self.ctx is not None
        if self.ctx.quarantine is None:
            return
        keys = {f.rank: f.key for f in rows.files or []}
        subset = incoming.take(pa.array(bad))
        records = subset.select(data).to_pylist()
        table = pa.table(
            {
                "file": [keys.get(r) for r in subset[RANK_COLUMN].to_pylist()],
                "line": subset[LINE_COLUMN],
                "reason": ["; ".join(reasons[i]) for i in bad],
                "raw": [json.dumps(r, default=str)[:RAW_LIMIT] for r in records],
            }
        )
        self.ctx.quarantine.quarantine_arrow(self.ctx.run_id, self.ctx.courier, feed.id, table)

    def commit(self, run_id: str) -> None:
        with self.store.lock:
            if run_id in self.store.commits:
                return
            if self.ctx is None or self.ctx.run_id != run_id:
                raise LoadError(f"run {run_id} has no open load to commit")
            self.store.tables.update(self.pending)
            self.store.commits.add(run_id)
        self.pending = {}
        self.ctx = None

    def abort(self) -> None:
        self.pending = {}
        self.ctx = None

    def committed(self, run_id: str) -> bool:
        return run_id in self.store.commits

    def row_count(self, feed_id: str) -> int | None:
        table = self.store.tables.get(feed_id)
        return None if table is None else int(table.num_rows)

    def sample(self, feed_id: str, limit: int) -> list[dict[str, object]]:
        table = self.store.tables.get(feed_id)
        return [] if table is None else table.slice(0, limit).to_pylist()

    def table(self, feed_id: str) -> pa.Table | None:
        """The committed feed table (tests read it)."""
        return self.store.tables.get(feed_id)


def last_per_key(table: pa.Table, keys: list[str]) -> pa.Table:
    """Of rows sharing a key, the last by (rank, line)."""
    table = table.sort_by([(RANK_COLUMN, "ascending"), (LINE_COLUMN, "ascending")])
    table = table.append_column("_pos", pa.array(range(table.num_rows), pa.int64()))
    last = table.group_by(keys, use_threads=False).aggregate([("_pos", "max")])
    keep = pc.is_in(table["_pos"], value_set=last["_pos_max"])
    return table.filter(keep).drop_columns(["_pos"])


def cast_column(column: pa.Array, ftype: FeedType) -> tuple[pa.Array, list[int]]:
    """The column as ftype's Arrow type, and the rows whose value could not be cast (null)."""
    target = ftype.arrow()
    kind = column.type
    nested = pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_map(kind)
    if ftype.kind == "json" or (ftype.kind == "string" and nested):
        if pa.types.is_string(kind) and ftype.kind == "json":
            return column, []
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()],
            pa.string(),
        ), []
    if ftype.kind == "timestamp" and pa.types.is_integer(kind):
        ms = pc.cast(column, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        return pc.cast(ms, target), []
    if ftype.kind == "decimal" and pa.types.is_floating(kind):
        column = pc.round(column, ftype.scale or 0)
    try:
        return pc.cast(column, target), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[Any] = []
    failed = []
    for i, v in enumerate(column.to_pylist()):  # the slow path: only for a column that failed
        try:
            values.append(None if v is None else cast_value(v, ftype, target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, ArithmeticError):
            values.append(None)
            failed.append(i)
    return pa.array(values, target), failed


def cast_value(value: Any, ftype: FeedType, target: pa.DataType) -> Any:
    if ftype.kind == "decimal":
        value = Decimal(str(value)).quantize(Decimal(1).scaleb(-(ftype.scale or 0)))
    return pc.cast(pa.array([value]), target)[0].as_py()
