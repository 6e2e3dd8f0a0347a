"""CBOR, XML and JSON-document landings decoded on the cluster, into the lines the NDJSON path
reads.

The Spark engine reads each such file as one binary value (`binaryFile`) and hands it to
`decode_batches` in the cluster's Python workers (`mapInArrow`): courier's own reader for the
format (courier/formats) writes the file's rows as JSON lines, exactly as the DuckDB engine's
transcoder does, and each line becomes a row with the file's rank and the line's number. From
there the window takes the NDJSON path (parse, query, casts, dedupe, write), so both engines load
the same rows and name the same lines. An item the reader cannot take becomes a row whose value
is `BAD_MARK` and its reason and raw bytes as JSON, which the parse counts as a bad line; courier
turns the bounded sample it fetches back into BadRecords (`bad_record`).

The workers import this module and courier's readers: the cluster's Python needs courier
installed (README: "Formats").
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from courier.engines.base import LINE_COLUMN as LINE
from courier.engines.base import RANK_COLUMN as RANK

BAD_MARK = "\x00courier-bad-item\x00"  # a value no JSON line starts with (a NUL byte)
CONTENT, KEY = "content", "_courier_key"
PIECE = "_courier_piece"  # 1 on the first row of each file (spark.PIECE)
SCHEMA = f"value string, {LINE} bigint, {RANK} int, {PIECE} int"


def decode_batches(batches: Iterator[Any], fmt: str, options: dict[str, Any]) -> Iterator[Any]:
    """mapInArrow: batches of (content, RANK, KEY), a whole file a row, to batches of SCHEMA:
    the file's JSON lines numbered from 1 (PIECE 1 on each file's first row, as a whole-file
    NDJSON read gives), then its bad items at their item numbers."""
    from courier.formats.base import get_reader
    from courier.formats.options import TreeOptions

    reader: Any = get_reader(fmt)
    opts = TreeOptions.from_options(options)
    for batch in batches:
        for content, rank, key in zip(
            batch.column(CONTENT).to_pylist(),
            batch.column(RANK).to_pylist(),
            batch.column(KEY).to_pylist(),
            strict=True,
        ):
            yield from decode_file(reader, opts, content or b"", key, rank)


BATCH_LINES = 65_536  # rows of one output batch: each stays far below 2 GiB of string data


def decode_file(reader: Any, options: Any, content: bytes, key: str, rank: int) -> Iterator[Any]:
    """One file's rows (RecordBatches of SCHEMA): its JSON lines, split by Arrow (no Python
    object a line), then its bad items."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from courier.plan import InputFile

    folder = Path(tempfile.mkdtemp(prefix="courier-decode-"))
    try:
        source = folder / "input"
        source.write_bytes(content)  # the readers read files (and decode them in chunks)
        lines, bad = reader.json_lines_in_memory(InputFile(key, source, len(content)), options)
        values: Any = pa.array([], pa.large_string())
        if lines:
            text = pa.array([lines], pa.large_binary()).cast(pa.large_string())
            values = pc.list_flatten(pc.split_pattern(text, "\n"))
            if len(values) and not pc.binary_length(values[-1]).as_py():
                values = values.slice(0, len(values) - 1)  # after the last line's newline
        numbers = np.arange(1, len(values) + 1, dtype=np.int64)
        if bad:
            marks = [BAD_MARK + json.dumps([r.reason, r.raw]) for r in bad]
            values = pa.concat_arrays([values, pa.array(marks, pa.large_string())])
            numbers = np.concatenate([numbers, np.array([r.line or 0 for r in bad], np.int64)])
        for start in range(0, len(values), BATCH_LINES):
            size = min(BATCH_LINES, len(values) - start)
            piece = np.zeros(size, np.int32)
            piece[0] = 1 if start == 0 else 0
            yield pa.RecordBatch.from_arrays(
                [
                    values.slice(start, size).cast(pa.string()),
                    pa.array(numbers[start : start + size]),
                    pa.array(np.full(size, rank, np.int32)),
                    pa.array(piece),
                ],
                names=["value", LINE, RANK, PIECE],
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bad_record(text: str) -> tuple[str, str] | None:
    """The (reason, raw) of a bad-item row's value; None for any other line."""
    if not text.startswith(BAD_MARK):
        return None
    reason, raw = json.loads(text[len(BAD_MARK) :])
    return str(reason), str(raw)
