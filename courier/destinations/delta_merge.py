"""Upsert into a Delta table on its primary key as copy-on-write, in one Delta commit.

delta-rs' MERGE holds its join's inputs in memory: 2.4-2.9 GB of peak RSS for a 200 MB window
and 6.2-6.7 GB for 1 GB (measured), and with a memory pool it fails ("Resources exhausted":
its hash join does not spill). This does the same upsert with DuckDB doing the joins in a
bounded buffer pool that spills, and delta-rs committing the file actions:

1. the source rows (one per key) are streamed into new Parquet files in the table's folder;
2. the keys of every file of the table are scanned (key columns only, each row numbered by
   its place in its file) and joined with the source's keys (read back from those new
   files): where the replaced rows are;
3. a file wholly replaced is only removed; the others holding a replaced row are read again
   and written to new files without the rows at those places (a mask, no second join);
4. one commit removes the replaced files and adds the new ones, carrying the run's
   application transaction and commit metadata (`create_write_transaction`).

A concurrent writer that removed one of the same files makes the commit fail as a conflict
(CommitFailedError), which the caller retries from a fresh snapshot. Files written by a
commit that did not happen are never referenced by the log (vacuum removes them). Added files
carry Delta statistics taken from the Parquet footer the writer just wrote (numRecords,
nullCount, and min/max where a bound is certain, so readers can skip files; see _bounds).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from courier.engines.duckdb import quote

if TYPE_CHECKING:
    from deltalake import DeltaTable

MERGE_MEMORY_LIMIT = "256MB"  # DuckDB's buffer pool for the joins (it spills past this)
FILE_BYTES = 128 * 2**20  # a new file is closed past this size
FILE_COLUMN = "_courier_file"
ROW_COLUMN = "_courier_row"
STATS_PREFIX = 32  # characters of a string kept in file statistics, as Spark's Delta writes
# pyarrow's scanners read ahead 16 batches of 4 files by default: GBs of a large table at once
READAHEAD: dict[str, Any] = {"batch_readahead": 2, "fragment_readahead": 1, "batch_size": 32_768}


def upsert(
    dt: DeltaTable,
    source: pa.RecordBatchReader,
    schema: pa.Schema,
    keys: list[str],
    commit_properties: Any,
) -> int:
    """Upsert `source` (one row per key, the table's columns) into `dt` in one commit; the
    number of the table's rows it replaced."""
    import duckdb
    import pyarrow.dataset as pads

    table = dt.to_pyarrow_dataset()
    fs = table.filesystem
    fragments = list(table.get_fragments())
    added = write_files(fs, source, schema)
    if not added:
        return 0  # caller commits an empty source as a transaction only
    scratch = tempfile.mkdtemp(prefix="courier-merge-")
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{MERGE_MEMORY_LIMIT}'")
        con.execute(f"SET temp_directory = '{scratch}'")
        con.execute("SET preserve_insertion_order = false")
        cols = ", ".join(quote(k) for k in keys)
        new = pads.dataset([a.path for a in added], filesystem=fs, format="parquet")
        con.register("new_files", new.scanner(columns=keys, **READAHEAD).to_reader())
        con.execute(f"CREATE TEMP TABLE new_keys AS SELECT {cols} FROM new_files")
        con.unregister("new_files")
        sizes: dict[int, int] = {}
        con.register("old_keys", _numbered(fragments, keys, table.schema, sizes))
        hits = con.sql(  # where the replaced rows are: file and row position, in order
            f"SELECT {FILE_COLUMN}, {ROW_COLUMN} FROM old_keys SEMI JOIN new_keys USING ({cols}) "
            f"ORDER BY {FILE_COLUMN}, {ROW_COLUMN}"
        ).to_arrow_table()
        con.unregister("old_keys")
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    import numpy as np

    files = hits.column(FILE_COLUMN).to_numpy()
    rows = hits.column(ROW_COLUMN).to_numpy()
    touched, starts, counts = np.unique(files, return_index=True, return_counts=True)
    replaced_files = [fragments[int(i)] for i in touched]
    # a file whose every row is replaced is only removed; the others are written again
    # without the replaced rows (picked by position: no second join over whole rows)
    partly = [
        (fragments[int(i)], rows[start : start + n])
        for i, start, n in zip(touched, starts, counts, strict=True)
        if n < sizes[int(i)]
    ]
    # kept rows keep the table's columns, those the feed no longer names included
    kept = write_files(fs, _without(partly, table.schema), table.schema) if partly else []
    from deltalake.transaction import RemoveAction

    now = int(time.time() * 1000)
    removes = [RemoveAction(f.path, True, now) for f in replaced_files]
    dt.create_write_transaction(
        [*removes, *added, *kept],
        mode="append",
        schema=dt.schema(),
        commit_properties=commit_properties,
    )
    return int(len(rows))


def _numbered(
    fragments: list[Any], keys: list[str], schema: pa.Schema, sizes: dict[int, int]
) -> pa.RecordBatchReader:
    """The key columns of every file, each row with its file's place in `fragments` and its
    own place in the file; `sizes` gets each file's row count."""
    import numpy as np

    place = [pa.field(FILE_COLUMN, pa.int32()), pa.field(ROW_COLUMN, pa.int64())]
    out = pa.schema([schema.field(k) for k in keys] + place)

    def batches() -> Iterator[pa.RecordBatch]:
        for i, fragment in enumerate(fragments):
            offset = 0
            for batch in fragment.to_batches(columns=keys, schema=schema, **READAHEAD):
                n = batch.num_rows
                file = pa.repeat(pa.scalar(i, pa.int32()), n)
                row = pa.array(np.arange(offset, offset + n, dtype=np.int64))
                offset += n
                yield pa.RecordBatch.from_arrays([*batch.columns, file, row], schema=out)
            sizes[i] = offset

    return pa.RecordBatchReader.from_batches(out, batches())


def _without(partly: list[tuple[Any, Any]], schema: pa.Schema) -> pa.RecordBatchReader:
    """The rows of each file but those at the given positions (sorted), read in the order
    _numbered numbered them."""
    import numpy as np

    def batches() -> Iterator[pa.RecordBatch]:
        for fragment, dropped in partly:
            offset = 0
            for batch in fragment.to_batches(schema=schema, **READAHEAD):
                n = batch.num_rows
                lo, hi = np.searchsorted(dropped, [offset, offset + n])
                keep = np.ones(n, dtype=bool)
                keep[dropped[lo:hi] - offset] = False
                offset += n
                yield batch.filter(pa.array(keep))

    return pa.RecordBatchReader.from_batches(schema, batches())


def write_files(fs: Any, reader: pa.RecordBatchReader, schema: pa.Schema) -> list[Any]:
    """The reader's rows (cast to `schema`) in new Parquet files at the table's root, each
    closed past FILE_BYTES; an AddAction for each."""
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    actions: list[Any] = []
    writer, out, name = None, None, ""
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    with_nan: set[str] = set()  # Parquet's min/max leave NaN out; Delta readers do not

    def close() -> None:
        assert writer is not None and out is not None
        writer.close()
        size = out.tell()
        out.close()
        meta = writer.writer.metadata
        stats = _stats(meta, schema, unbounded=with_nan)
        actions.append(AddAction(name, size, {}, int(time.time() * 1000), True, stats))
        with_nan.clear()

    for batch in reader:
        if not batch.num_rows:
            continue
        batch = batch.select(schema.names).cast(schema)
        if writer is None:
            name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
            out = fs.open_output_stream(name)
            writer = pq.ParquetWriter(out, schema, compression="snappy")
        writer.write_batch(batch)
        with_nan.update(f for f in floats if pc.any(pc.is_nan(batch.column(f))).as_py())
        if out is not None and out.tell() >= FILE_BYTES:
            close()
            writer, out = None, None
    if writer is not None:
        close()
    return actions


def _stats(meta: Any, schema: pa.Schema, unbounded: set[str]) -> str:
    """Delta file statistics from a Parquet footer: numRecords, nullCount where every row
    group counted them, and minValues/maxValues (_bounds) for every column that holds a value,
    or for none: delta-rs' pyarrow dataset reads a column missing from them as a bound of null
    and then skips the file for any filter on that column (measured: `amount > 1` found no
    rows), so a file where one column's bounds cannot be stated (`unbounded`, or see _bounds)
    states none."""
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    bounded = True
    groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
    for c, field in enumerate(schema):
        chunks = [(g.num_rows, g.column(c).statistics) for g in groups]
        if all(s is not None and s.has_null_count for _, s in chunks):
            nulls[field.name] = sum(s.null_count for _, s in chunks)
            if nulls[field.name] == meta.num_rows:
                continue  # nulls only: no bounds, and readers know it from nullCount
        low, high = (None, None) if field.name in unbounded else _bounds(field.type, chunks)
        if low is None or high is None:
            bounded = False
        else:
            lows[field.name], highs[field.name] = low, high
    stats: dict[str, Any] = {"numRecords": meta.num_rows}
    if bounded and lows:
        stats["minValues"], stats["maxValues"] = lows, highs
    stats["nullCount"] = nulls
    return json.dumps(stats)


def _bounds(kind: pa.DataType, chunks: list[tuple[int, Any]]) -> tuple[Any, Any]:
    """A column's lowest and highest value over its row groups, as Delta's statistics spell
    them; None where a bound cannot be stated safely (one a reader skips a file by must hold
    for every row). Strings are cut to STATS_PREFIX characters (the cut maximum's last
    character raised by one), timestamps widened to whole milliseconds (Delta's precision),
    decimals written as the nearest doubles outward; non-finite doubles are left out."""
    low = high = None
    for rows, s in chunks:
        if s is None or not s.has_min_max:
            if s is not None and s.has_null_count and s.null_count == rows:
                continue  # a row group of nulls only bounds nothing
            return None, None
        low = s.min if low is None else min(low, s.min)
        high = s.max if high is None else max(high, s.max)
    if low is None or high is None:
        return None, None
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        return low, high
    if pa.types.is_floating(kind):
        finite = math.isfinite(low) and math.isfinite(high)
        return (float(low), float(high)) if finite else (None, None)
    if pa.types.is_decimal(kind):
        return _double_outward(low, -math.inf), _double_outward(high, math.inf)
    if pa.types.is_date32(kind):
        return low.isoformat(), high.isoformat()
    if pa.types.is_timestamp(kind) and kind.tz in ("UTC", "+00:00"):
        floor = low.replace(microsecond=low.microsecond // 1000 * 1000)
        ceil = high.replace(microsecond=high.microsecond // 1000 * 1000)
        if ceil < high:
            ceil += timedelta(milliseconds=1)
        return _utc_millis(floor), _utc_millis(ceil)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return low[:STATS_PREFIX], _prefix_above(high)
    return None, None  # no other type is a feed column's


def _double_outward(value: Decimal, toward: float) -> float:
    """The double that spells `value` exactly (as repr writes it), else the next one past it
    toward `toward`: a bound a reader rounding to the column's scale still keeps."""
    near = float(value)
    return near if Decimal(repr(near)) == value else math.nextafter(near, toward)


def _utc_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _prefix_above(text: str) -> str | None:
    """text itself when short, else its first STATS_PREFIX characters with the last one
    raised by one: at least every string that starts with that prefix (None if it cannot
    be raised)."""
    if len(text) <= STATS_PREFIX:
        return text
    last = ord(text[STATS_PREFIX - 1]) + 1
    if last > 0x10FFFF or 0xD800 <= last <= 0xDFFF:
        return None
    return text[: STATS_PREFIX - 1] + chr(last)
