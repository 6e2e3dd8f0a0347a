"""Decoded trees (CBOR items, JSON documents, XML documents) into rows an engine can read.

TreeReader is the base of the cbor, json and xml readers: a subclass yields a file's items
(numbered from 1 in file order) and its undecodable items as BadRecords; this module turns
items into rows — `record_path` picks the records inside an item, anything that is not a map
is a bad record — and rows into one of two outputs, in batches of BATCH_ROWS:

- JSON lines (`json_lines`, what the DuckDB engine uses by default): rows re-encoded with
  orjson into one NDJSON file per input file, which the engine reads with its NDJSON reader.
  Type inference, STRUCT/LIST shapes and timestamp detection are then exactly those of the
  NDJSON path, so a query reads the same columns whether the records came as NDJSON, CBOR,
  JSON or XML.
- Arrow record batches (`batches`, the BatchReader interface): pyarrow infers struct and list
  types from the rows; a column whose values cannot share one Arrow type holds JSON text.

Values JSON has no word for follow RFC 8949 section 6.1: byte strings become base64url
strings, tags their content, undefined and other simple values null; decimals and integers
beyond 64 bits keep all their digits as JSON numbers.
"""

from __future__ import annotations

import abc
import base64
import datetime as dt
import decimal
import gc
import io
import ipaddress
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa

from courier.formats.base import BATCH_ROWS, BatchReader
from courier.formats.options import TreeOptions
from courier.plan import BadRecord, InputFile

FILE_COLUMN = "_courier_file"  # the engines' name for the source-file column
RAW_LIMIT = 4096  # characters of a bad item kept in quarantine
JSON_BATCH_ROWS = 4096  # encoded rows written to the NDJSON file at a time
PARALLEL_MIN_BYTES = 32 * 1024 * 1024  # below this, no decode helper (one takes ~0.7 s to start)

Item = tuple[int, Any]  # (item number in its file, decoded value)


def whole_document(
    file: InputFile, options: TreeOptions, kind: str, hint: str = ""
) -> bytes | BadRecord | None:
    """A one-document file's bytes; a BadRecord when it is over options.max_document_bytes,
    None when it holds nothing but whitespace."""
    size = file.path.stat().st_size
    if size > options.max_document_bytes:
        return BadRecord(
            file.key,
            None,
            f"the {kind} document is {size} bytes, over options.max_document_bytes = "
            f"{options.max_document_bytes}{hint}",
            "",
        )
    data = file.path.read_bytes()
    return data if data.strip() else None


class TreeReader(BatchReader):
    """A reader of formats that decode to trees of maps, lists and scalars."""

    @abc.abstractmethod
    def items(self, file: InputFile, options: TreeOptions) -> Iterator[Item | BadRecord]:
        """The file's items in order; undecodable ones as BadRecords numbered like the rest."""

    # -- rows ---------------------------------------------------------------------------------
    def rows(
        self, file: InputFile, options: TreeOptions, batch_rows: int | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], list[int], list[BadRecord]]]:
        """(rows, their item numbers, bad records), at most batch_rows (default BATCH_ROWS)
        rows at a time."""
        limit = batch_rows or BATCH_ROWS
        rows: list[dict[str, Any]] = []
        numbers: list[int] = []
        bad: list[BadRecord] = []
        path = options.record_path
        for entry in self.items(file, options):
            if isinstance(entry, BadRecord):
                bad.append(entry)
                continue
            number, value = entry
            if not path and type(value) is dict:
                rows.append(value)
                numbers.append(number)
            else:
                extract(value, number, path, file.key, rows, numbers, bad)
            if len(rows) >= limit:
                yield rows, numbers, bad
                rows, numbers, bad = [], [], []
        if rows or bad:
            yield rows, numbers, bad

    # -- outputs ------------------------------------------------------------------------------
    def batches(
        self, files: list[InputFile], options: Mapping[str, Any]
    ) -> Iterator[tuple[pa.RecordBatch | pa.Table | None, list[BadRecord]]]:
        """Arrow tables, one file at a time, with the file's local path in FILE_COLUMN."""
        opts = TreeOptions.from_options(options)
        for f in files:
            with _gc_paused():
                for rows, _numbers, bad in self.rows(f, opts):
                    yield (rows_to_arrow(rows, str(f.path)) if rows else None), bad

    def json_lines(
        self, files: list[InputFile], options: Mapping[str, Any], out_dir: Path
    ) -> Iterator[tuple[InputFile | None, list[BadRecord]]]:
        """Write each file's rows as NDJSON into out_dir; yield, in file order, the written
        file (None when the file held no rows) with the file's bad records.

        Decoding is Python work on one core; a window of several files and at least
        PARALLEL_MIN_BYTES is decoded by this process and options.decode_workers - 1 helper
        processes (courier/formats/worker.py), each file by one of them."""
        opts = TreeOptions.from_options(options)
        workers = min(opts.decode_workers, len(files))
        if workers < 2 or sum(f.size for f in files) < PARALLEL_MIN_BYTES:
            for i, f in enumerate(files):
                yield self.transcode(i, f, opts, out_dir)
            return
        from courier.formats.worker import run_workers

        yield from run_workers(self, files, opts, out_dir, workers)

    def transcode(
        self, index: int, file: InputFile, options: TreeOptions, out_dir: Path
    ) -> tuple[InputFile | None, list[BadRecord]]:
        """One file's rows as NDJSON in out_dir (see json_lines)."""
        target = out_dir / f"{index:06d}-{Path(file.key).name}.ndjson"
        bad: list[BadRecord] = []
        keys: set[str] = set()
        with open(target, "wb") as out, _gc_paused():
            written = self.write_lines(file, options, out, bad, keys)
        if written:
            size = target.stat().st_size
            return InputFile(file.key, target, size, records=written, keys=frozenset(keys)), bad
        target.unlink()
        return None, bad

    def json_lines_in_memory(
        self, file: InputFile, options: TreeOptions
    ) -> tuple[bytes, list[BadRecord]]:
        """One file's rows as JSON lines in memory (a Spark worker's decode, which hands them
        on as Arrow: no file written and read back), with the file's bad records."""
        out, bad = io.BytesIO(), list[BadRecord]()
        with _gc_paused():
            self.write_lines(file, options, out, bad)
        return out.getvalue(), bad

    def write_lines(
        self,
        file: InputFile,
        options: TreeOptions,
        out: IO[bytes],
        bad: list[BadRecord],
        keys: set[str] | None = None,
    ) -> int:
        """Write the file's rows to out as JSON lines; the number of rows written. `keys`
        gains the rows' top-level keys (a superset: perhaps a key of a row found bad)."""
        return write_entries(
            self.items(file, options), options.record_path, file.key, out, bad, keys
        )


def write_entries(
    entries: Iterable[Item | BadRecord],
    path: tuple[str, ...],
    key: str,
    out: IO[bytes],
    bad: list[BadRecord],
    keys: set[str] | None = None,
) -> int:
    """Items' rows as JSON lines to out (bad ones to bad), their top-level keys into `keys`;
    the number of rows written. Each row is encoded as soon as it is decoded and only its
    bytes are kept: a decoded tree lives for one item, which keeps the CPU caches warm (twice
    as fast as encoding batches of decoded rows)."""
    lines: list[bytes] = []
    written = 0
    dumps, default = orjson.dumps, json_default
    for entry in entries:
        if type(entry) is BadRecord:
            bad.append(entry)
            continue
        number, value = entry  # type: ignore[misc]
        if not path and type(value) is dict:
            try:
                lines.append(dumps(value, default=default))
                if keys is not None:
                    keys.update(value)
            except (TypeError, orjson.JSONEncodeError):
                encode_slowly(value, number, key, lines, bad, keys)
        else:
            rows: list[dict[str, Any]] = []
            extract(value, number, path, key, rows, [], bad)
            for row in rows:
                try:
                    lines.append(dumps(row, default=default))
                    if keys is not None:
                        keys.update(row)
                except (TypeError, orjson.JSONEncodeError):
                    encode_slowly(row, number, key, lines, bad, keys)
        if len(lines) >= JSON_BATCH_ROWS:
            lines.append(b"")
            out.write(b"\n".join(lines))
            written += len(lines) - 1
            lines = []
    if lines:
        lines.append(b"")
        out.write(b"\n".join(lines))
        written += len(lines) - 1
    return written


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Decoding builds millions of small maps and lists that hold no cycles; the cyclic
    garbage collector, triggered by every few hundred allocations, would walk the batch
    again and again (it halves decoding speed). Paused while decoding, as before after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- records inside an item -------------------------------------------------------------------
class _NoPath(Exception):
    pass


def extract(
    value: Any,
    number: int,
    path: tuple[str, ...],
    key: str,
    rows: list[dict[str, Any]],
    numbers: list[int],
    bad: list[BadRecord],
) -> None:
    """Append the records of one item (the maps found at `path`) to rows; the rest to bad."""
    where = ".".join(path)
    if not path:
        bad.append(BadRecord(key, number, f"item {number} is {kind(value)}, not a map", raw(value)))
        return
    try:
        found = list(descend(value, path))
    except _NoPath as exc:
        bad.append(
            BadRecord(
                key,
                number,
                f"item {number} has no {where!r} ({exc}); check options.record_path",
                raw(value),
            )
        )
        return
    for k, record in enumerate(found, start=1):
        if type(record) is dict or isinstance(record, dict):
            rows.append(record)
            numbers.append(number)
        else:
            bad.append(
                BadRecord(
                    key,
                    number,
                    f"item {number}, record {k} at {where!r} is {kind(record)}, not a map",
                    raw(record),
                )
            )


def descend(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """What sits at `path` below node: lists on the way are walked element by element (XML
    repeats elements as lists), a final list gives its elements, None (an empty element)
    gives nothing; a missing step raises _NoPath."""
    if not path:
        if isinstance(node, list):
            yield from (n for n in node if n is not None)
        elif node is not None:
            yield node
        return
    if node is None:
        return
    if isinstance(node, list):
        for element in node:
            yield from descend(element, path)
        return
    if not isinstance(node, dict):
        raise _NoPath(f"found {kind(node)} where {path[0]!r} was expected")
    if path[0] not in node:
        keys = ", ".join(repr(k) for k in list(node)[:10])
        raise _NoPath(f"no key {path[0]!r} among {keys or 'no keys'}")
    yield from descend(node[path[0]], path[1:])


def force_lists(node: Any, keys: frozenset[str]) -> Any:
    """Make the values of `keys` lists everywhere in a tree (xmltodict's force_list by name)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for k, v in current.items():
                if k in keys and not isinstance(v, list):
                    current[k] = v = [v]
                if isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(current, list):
            stack.extend(v for v in current if isinstance(v, dict | list))
    return node


def kind(value: Any) -> str:
    names = {
        list: "an array",
        tuple: "an array",
        str: "a string",
        bytes: "a byte string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def raw(value: Any) -> str:
    """A bad item's text for quarantine: JSON where possible, else its repr; truncated."""
    try:
        text = orjson.dumps(value, default=json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    return text[:RAW_LIMIT]


# -- JSON lines -------------------------------------------------------------------------------
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def json_default(obj: Any) -> Any:
    """orjson's fallback for values a CBOR/XML decoder produces and JSON has no type for."""
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.urlsafe_b64encode(bytes(obj)).rstrip(b"=").decode("ascii")
    if isinstance(obj, decimal.Decimal):
        return orjson.Fragment(str(obj)) if obj.is_finite() else None
    if isinstance(obj, Fraction):
        return obj.numerator / obj.denominator
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, ipaddress._BaseAddress | ipaddress._BaseNetwork | uuid.UUID):
        return str(obj)
    value = getattr(obj, "value", _MISSING)  # cbor2 CBORTag: the tag's content
    if value is not _MISSING and hasattr(obj, "tag"):
        return value
    if type(obj).__name__ in ("CBORSimpleValue", "UndefinedType", "BreakMarkerType"):
        return None
    return str(obj)


_MISSING = object()


def sanitize(value: Any) -> Any:
    """A copy orjson can always encode: integers beyond 64 bits as exact JSON numbers, map
    keys as strings, every other odd value through json_default."""
    if isinstance(value, dict | Mapping):
        return {(k if isinstance(k, str) else _key_text(k)): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitize(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else orjson.Fragment(str(value))
    if isinstance(value, dt.date | dt.time | uuid.UUID):
        return value
    converted = json_default(value)
    if converted is None or isinstance(converted, str | orjson.Fragment):
        return converted
    return sanitize(converted)


def _key_text(key: Any) -> str:
    if isinstance(key, bytes | bytearray):
        return base64.urlsafe_b64encode(bytes(key)).rstrip(b"=").decode("ascii")
    if isinstance(key, bool) or key is None:
        return orjson.dumps(key).decode()
    return str(key)


def encode_slowly(
    row: Any,
    number: int,
    key: str,
    lines: list[bytes],
    bad: list[BadRecord],
    keys: set[str] | None = None,
) -> None:
    """A row orjson refused at first (an integer beyond 64 bits, a non-string map key):
    sanitized, or a bad record when even that fails."""
    try:
        clean = sanitize(row)
        lines.append(orjson.dumps(clean, default=json_default))
        if keys is not None and isinstance(clean, dict):
            keys.update(clean)
    except (TypeError, ValueError, orjson.JSONEncodeError, RecursionError) as exc:
        bad.append(BadRecord(key, number, f"item {number} cannot be read as JSON: {exc}", raw(row)))


def encode_lines(
    rows: list[dict[str, Any]], numbers: list[int], key: str, bad: list[BadRecord]
) -> tuple[bytes, int]:
    """NDJSON text for rows (one line each) and how many lines; rows that cannot be encoded
    even after sanitizing go to bad."""
    lines: list[bytes] = []
    for row, number in zip(rows, numbers, strict=True):
        try:
            lines.append(orjson.dumps(row, default=json_default))
        except (TypeError, orjson.JSONEncodeError):
            encode_slowly(row, number, key, lines, bad)
    if not lines:
        return b"", 0
    lines.append(b"")
    return b"\n".join(lines), len(lines) - 1


# -- Arrow ------------------------------------------------------------------------------------
def rows_to_arrow(rows: list[dict[str, Any]], file: str | None = None) -> pa.Table:
    """A table from maps, with every key of every row as a column (pyarrow's from_pylist
    would take the first row's keys only); a column whose values Arrow cannot type as one
    (a number here, a map there) holds their JSON text."""
    table = _columnwise(rows)
    if file is not None:
        files = pa.array([file] * len(rows), pa.string())
        if table.num_columns == 0:  # rows that are all empty maps
            return pa.Table.from_arrays([files], names=[FILE_COLUMN])
        table = table.append_column(FILE_COLUMN, files)
    return table


def _columnwise(rows: list[dict[str, Any]]) -> pa.Table:
    names: dict[str, None] = {}
    for row in rows:
        for k in row:
            names.setdefault(k if isinstance(k, str) else _key_text(k), None)
    columns = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            array = pa.array(values)
            if _unsupported(array.type):
                raise pa.ArrowInvalid("empty struct")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            array = pa.array(
                [
                    None if v is None else orjson.dumps(sanitize(v), default=json_default).decode()
                    for v in values
                ],
                pa.string(),
            )
        columns.append(array)
    return pa.Table.from_arrays(columns, names=list(names))


def _unsupported(typ: pa.DataType) -> bool:
    """Types the engine cannot hold: structs without fields (from `{}` values)."""
    if pa.types.is_struct(typ):
        return typ.num_fields == 0 or any(
            _unsupported(typ.field(i).type) for i in range(typ.num_fields)
        )
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _unsupported(typ.value_type)
    return False
