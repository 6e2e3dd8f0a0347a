"""DuckDB query engine: reads the window's files (NDJSON natively, other formats as Arrow
batches) into per-run temp tables, and runs saved queries over them."""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import tempfile
import time
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from courier.engines.base import LINE_COLUMN, RANK_COLUMN, QueryEngine, Rows, WindowFile
from courier.engines.remembered_order import remembered_record_order
from courier.errors import DatabaseLockedError, LoadError, QueryError
from courier.formats import base as formats
from courier.formats.limits import ColumnBudget, keys_collide
from courier.formats.ndjson import scan_ndjson
from courier.plan import BadRecord, InputFile, InputSummary
from courier.project import SavedQuery

if TYPE_CHECKING:
    import pyarrow as pa

    from courier.backends import Session
    from courier.config.models import DuckDBEngineConfig
    from courier.storage.base import StorageBackend

FILE_COLUMN = "_courier_file"
FILE_NAMES = "_courier_file_names"
ORDER_COLUMN = "_courier_ord"  # record order across Arrow batches
DEFAULT_MEMORY_LIMIT = "1GB"  # DuckDB buffer pool; the process stays ~200 MB above
SAMPLE_RECORDS = 20_480  # DuckDB's default JSON sample, shared by a window's files
SAMPLE_MIN_PER_FILE = 2_048
STEADY_SAMPLE_PER_FILE = 128  # a pinned schema is checked against this much of each file
MAX_COLUMNS = 500  # options.max_columns: top-level columns a file tag holds at most
MAX_LINE_BYTES = 16 * 1024 * 1024  # read_json's maximum_object_size: a longer line is careful
MAX_LOCATED = 100  # records DuckDB names one at a time once the line scan found no more
_ids = itertools.count(1)
log = logging.getLogger(__name__)
_LOCATED = re.compile(r'in file "(.*?)",? (?:at byte \d+ )?in line (\d+)')
_MISSING_KEY = re.compile(r'Could not find key "([^"]+)" in struct')


class _CheckRecords(Exception):
    """The window's top-level keys say some record may be one DuckDB cannot load."""


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(
    path: Path | str,
    memory_limit: str | None = None,
    threads: int | None = None,
    lock_timeout: float = 0.0,
) -> duckdb.DuckDBPyConnection:
    """Open the feed database (creating its folder). While another process holds its lock,
    wait up to lock_timeout seconds, then raise DatabaseLockedError naming that process."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            con = duckdb.connect(str(path))
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise LoadError(f"cannot open the feed database {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise DatabaseLockedError(
                    f"the feed database {path} is held by {lock_holder(str(exc))}, e.g. an "
                    "open DuckDB session or another courier run; waited "
                    f"{lock_timeout:g} s ([feeds] lock_timeout). Close that session (or let "
                    "the run finish) and run again"
                ) from exc
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    con.execute("SET TimeZone = 'UTC'")
    # SPEC 7: peak RSS under 1.5 GB whatever the window; past this, DuckDB spills to
    # <database>.tmp. [feeds] memory_limit raises (or lowers) it.
    con.execute(f"SET memory_limit = {literal(memory_limit or DEFAULT_MEMORY_LIMIT)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


_HOLDER = re.compile(r"lock is held in (.*?) \(PID (\d+)\)")


ROWS_PER_STATEMENT = 256


def each_values(rows: list[tuple[Any, ...]], width: int) -> Iterator[tuple[str, list[Any]]]:
    """rows (tuples of `width` values) in chunks, each as a SQL source `(VALUES (?, ...), ...)
    AS v(c0, c1, ...)` with its parameters: one statement takes a chunk, where executemany
    runs one per row (~1 ms each: 3.6 s for the courier.files rows of a 2,400-file window),
    and no Arrow table is made of Python values (pyarrow imports pandas for that: 0.4 s)."""
    names = ", ".join(f"c{i}" for i in range(width))
    one = "(" + ", ".join(["?"] * width) + ")"
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        values = ", ".join([one] * len(chunk))
        yield f"(VALUES {values}) AS v({names})", [v for row in chunk for v in row]


def lock_holder(message: str) -> str:
    """The process DuckDB names as holding a database's lock: its command line and pid."""
    found = _HOLDER.search(message)
    if found is None:
        return "another process"
    program, pid = found.group(1), found.group(2)
    try:  # the whole command line tells a courier run from an analyst's session
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        program = cmdline.decode(errors="replace")[:200] or program
    except OSError:
        pass
    return f"another process on this host: pid {pid} ({program})"


def describe(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {sql}").fetchall()}


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()
    return bool(row and row[0])


def arrow_relation(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    """A query as a relation to read Arrow from (the last execute() result finished first)."""
    con.complete()
    return con.sql(sql)


def feeds_connection(session: Session, database: str | None = None) -> duckdb.DuckDBPyConnection:
    """The workspace's connection to a feed database ([feeds] database by default): the DuckDB
    engine, destination and state of one workspace share it, and so one transaction."""
    project = session.project
    feeds = project.settings.feeds
    path = project.path(database or feeds.database)
    return session.share(  # type: ignore[no-any-return]
        ("duckdb", str(path.resolve())),
        lambda: connect(path, feeds.memory_limit, feeds.threads, feeds.lock_timeout),
        lambda con: con.close(),
    )


def open_backend(name: str, config: DuckDBEngineConfig, session: Session) -> DuckDBEngine:
    """Registry entry (courier.backends): the engine on the workspace's feed database."""
    return DuckDBEngine(
        feeds_connection(session),
        session.project.path(".courier/tmp"),
        record_order=True,
        cache_root=session.project.path(".courier/cache/record-order"),
    )


class DuckDBRows(Rows):
    """Rows in a DuckDB table or view on the engine's connection, in rowid order.

    file_column: each row's local file (read tags; FILE_NAMES maps it to its storage key).
    ordered: the rows carry RANK_COLUMN and LINE_COLUMN, the place of the input record each
    came from (a query's rows, engines/record_order.py); `files` then names the ranks."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        columns: dict[str, str],
        rows: int,
        file_column: str | None = None,
        files: list[WindowFile] | None = None,
        ranks: dict[str, int] | None = None,
        ordered: bool = False,
    ):
        self.con = con
        self.name = name
        self.columns = columns  # column -> DuckDB type (file_column included)
        self.rows = rows
        self.file_column = file_column
        self._files = files
        self._ranks = ranks or {}  # storage key -> the file's rank
        self.ordered = ordered

    @property
    def count(self) -> int:
        return self.rows

    @property
    def files(self) -> list[WindowFile] | None:
        return self._files

    @property
    def visible(self) -> list[str]:
        hidden = {self.file_column, *((RANK_COLUMN, LINE_COLUMN) if self.ordered else ())}
        return [c for c in self.columns if c not in hidden]

    @property
    def schema(self) -> pa.Schema:
        cols = ", ".join(quote(c) for c in self.visible) or "NULL AS _empty"
        sql = f"SELECT {cols} FROM {quote(self.name)} LIMIT 0"
        return arrow_relation(self.con, sql).to_arrow_table().schema

    def to_arrow(self) -> pa.RecordBatchReader:
        cols = ", ".join(f"s.{quote(c)}" for c in self.visible)
        cols = cols + ", " if cols else ""
        if self.ordered:
            sql = (
                f"SELECT {cols}s.{RANK_COLUMN}, s.{LINE_COLUMN} FROM {quote(self.name)} s "
                f"ORDER BY s.{RANK_COLUMN} NULLS FIRST, s.{LINE_COLUMN}, s.rowid"
            )
        elif self.file_column and self._ranks:
            fc = f"s.{quote(self.file_column)}"
            ranks = ", ".join(f"({literal(k)}, {r})" for k, r in self._ranks.items())
            sql = (
                f"SELECT {cols}CAST(coalesce(r.rank, 0) AS INTEGER) AS {RANK_COLUMN}, "
                f"CAST(row_number() OVER (PARTITION BY {fc} ORDER BY s.rowid) AS BIGINT) "
                f"AS {LINE_COLUMN} FROM {quote(self.name)} s "
                f"LEFT JOIN (SELECT DISTINCT path, key FROM {FILE_NAMES}) n "
                f"ON n.path = CAST({fc} AS VARCHAR) "
                f"LEFT JOIN (VALUES {ranks}) r(key, rank) ON r.key = n.key "
                f"ORDER BY {RANK_COLUMN}, {LINE_COLUMN}"
            )
        else:
            sql = (
                f"SELECT {cols}CAST(0 AS INTEGER) AS {RANK_COLUMN}, CAST(s.rowid + 1 AS BIGINT) "
                f"AS {LINE_COLUMN} FROM {quote(self.name)} s ORDER BY s.rowid"
            )
        return arrow_relation(self.con, sql).to_arrow_reader()

    def native(self, kind: str) -> Any:
        return self if kind == "duckdb" else None


@dataclass
class StreamedTag:
    """A tag read straight from its NDJSON files by the one query that uses it; kept so the
    tag can still be held in a table when that query meets a value the schema cannot read."""

    table: str
    files: list[InputFile]
    options: dict[str, Any]
    pinned: dict[str, str] | None
    summary: InputSummary


class DuckDBEngine(QueryEngine):
    dialect = "duckdb"
    FETCH_THREADS = 8  # parallel downloads of a remote window

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        scratch_root: Path | None = None,
        record_order: bool = False,
        cache_root: Path | None = None,
    ):
        self.con = con
        self.scratch_root = scratch_root  # where remote files are downloaded (None: system tmp)
        self.cache_root = cache_root  # the queries' record-order edits (record_order.py)
        # record_order: a query's rows carry the file rank and line of their input record
        # (runs; the analyst's previews keep the query's own columns and order)
        self.record_order = record_order
        self.tags: dict[str, DuckDBRows] = {}
        self.streamed: dict[str, StreamedTag] = {}
        self.scratch: list[Path] = []  # transcoded files a streamed tag reads until close()
        self._keys: dict[str, str] = {}  # local path -> storage key
        # a streamed tag's view: (its paths, their schema, records per path)
        self._scans: dict[str, tuple[list[str], dict[str, str], list[int]]] = {}
        # a scanned file's clean copy: its records' line numbers in the landed file
        self._lines: dict[str, array[int]] = {}

    def close(self) -> None:
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)
        self.scratch.clear()

    # -- inputs ---------------------------------------------------------------------------------
    def read_input(
        self,
        tag: str,
        files: list[WindowFile],
        storage: StorageBackend,
        fmt: str,
        options: dict[str, Any],
        pinned_schema: dict[str, str] | None,
        read_once: bool = False,
    ) -> tuple[DuckDBRows, InputSummary]:
        """Files of local storage are read in place; remote ones are downloaded to a scratch
        folder first (removed on close)."""
        local = self.stage(files, storage)
        rows, summary = self.read_local(tag, local, fmt, options, pinned_schema, read_once)
        rows._files = files
        rows._ranks = {f.key: f.rank for f in files}
        return rows, summary

    def stage(self, files: list[WindowFile], storage: StorageBackend) -> list[InputFile]:
        """Local paths of the files: in place when the storage is local, else downloaded."""
        if not files:
            return []
        if storage.local_path(files[0].key) is not None:
            return [InputFile(f.key, storage.local_path(f.key), f.size) for f in files]  # type: ignore[arg-type]
        from concurrent.futures import ThreadPoolExecutor

        if self.scratch_root is not None:
            self.scratch_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.scratch_root))
        self.scratch.append(tmp)

        def fetch(f: WindowFile) -> InputFile:
            path = tmp / f"{f.rank:06d}-{Path(f.key).name}"
            storage.download(f.key, path)
            return InputFile(f.key, path, f.size)

        with ThreadPoolExecutor(max_workers=self.FETCH_THREADS) as pool:
            return list(pool.map(fetch, files))

    def read_local(
        self,
        tag: str,
        files: list[InputFile],
        fmt: str,
        options: dict[str, Any],
        pinned_schema: dict[str, str] | None,
        read_once: bool = False,
    ) -> tuple[DuckDBRows, InputSummary]:
        """read_input for files already on local disk."""
        table = f"_courier_in_{tag}_{next(_ids)}"
        summary = InputSummary(tag=tag)
        if pinned_schema is not None and len(pinned_schema) > max_columns(options):
            pinned_schema = None  # pinned before the bound: this window's columns replace it
        nonempty = [f for f in files if f.size > 0]
        rows: int | None = None
        scratch: Path | None = None
        if fmt == "ndjson":
            lines: list[InputFile] | None = nonempty
        else:
            scratch = Path(tempfile.mkdtemp(prefix=f"courier-{table}-"))
            lines = self._transcode(nonempty, fmt, options, summary, scratch)
        try:
            if lines is None:
                self._read_arrow(table, nonempty, fmt, options, summary, pinned_schema)
            else:
                if read_once and lines:
                    rows = self._stream_ndjson(table, lines, options, pinned_schema)
                if rows is None:
                    self._read_ndjson(table, lines, options, pinned_schema, summary)
                else:
                    self.streamed[tag] = StreamedTag(table, lines, options, pinned_schema, summary)
                    if scratch is not None:  # the view reads these until close()
                        self.scratch.append(scratch)
                        scratch = None
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        relation = self._register(tag, table, summary, pinned_schema, rows)
        return relation, summary

    def _register(
        self,
        tag: str,
        table: str,
        summary: InputSummary,
        pinned: dict[str, str] | None,
        rows: int | None = None,
    ) -> DuckDBRows:
        """Describe the tag's table (or view), fill the summary, and name it for queries."""
        columns = describe(self.con, table)
        if rows is None:
            rows = self.con.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]  # type: ignore[index]
        summary.records = rows
        # in place: a caller may hold these from before a streamed tag was read again
        summary.schema.clear()
        summary.schema.update({k: v for k, v in columns.items() if k != FILE_COLUMN})
        if pinned is not None:
            summary.schema_changes[:] = schema_changes(pinned, summary.schema)
        relation = DuckDBRows(self.con, table, columns, rows, FILE_COLUMN)
        old = self.tags.get(tag)
        if old is not None:  # read again (a streamed tag held): keep the file ranks
            relation._files, relation._ranks = old._files, old._ranks
        visible = ", ".join(quote(c) for c in summary.schema) or "NULL AS _empty"
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {quote(tag)} AS SELECT {visible} FROM {quote(table)}"
        )
        self.tags[tag] = relation
        return relation

    def _stream_ndjson(
        self,
        table: str,
        files: list[InputFile],
        options: dict[str, Any],
        pinned: dict[str, str] | None,
    ) -> int | None:
        """The tag as a view over its files (no copy of the window in a table): the record
        count, or None when the files need the careful path (a malformed line, a line that
        is not an object, glob characters in a path, a full schema scan asked for). A key the
        sample missed widens the schema over every record, as on the careful path."""
        paths = [str(f.path) for f in files]
        if options.get("schema_scan") == "full" or any(c in p for p in paths for c in "*?[{"):
            return None
        try:
            schema = self._ndjson_sample_schema(paths, pinned)
            noted = _noted_keys(paths, files, schema)
            count, late_keys, not_objects, late, counted = noted or self._key_pass(paths, schema)
            keys = list(dict.fromkeys([*schema, *(late_keys or [])]))
            if not_objects or needs_check(keys, pinned, max_columns(options)):
                return None
            if late:
                # a key first seen late: its type from every record of the files holding one;
                # the keys already known keep their types (one file must not narrow them)
                detected = self._detect(sorted(late), -1)
                schema.update({k: v for k, v in detected.items() if k not in schema})
        except duckdb.Error:
            return None
        self._name_files({p: f.key for p, f in zip(paths, files, strict=True)})
        self._ndjson_into(table, paths, schema, kind="VIEW")
        per_file = dict(counted or {})
        self._scans[table] = (paths, schema, [int(per_file.get(p) or 0) for p in paths])
        return int(count or 0)

    def _key_pass(
        self, paths: list[str], schema: dict[str, str]
    ) -> tuple[int | None, list[str] | None, int | None, list[str] | None, Any]:
        """One pass over every record: how many, their top-level keys, that each is an object
        (a malformed line fails it, so the careful path finds and quarantines it), and which
        files hold a key the schema lacks. The lines are read as text (no JSON parse),
        json_keys parses each once, and only the distinct key lists of each file are checked
        against the schema (~35% cheaper than checking every record's list)."""
        known = "[" + ", ".join(literal(k) for k in schema) + "]::VARCHAR[]"
        return self.con.execute(  # type: ignore[return-value]
            "SELECT sum(n), list_distinct(flatten(list(ks) FILTER (WHERE ks IS NOT NULL))), "
            "sum(odd), list(filename) FILTER (WHERE len(ks) > 0), "
            "map(list(filename), list(n)) FROM (SELECT filename, sum(n) AS n, "
            "list_distinct(flatten(list(k) FILTER (WHERE NOT list_has_all("
            f"{known}, k)))) AS ks, "
            # [] is a line that is not an object (or {}), NULL a blank or mixed line end
            "sum(n) FILTER (WHERE k IS NULL OR len(k) = 0) AS odd FROM ("
            f"SELECT filename, json_keys(line) AS k, count(*) AS n FROM {_lines_of(paths)} "
            "GROUP BY ALL) GROUP BY filename)"
        ).fetchone()

    def _read_ndjson(
        self,
        table: str,
        files: list[InputFile],
        options: dict[str, Any],
        pinned: dict[str, str] | None,
        summary: InputSummary,
    ) -> None:
        if not files:
            self._empty_table(table, pinned)
            return
        self._name_files({str(f.path): f.key for f in files})
        paths = [str(f.path) for f in files]
        full_scan = options.get("schema_scan") == "full"
        bound = max_columns(options)
        try:
            self._ndjson_widening(table, paths, pinned, full_scan, bound)
            return
        except (duckdb.Error, _CheckRecords):
            pass
        # Malformed input somewhere, or valid JSON DuckDB cannot load: find it line by line,
        # read the good lines (copied to a scratch folder, never beside the landed files),
        # quarantine the rest.
        clean_dir = Path(tempfile.mkdtemp(prefix=f"courier-{table}-clean-"))
        try:
            clean: dict[str, tuple[InputFile, array[int]]] = {}
            budget = ColumnBudget(pinned or {}, bound)
            for f in files:
                copy, bad, numbers = scan_ndjson(f.path, f.key, clean_dir, budget)
                summary.bad.extend(bad)
                if numbers:
                    clean[str(copy)] = (f, numbers)
                    self._name_files({str(copy): f.key})
                    self._lines[str(copy)] = numbers
            self._read_clean(table, clean, pinned, full_scan, summary)
        finally:
            shutil.rmtree(clean_dir, ignore_errors=True)  # the good lines are in the table now

    def _read_clean(
        self,
        table: str,
        clean: dict[str, tuple[InputFile, array[int]]],
        pinned: dict[str, str] | None,
        full_scan: bool,
        summary: InputSummary,
    ) -> None:
        """Read the scanned lines. A record DuckDB still refuses is one the scan cannot see
        (e.g. a duplicate key it missed): DuckDB names its file and line, so it is quarantined
        and the rest read again, at most MAX_LOCATED times."""
        for _ in range(MAX_LOCATED):
            if not clean:
                self._empty_table(table, pinned)
                return
            try:
                self._ndjson_widening(table, list(clean), pinned, full_scan, None)
                return
            except duckdb.Error as exc:
                located = _LOCATED.search(str(exc))
                if located is None or located.group(1) not in clean:
                    files = ", ".join(f.key for f, _ in clean.values())
                    raise LoadError(
                        f"DuckDB cannot read the files {files} although every line is valid "
                        f"JSON: {str(exc).splitlines()[0]}; quarantine or fix the record it "
                        "names and run again"
                    ) from exc
                path, line = located.group(1), int(located.group(2))
                source, numbers = clean[path]
                reason = "DuckDB cannot load it: " + str(exc).splitlines()[0].split(": ", 1)[-1]
                text = drop_line(Path(path), line)
                summary.bad.append(BadRecord(source.key, numbers[line - 1], reason, text))
                del numbers[line - 1]
                if not numbers:
                    del clean[path]
        raise LoadError(
            f"DuckDB refused more than {MAX_LOCATED} records of files the line scan passed; "
            "fix the files and run again"
        )

    def _ndjson_widening(
        self,
        table: str,
        paths: list[str],
        pinned: dict[str, str] | None,
        full_scan: bool,
        bound: int | None,
    ) -> None:
        """Read the files into table; when a field changed type after the sample, look at
        every record, widen, and read again. Other errors (malformed input) are raised, and
        _CheckRecords when the top-level keys need a look at each record (needs_check; bound
        None: they had it)."""
        try:
            schema = self._ndjson_schema(paths, pinned, full_scan, bound)
            self._ndjson_into(table, paths, schema)
        except duckdb.Error as exc:
            if full_scan or not is_type_error(exc):
                raise
            self._ndjson_into(table, paths, self._ndjson_schema(paths, pinned, True, bound))

    def _ndjson_schema(
        self,
        paths: list[str],
        pinned: dict[str, str] | None,
        full_scan: bool,
        bound: int | None = None,
    ) -> dict[str, str]:
        # Type detection samples each file (union_by_name), so its cost grows with the number
        # of files: the window shares DuckDB's default budget of 20,480 sampled records (at
        # least 2,048 per file; one file keeps the full default). Top-level keys do not rest
        # on the sample (every record's keys are checked below); a value that cannot be read
        # as the sampled type fails the read with a type error (is_type_error) and reads again
        # with a full-coverage schema. Known limit, as before: DuckDB silently drops nested keys and
        # rounds 2.5 into a BIGINT when first seen after the sample.
        schema = self._ndjson_sample_schema(paths, pinned, full_scan)
        if not full_scan or bound is not None:
            # The sample may miss fields first seen late: every record's top-level keys are
            # checked (cheap), and any key the schema lacks triggers a full-coverage scan.
            keys = self.con.execute(
                f"SELECT DISTINCT unnest(json_keys(json)) FROM read_ndjson_objects("
                f"{sql_list(paths)})"
            ).fetchall()
            if bound is not None and needs_check([k for (k,) in keys], pinned, bound):
                raise _CheckRecords
            if not full_scan and any(k not in schema for (k,) in keys):
                return self._ndjson_schema(paths, pinned, True)
        return schema

    def _ndjson_sample_schema(
        self, paths: list[str], pinned: dict[str, str] | None, full_scan: bool = False
    ) -> dict[str, str]:
        """The pinned schema widened by DuckDB's detection on a sample (or every record).

        Steady state: a courier that loaded its stream before has a pinned schema, and its new
        files mostly have the same shape. A small sample of each file is detected first; when
        it agrees with the pinned schema, the pinned schema is the schema, and only files that
        disagree pay for the full sample (detection costs as much as reading the records it
        samples: 2,048 of each of 24 hourly files is 40% of a 50 MB window). Top-level keys
        never rest on a sample (the callers check every record's keys), and a value the
        schema cannot read fails the read and widens over every record, as before."""
        if pinned and not full_scan:
            seen = self._detect(paths, STEADY_SAMPLE_PER_FILE)
            if all(pinned.get(k) == v for k, v in seen.items()):
                return dict(pinned)
        per_file = max(SAMPLE_MIN_PER_FILE, SAMPLE_RECORDS // max(1, len(paths)))
        detected = self._detect(paths, -1 if full_scan else per_file)
        schema = dict(pinned or {})
        schema.update(detected)
        schema.update(self._pinned_fields(pinned or {}, detected))
        return schema

    def _detect(self, paths: list[str], per_file: int) -> dict[str, str]:
        """DuckDB's schema detection over the first `per_file` records of each file (-1: all)."""
        source = (
            f"read_json({sql_list(paths)}, format = 'newline_delimited', records = true, "
            f"union_by_name = true, sample_size = {per_file})"
        )
        return describe(self.con, f"SELECT * FROM {source}")

    def _pinned_fields(self, pinned: dict[str, str], detected: dict[str, str]) -> dict[str, str]:
        """Struct columns whose pinned type has fields this window's records lack: the union
        of both (DuckDB's UNION BY NAME of the two types), so a query naming a field that no
        record of the window carries (customer.email) reads NULL, not a Binder Error."""
        names = [
            k
            for k, typ in detected.items()
            if k in pinned and pinned[k] != typ and "STRUCT(" in typ and "STRUCT(" in pinned[k]
        ]
        if not names:
            return {}

        def nulls(types: dict[str, str]) -> str:
            return ", ".join(f"NULL::{types[k]} AS {quote(k)}" for k in names)

        try:
            return describe(
                self.con, f"SELECT {nulls(pinned)} UNION ALL BY NAME SELECT {nulls(detected)}"
            )
        except duckdb.Error:  # types that do not unite: this window's, as before
            return {}

    def _ndjson_scan(self, paths: list[str], schema: dict[str, str], extra: str = "") -> str:
        columns = "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in schema.items()) + "}"
        return (
            f"read_json({sql_list(paths)}, format = 'newline_delimited', records = true, "
            f"columns = {columns}{extra})"
        )

    def _ndjson_into(
        self, table: str, paths: list[str], schema: dict[str, str], kind: str = "TABLE"
    ) -> None:
        # The file column as an ENUM of the window's paths: one byte a row instead of the path
        # (a 1 GB window's tag table is ~45% smaller, so it spills far less under the memory
        # limit). Paths with glob characters are expanded by DuckDB, so they keep VARCHAR.
        replace = ""
        if not any(c in p for p in paths for c in "*?[{"):
            names = ", ".join(literal(p) for p in dict.fromkeys(paths))
            fc = quote(FILE_COLUMN)
            replace = f" REPLACE (CAST({fc} AS ENUM({names})) AS {fc})"
        scan = self._ndjson_scan(paths, schema, f", filename = {literal(FILE_COLUMN)}")
        self.con.execute(
            f"CREATE OR REPLACE TEMP {kind} {quote(table)} AS SELECT *{replace} FROM {scan}"
        )
        self._scans.pop(table, None)  # a table now (or a view the caller describes)

    def _name_files(self, mapping: dict[str, str]) -> None:
        """Remember which storage key each local path holds (the file column keeps the path;
        keys are joined in only for the few rows that reach quarantine)."""
        self.con.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {FILE_NAMES} (path VARCHAR, key VARCHAR)"
        )
        for source, params in each_values(list(mapping.items()), 2):
            self.con.execute(f"INSERT INTO {FILE_NAMES} SELECT c0, c1 FROM {source}", params)
        self._keys.update(mapping)

    def _empty_table(self, table: str, schema: dict[str, str] | None) -> None:
        cols = [f"{quote(k)} {v}" for k, v in (schema or {}).items()]
        cols.append(f"{FILE_COLUMN} VARCHAR")
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(table)} ({', '.join(cols)})")

    def _transcode(
        self,
        files: list[InputFile],
        fmt: str,
        options: dict[str, Any],
        summary: InputSummary,
        scratch: Path,
    ) -> list[InputFile] | None:
        """Formats decoded in Python (courier/formats), batch by batch.

        Tree formats (cbor, json, xml) are re-encoded as JSON lines, one NDJSON file per input
        file under `scratch`, and read by the NDJSON path: same types, same STRUCTs and LISTs as
        NDJSON, and the file column holds the temporary file, named after its storage key.
        None: the reader only gives Arrow batches (or options.decode = "arrow").
        """
        reader = formats.get_reader(fmt)
        transcode = getattr(reader, "json_lines", None)
        if transcode is None or options.get("decode", "json") == "arrow":
            return None
        converted: list[InputFile] = []
        for produced, bad in transcode(files, options, scratch):
            summary.bad.extend(bad)
            if produced is not None:
                converted.append(produced)
        return converted

    def _read_arrow(
        self,
        table: str,
        files: list[InputFile],
        fmt: str,
        options: dict[str, Any],
        summary: InputSummary,
        pinned: dict[str, str] | None = None,
    ) -> None:
        """Arrow batches: each distinct batch schema fills its own part table, and the parts
        are combined in record order with UNION ALL BY NAME, which unifies columns and struct
        fields across batches."""
        import pyarrow as pa  # here: a run of NDJSON into DuckDB needs no Arrow (~200 ms import)

        reader = formats.get_reader(fmt)
        self._name_files({str(f.path): f.key for f in files})
        parts: list[tuple[pa.Schema, str]] = []
        ordinal = 0
        view = f"_courier_arrow_{next(_ids)}"
        for batch, bad in reader.batches(files, options):
            summary.bad.extend(bad)
            if batch is None or batch.num_rows == 0:
                continue
            if FILE_COLUMN not in batch.schema.names:
                batch = batch.append_column(FILE_COLUMN, pa.nulls(batch.num_rows, pa.string()))
            order = pa.array(range(ordinal, ordinal + batch.num_rows), pa.int64())
            ordinal += batch.num_rows
            part = next((name for schema, name in parts if schema.equals(batch.schema)), None)
            self.con.register(view, batch.append_column(ORDER_COLUMN, order))
            try:
                if part is None:
                    part = f"{table}_part{len(parts)}"
                    self.con.execute(
                        f"CREATE OR REPLACE TEMP TABLE {quote(part)} AS SELECT * FROM {view}"
                    )
                    parts.append((batch.schema, part))
                else:
                    self.con.execute(f"INSERT INTO {quote(part)} BY NAME SELECT * FROM {view}")
            finally:
                self.con.unregister(view)
        if not parts:
            self._empty_table(table, pinned)
            return
        if len(parts) == 1:  # one shape: already in record order
            self.con.execute(f"ALTER TABLE {quote(parts[0][1])} DROP COLUMN {ORDER_COLUMN}")
            self.con.execute(f"ALTER TABLE {quote(parts[0][1])} RENAME TO {quote(table)}")
            return
        # Columns Arrow can promote to one type (int64 and double, structs with other fields)
        # are unified by UNION ALL BY NAME; the others (a number here, a struct there) would
        # turn into NULLs, so they become JSON in every part, as read_json does.
        as_json = conflicting_columns([schema for schema, _ in parts])
        selects = []
        for schema, name in parts:
            replace = [f"to_json({quote(c)}) AS {quote(c)}" for c in schema.names if c in as_json]
            star = f"* REPLACE ({', '.join(replace)})" if replace else "*"
            selects.append(f"SELECT {star} FROM {quote(name)}")
        union = " UNION ALL BY NAME ".join(selects)
        try:
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {quote(table)} AS SELECT * EXCLUDE "
                f"({ORDER_COLUMN}) FROM ({union}) ORDER BY {ORDER_COLUMN}"
            )
        except duckdb.Error as exc:
            raise LoadError(
                f"the {fmt} batches of this run have columns of incompatible types ({exc}); "
                'set options.decode = "json" or fix the files'
            ) from exc
        finally:
            for _, name in parts:
                self.con.execute(f"DROP TABLE IF EXISTS {quote(name)}")

    # -- queries --------------------------------------------------------------------------------
    def run_query(
        self, query: SavedQuery, tags: list[str], fields: Collection[str] = ()
    ) -> DuckDBRows:
        table = f"_courier_q_{query.name}_{next(_ids)}"
        sql = query.sql.strip().rstrip(";")
        if self.record_order:
            ordered = self._run_ordered(query, sql, table, tags)
            if ordered is not None:
                return ordered
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(table)} AS {sql}")
        except duckdb.Error as exc:
            if self._held_after_type_error(exc, tags):
                return self.run_query(query, tags, fields)
            if fields and self._add_missing_fields(sql, tags, fields, exc):
                return self.run_query(query, tags, fields)
            raise query_error(exc, query, self.visible_columns(tags)) from exc
        columns = describe(self.con, table)
        rows = self.con.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]  # type: ignore[index]
        return DuckDBRows(self.con, table, columns, rows, None)

    def _add_missing_fields(
        self, sql: str, tags: list[str], fields: Collection[str], exc: duckdb.Error
    ) -> bool:
        """A struct key no record of the window carries (DuckDB: "Could not find key"),
        named by a select-list expression whose output column the feed declares (`fields`):
        the key is added to the tag's struct as NULL (VARCHAR; the feed casts it), as a
        pinned schema that knows it does. The column must be named after the key (`email` or
        `customer_email` for customer.email), so a misspelt key stays the query's error
        rather than loading NULLs. Whether anything was added (then run again)."""
        missing = _MISSING_KEY.search(str(exc))
        if missing is None:
            return False
        key = missing.group(1).lower()
        try:
            (text,) = self.con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()  # type: ignore[misc]
            tree = json.loads(text)
        except (duckdb.Error, ValueError, TypeError):
            return False
        wanted = {f.lower() for f in fields}
        paths = [
            names
            for column, names in _feed_refs(tree, wanted)
            if names[-1].lower() == key and (column == key or column.endswith("_" + key))
        ]
        added = False
        for tag in tags:
            relation = self.tags.get(tag)
            if relation is None:
                continue
            for names in paths:
                for start in range(
                    min(2, len(names) - 1)
                ):  # `e.customer.email` or `customer.email`
                    column = next(
                        (c for c in relation.columns if c.lower() == names[start].lower()), None
                    )
                    if column is None or not relation.columns[column].startswith("STRUCT("):
                        continue
                    if tag in self.streamed:  # a view over the files: read it into a table first
                        self._hold(tag)
                        relation = self.tags[tag]
                    nested = "VARCHAR"
                    for name in reversed(names[start + 1 :]):
                        nested = f"STRUCT({quote(name)} {nested})"
                    old = relation.columns[column]
                    try:
                        (united,) = describe(
                            self.con,
                            f"SELECT NULL::{old} AS c UNION ALL BY NAME SELECT NULL::{nested} AS c",
                        ).values()
                    except duckdb.Error:
                        continue
                    if united == old:
                        continue
                    self.con.execute(
                        f"ALTER TABLE {quote(relation.name)} ALTER COLUMN {quote(column)} "
                        f"TYPE {united}"
                    )
                    relation.columns[column] = united
                    added = True
                    break
        return added

    def _run_ordered(
        self, query: SavedQuery, sql: str, table: str, tags: list[str]
    ) -> DuckDBRows | None:
        """The query with each row's file rank and line (engines/record_order.py); None when
        its shape does not carry them, or the edited text fails where the query may not (the
        query then runs as written: its rows in output order, or its own error)."""
        relations = {t: v for t in tags if (v := self._ordered_view(t)) is not None}
        edited = remembered_record_order(sql, relations, self.cache_root) if relations else None
        if edited is None:
            return None
        # the rows name their place: their order in the table is free, which DuckDB
        # writes in parallel and with less memory
        self.con.execute("SET preserve_insertion_order = false")
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(table)} AS {edited}")
        except duckdb.Error as exc:
            if self._held_after_type_error(exc, tags):
                return self._run_ordered(query, sql, table, tags)
            return None
        finally:
            self.con.execute("RESET preserve_insertion_order")
        columns = describe(self.con, table)
        if RANK_COLUMN not in columns or LINE_COLUMN not in columns:
            self.con.execute(f"DROP TABLE {quote(table)}")
            return None
        rows = self.con.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]  # type: ignore[index]
        files = [f for t in tags if t in self.tags for f in self.tags[t].files or []]
        return DuckDBRows(self.con, table, columns, rows, None, files=files, ordered=True)

    def _ordered_view(self, tag: str) -> str | None:
        """A view of the tag with RANK_COLUMN and LINE_COLUMN: each record's file rank and
        line (its number in the landed file). None when the tag's ranks are unknown."""
        relation = self.tags.get(tag)
        if relation is None or not relation._ranks:
            return None
        rank_of = {p: relation._ranks.get(k) for p, k in self._keys.items()}
        visible = ", ".join(f"s.{quote(c)}" for c in relation.visible)
        visible = visible + ", " if visible else ""
        view = f"{relation.name}_ordered"
        scan = self._scans.get(relation.name)
        if scan is not None:  # a streamed tag: number the records as the files are read
            paths, schema, counts = scan
            if any(rank_of.get(p) is None for p in paths):
                return None
            body = " UNION ALL ".join(
                self._numbered_scan(visible, chunk, paths, schema, counts, rank_of)
                for chunk in self._chunks(paths, counts)
            )
        else:  # a table in file order: a record's line is its row's distance from the first
            fc = quote(FILE_COLUMN)
            firsts = self.con.execute(
                f"SELECT CAST({fc} AS VARCHAR), min(rowid) FROM {quote(relation.name)} GROUP BY 1"
            ).fetchall()
            known = [(p, rank_of.get(p), first) for p, first in firsts if p is not None]
            if not known or any(r is None for _, r, _ in known):
                return None
            values = ", ".join(f"({literal(p)}, {r}, {first})" for p, r, first in known)
            line = "s.rowid - o.first + 1"
            join = ""
            mapped = [p for p, _, _ in known if p in self._lines]
            if mapped:  # clean copies of scanned files: their records' lines in the original
                self._line_map(f"{view}_lines", mapped)
                join = (
                    f"LEFT JOIN {quote(view + '_lines')} m ON m.path = o.path "
                    f"AND m.ordinal = s.rowid - o.first + 1 "
                )
                line = f"coalesce(m.line, {line})"
            body = (
                f"SELECT {visible}CAST(o.rank AS INTEGER) AS {RANK_COLUMN}, "
                f"CAST({line} AS BIGINT) AS {LINE_COLUMN} FROM {quote(relation.name)} s "
                f"LEFT JOIN (VALUES {values}) o(path, rank, first) "
                f"ON o.path = CAST(s.{fc} AS VARCHAR) {join}"
            )
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS {body}")
        except duckdb.Error:  # the rows then keep the query's output order
            log.warning("no record order for tag %s", tag, exc_info=True)
            return None
        return view

    def _chunks(self, paths: list[str], counts: list[int]) -> list[list[int]]:
        """The files (indexes) in a few runs of neighbours with about as many records each.
        WITH ORDINALITY numbers a scan on one thread, so each run is a scan of its own and
        DuckDB reads them side by side (2 per thread keeps the threads busy to the end)."""
        threads = int(self.con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
        parts = max(1, min(len(paths), 2 * threads))
        share = max(1, sum(counts)) / parts
        chunks: list[list[int]] = [[]]
        done = 0
        for i, n in enumerate(counts):
            if chunks[-1] and done >= share * len(chunks) and len(chunks) < parts:
                chunks.append([])
            chunks[-1].append(i)
            done += n
        return chunks

    def _numbered_scan(
        self,
        visible: str,
        chunk: list[int],
        paths: list[str],
        schema: dict[str, str],
        counts: list[int],
        rank_of: dict[str, int | None],
    ) -> str:
        ranks = ", ".join(str(rank_of[paths[i]]) for i in chunk)
        starts = ", ".join(map(str, itertools.accumulate([0, *(counts[i] for i in chunk[:-1])])))
        index = "CAST(s.file_index AS BIGINT) + 1"
        source = self._ndjson_scan([paths[i] for i in chunk], schema)
        return (
            f"SELECT {visible}CAST([{ranks}][{index}] AS INTEGER) AS {RANK_COLUMN}, "
            f"CAST(s.ordinality - [{starts}][{index}] AS BIGINT) AS {LINE_COLUMN} "
            f"FROM {source} WITH ORDINALITY s"
        )

    def _line_map(self, name: str, paths: list[str]) -> None:
        """A table of the clean copies' record numbers -> lines in the landed files."""
        import pyarrow as pa

        parts = []
        for path in paths:
            lines = self._lines[path]
            parts.append(
                pa.table({
                    "path": pa.array([path] * len(lines), pa.string()),
                    "ordinal": pa.array(range(1, len(lines) + 1), pa.int64()),
                    "line": pa.array(lines, pa.int64()),
                })
            )  # fmt: skip
        view = f"{name}_arrow"
        self.con.register(view, pa.concat_tables(parts))
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(name)} AS SELECT * FROM {view}")
        finally:
            self.con.unregister(view)

    def _held_after_type_error(self, exc: duckdb.Error, tags: list[str]) -> bool:
        """A value a streamed tag's sampled schema cannot read: hold those tags in tables
        (which widens their schema over every record); whether the query should run again."""
        held = [t for t in tags if t in self.streamed]
        if not held or not is_type_error(exc):
            return False
        for tag in held:
            self._hold(tag)
        return True

    def _hold(self, tag: str) -> None:
        """Read a streamed tag into a table, as read_input does when not streaming."""
        streamed = self.streamed.pop(tag)
        summary = streamed.summary
        self.con.execute(f"DROP VIEW IF EXISTS {quote(streamed.table)}")
        self._read_ndjson(
            streamed.table, streamed.files, streamed.options, streamed.pinned, summary
        )
        # Malformed lines refused streaming; a record found now is one DuckDB cannot load
        # outside the sample (formats/limits.py): the caller quarantines summary.bad[before:].
        self._register(tag, streamed.table, summary, streamed.pinned)

    def visible_columns(self, tags: list[str]) -> dict[str, list[str]]:
        out = {}
        for tag in tags:
            if tag in self.tags:
                out[tag] = [c for c in self.tags[tag].columns if c != FILE_COLUMN]
        return out

    def drop(self, rows: Rows) -> None:
        if isinstance(rows, DuckDBRows):
            self.con.execute(f"DROP TABLE IF EXISTS {quote(rows.name)}")


def _feed_refs(tree: Any, fields: set[str]) -> list[tuple[str, list[str]]]:
    """(output column, a column reference's name chain) for the references inside
    select-list entries of a parsed query (json_serialize_sql) whose output column is one of
    `fields` (lower case)."""
    found: list[tuple[str, list[str]]] = []

    def refs(node: Any, column: str) -> None:
        if isinstance(node, dict):
            if node.get("class") == "COLUMN_REF" and isinstance(node.get("column_names"), list):
                found.append((column, [str(n) for n in node["column_names"]]))
            for value in node.values():
                refs(value, column)
        elif isinstance(node, list):
            for value in node:
                refs(value, column)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for entry in node.get("select_list") or []:
                alias = entry.get("alias") or ""
                if not alias and entry.get("class") == "COLUMN_REF":
                    alias = str(entry.get("column_names", [""])[-1])
                if alias.lower() in fields:
                    refs(entry, alias.lower())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return found


def is_type_error(exc: duckdb.Error) -> bool:
    """A value the read's schema cannot hold (DuckDB says so as a conversion error, or as a
    JSON transform error of read_json), as opposed to malformed input or a bad query."""
    if isinstance(exc, duckdb.ConversionException):
        return True
    text = str(exc)
    return (
        isinstance(exc, duckdb.InvalidInputException)
        and "JSON transform error" in text
        and "Expected OBJECT" not in text  # a line that is no object: malformed input
    )


def conflicting_columns(schemas: list[pa.Schema]) -> set[str]:
    """Columns whose types differ across Arrow schemas beyond what permissive promotion joins."""
    import pyarrow as pa

    fields: dict[str, list[pa.Field]] = {}
    for schema in schemas:
        for f in schema:
            fields.setdefault(f.name, []).append(f)
    out = set()
    for name, found in fields.items():
        if len({f.type for f in found}) < 2:
            continue
        try:
            pa.unify_schemas([pa.schema([f]) for f in found], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            out.add(name)
    return out


def max_columns(options: dict[str, Any]) -> int:
    return int(options.get("max_columns") or MAX_COLUMNS)


def needs_check(keys: list[str], pinned: dict[str, str] | None, bound: int) -> bool:
    """Whether a window's distinct top-level keys call for a look at each record: a key DuckDB
    cannot make a column of (formats/limits.py), or more columns than options.max_columns."""
    if keys_collide(keys):
        return True
    return len(keys) > bound or len(set(keys).union(pinned or {})) > bound


def drop_line(path: Path, number: int) -> str:
    """Remove line `number` (1-based) of a scanned file; return its text (for quarantine)."""
    lines = path.read_bytes().split(b"\n")
    dropped = lines.pop(number - 1)
    path.write_bytes(b"\n".join(lines))
    return dropped.decode("utf-8", errors="backslashreplace")[:4096]


def _noted_keys(
    paths: list[str], files: list[InputFile], schema: dict[str, str]
) -> tuple[int, list[str], int, list[str], dict[str, int]] | None:
    """What _key_pass finds, for NDJSON courier wrote itself (transcoded CBOR, XML, JSON): it
    counted the lines, each an object, and noted their keys. None: some file's are unknown."""
    counts: dict[str, int] = {}
    late: list[str] = []
    unknown: set[str] = set()
    for path, f in zip(paths, files, strict=True):
        if f.keys is None or f.records is None:
            return None
        counts[path] = f.records
        new = f.keys - schema.keys()
        if new:
            late.append(path)
            unknown |= new
    return sum(counts.values()), sorted(unknown), 0, late, counts


def _lines_of(paths: list[str]) -> str:
    """The files' lines as text, one VARCHAR column `line`, without parsing them (JSON never
    holds a raw \\x01: a line with one is cut, fails json_keys and takes the careful path)."""
    return (
        f"read_csv({sql_list(paths)}, columns = {{'line': 'VARCHAR'}}, delim = chr(1), "
        "quote = '', escape = '', header = false, auto_detect = false, strict_mode = false, "
        f"max_line_size = {MAX_LINE_BYTES}, filename = true)"
    )


def sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(literal(p) for p in paths) + "]"


def schema_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What the window's schema adds to or changes in the pinned one. Subfields the window's
    payloads lack are no change (a payload may leave a field out); new subfields are named
    (`new field customer.tier (VARCHAR)`), and a type change is said for the field it is in."""
    out = []
    for name, typ in after.items():
        if name not in before:
            out.append(f"new field {name} ({typ})")
        elif before[name] != typ:
            out.extend(_type_changes(name, before[name], typ))
    return out


def _type_changes(name: str, before: str, after: str) -> list[str]:
    from courier.analyst.schema import TypeNode, parse_type

    try:
        old, new = parse_type(before), parse_type(after)
    except ValueError:
        return [f"field {name} changed type {before} -> {after}"]

    def walk(path: str, old: TypeNode, new: TypeNode) -> list[str]:
        if old.kind == new.kind == "struct":
            found = []
            for sub, sub_type in new.fields:
                was = old.child(sub)
                if was is None:
                    found.append(f"new field {path}.{sub} ({sub_type.sql()})")
                else:
                    found.extend(walk(f"{path}.{sub}", was, sub_type))
            return found
        if old.kind == new.kind == "list" and old.element and new.element:
            return walk(f"{path}[]", old.element, new.element)
        if old.sql() != new.sql():
            return [f"field {path} changed type {old.sql()} -> {new.sql()}"]
        return []

    return walk(name, old, new)


_LINE = re.compile(r"LINE (\d+):")
_QUOTED = re.compile(r'"([^"]+)"')


def query_error(exc: duckdb.Error, query: SavedQuery, columns: dict[str, list[str]]) -> QueryError:
    """Point at the query file and line, and list what the query could have used."""
    message = str(exc).strip()
    lines = message.splitlines()
    first = lines[0] if lines else type(exc).__name__
    # DuckDB's hints ("Did you mean", "Candidate bindings") come before its "LINE n:" excerpt.
    hints = []
    for extra in lines[1:]:
        if extra.startswith("LINE "):
            break
        if extra.strip():
            hints.append(extra.strip())
    line = query_line(query.sql, message, first)
    where = f"line {line}: " if line else ""
    text = " ".join(p if p[-1] in ".!?" else p + "." for p in [first, *hints])
    if columns:
        available = "; ".join(f"{tag}: {', '.join(cols)}" for tag, cols in columns.items())
        text += f" Available file tags and columns: {available}"
    return QueryError(where + text, query.name, query.path)


def query_line(sql: str, message: str, first: str) -> int | None:
    """The line of the query file an engine error is about."""
    # run_query strips leading whitespace; the CREATE prefix shares the statement's first line,
    # so DuckDB's "LINE n" is line n of the stripped text.
    offset = sql[: len(sql) - len(sql.lstrip())].count("\n")
    m = _LINE.search(message)
    if m:
        return int(m.group(1)) + offset
    # No position (e.g. a missing struct key): the first line naming the quoted identifier.
    for name in _QUOTED.findall(first):
        pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", re.I)
        for number, text in enumerate(sql.splitlines(), start=1):
            if pattern.search(text.split("--", 1)[0]):
                return number
    return None


def check_query(query: SavedQuery, tags: dict[str, dict[str, str] | None]) -> QueryError | None:
    """What `courier validate` finds in a saved query without running it: DuckDB's parser on
    every query, and binding (columns, functions, types) against each file tag's known shape
    (its pinned schema) when every tag the query reads has one. None: no problem found."""
    con = duckdb.connect()
    try:
        sql = query.sql.strip().rstrip(";")
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            return query_error(exc, query, {})
        if len(statements) != 1:
            return QueryError(
                f"holds {len(statements)} statements; a saved query is one SELECT",
                query.name,
                query.path,
            )
        if not tags or any(schema is None for schema in tags.values()):
            return None
        for tag, schema in tags.items():
            assert schema is not None
            cols = ", ".join(f"{quote(k)} {v}" for k, v in schema.items()) or "_empty INTEGER"
            con.execute(f"CREATE TEMP TABLE {quote(tag)} ({cols})")
        try:
            con.execute(f"DESCRIBE {sql}")
        except duckdb.Error as exc:
            known = {t: list(s or {}) for t, s in tags.items()}
            return query_error(exc, query, known)
        return None
    finally:
        con.close()


def pinned_schemas(database: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(courier, file tag) -> the schema its last run pinned, read from the feed database
    without writing (empty when there is no database yet)."""
    if not database.is_file():
        return {}
    try:
        con = duckdb.connect(str(database), read_only=True)
    except duckdb.Error:
        return {}  # held by a run: validate without the shapes
    try:
        rows = con.execute(
            "SELECT courier, file_tag, arg_max(columns, updated_at) FROM courier.schemas "
            "GROUP BY ALL"
        ).fetchall()
    except duckdb.Error:
        return {}
    finally:
        con.close()
    return {(c, t): json.loads(cols) for c, t, cols in rows}
