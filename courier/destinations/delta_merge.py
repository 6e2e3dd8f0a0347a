"""Upsert into a Delta table on its primary key as copy-on-write, in one Delta commit.

delta-rs' MERGE holds its join's inputs in memory: 2.4-2.9 GB of peak RSS for a 200 MB window
and 6.2-6.7 GB for 1 GB (measured), and with a memory pool it fails ("Resources exhausted":
its hash join does not spill). This does the same upsert with DuckDB doing the joins in a
bounded buffer pool that spills, and delta-rs committing the file actions:

1. the source rows (one per key) are streamed into new Parquet files in the table's folder;
2. the keys of every file of the table are scanned (key columns only) and joined with the
   source's keys (read back from those new files): the files holding a replaced key, and how
   many rows they replace;
3. those files' other rows (an anti join on the keys) are streamed into new files;
4. one commit removes the replaced files and adds the new ones, carrying the run's
   application transaction and commit metadata (`create_write_transaction`).

A concurrent writer that removed one of the same files makes the commit fail as a conflict
(CommitFailedError), which the caller retries from a fresh snapshot. Files written by a
commit that did not happen are never referenced by the log (vacuum removes them). Added files
carry numRecords and nullCount statistics, not min/max (a reader then reads them instead of
skipping them; `courier feeds optimize` rewrites them with full statistics).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from deltalake import DeltaTable

MERGE_MEMORY_LIMIT = "256MB"  # DuckDB's buffer pool for the joins (it spills past this)
FILE_BYTES = 128 * 2**20  # a new file is closed past this size
FILE_COLUMN = "_courier_file"
# pyarrow's scanners read ahead 16 batches of 4 files by default: GBs of a large table at once
READAHEAD = {"batch_readahead": 2, "fragment_readahead": 1}


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
        cols = ", ".join(_quote(k) for k in keys)
        new = pads.dataset([a.path for a in added], filesystem=fs, format="parquet")
        con.register("new_files", new.scanner(columns=keys, **READAHEAD).to_reader())
        con.execute(f"CREATE TEMP TABLE new_keys AS SELECT {cols} FROM new_files")
        con.unregister("new_files")
        con.register("old_keys", _numbered(fragments, keys, table.schema))
        first = _quote(keys[0])
        hits = con.execute(  # each file holding a replaced key: its rows, and how many replaced
            f"SELECT o.{FILE_COLUMN}, count(*), count(n.{first}) FROM old_keys o "
            f"LEFT JOIN new_keys n USING ({cols}) GROUP BY o.{FILE_COLUMN} "
            f"HAVING count(n.{first}) > 0"
        ).fetchall()
        con.unregister("old_keys")
        replaced_files = [fragments[int(i)] for i, _, _ in hits]
        replaced = sum(int(n) for _, _, n in hits)
        # a file whose every row is replaced is only removed; the others' rows are kept
        partly = [fragments[int(i)] for i, rows, n in hits if n < rows]
        kept: list[Any] = []
        if partly:
            old = pads.FileSystemDataset(partly, table.schema, table.format, fs)
            con.register("old_rows", old.scanner(**READAHEAD).to_reader())
            rows = con.sql(
                f"SELECT o.* FROM old_rows o ANTI JOIN new_keys n USING ({cols})"
            ).to_arrow_reader()
            try:
                kept = write_files(fs, rows, schema)
            finally:
                rows.close()
                con.unregister("old_rows")
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    from deltalake.transaction import RemoveAction

    now = int(time.time() * 1000)
    removes = [RemoveAction(f.path, True, now) for f in replaced_files]
    dt.create_write_transaction(
        [*removes, *added, *kept],
        mode="append",
        schema=dt.schema(),
        commit_properties=commit_properties,
    )
    return replaced


def _numbered(fragments: list[Any], keys: list[str], schema: pa.Schema) -> pa.RecordBatchReader:
    """The key columns of every file, each row with its file's place in `fragments`."""
    out = pa.schema([schema.field(k) for k in keys] + [pa.field(FILE_COLUMN, pa.int32())])

    def batches() -> Iterator[pa.RecordBatch]:
        for i, fragment in enumerate(fragments):
            for batch in fragment.to_batches(columns=keys, schema=schema, **READAHEAD):
                index = pa.repeat(pa.scalar(i, pa.int32()), batch.num_rows)
                yield pa.RecordBatch.from_arrays([*batch.columns, index], schema=out)

    return pa.RecordBatchReader.from_batches(out, batches())


def write_files(fs: Any, reader: pa.RecordBatchReader, schema: pa.Schema) -> list[Any]:
    """The reader's rows (cast to `schema`) in new Parquet files at the table's root, each
    closed past FILE_BYTES; an AddAction for each."""
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    actions: list[Any] = []
    writer, out, name = None, None, ""

    def close() -> None:
        assert writer is not None and out is not None
        writer.close()
        size = out.tell()
        out.close()
        meta = writer.writer.metadata
        actions.append(
            AddAction(name, size, {}, int(time.time() * 1000), True, _stats(meta, schema))
        )

    for batch in reader:
        if not batch.num_rows:
            continue
        batch = batch.select(schema.names).cast(schema)
        if writer is None:
            name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
            out = fs.open_output_stream(name)
            writer = pq.ParquetWriter(out, schema, compression="snappy")
        writer.write_batch(batch)
        if out is not None and out.tell() >= FILE_BYTES:
            close()
            writer, out = None, None
    if writer is not None:
        close()
    return actions


def _stats(meta: Any, schema: pa.Schema) -> str:
    """Delta file statistics: numRecords, and nullCount where every row group counted them."""
    nulls: dict[str, int] = {}
    for c, name in enumerate(schema.names):
        total = 0
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(c).statistics
            if stats is None or not stats.has_null_count:
                break
            total += stats.null_count
        else:
            nulls[name] = total
    return json.dumps({"numRecords": meta.num_rows, "nullCount": nulls})


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
