"""A courier run on a Spark engine (SPEC 8): the cluster does the record work, courier the state.

courier's process hands the cluster the window's file URIs and gets back only counts and
bounded samples (bad lines, rejected rows); the rows themselves go from the files to the
feed's Delta table on the cluster:

1. read: each NDJSON file as text with its rank and line numbers (spark.read_lines), parsed
   with the pinned schema widened by the cluster's inference of this window's new keys;
   bad lines counted, the first BAD_LIMIT collected (reasons as DuckDB's reader gives them);
2. per load operation: the saved query (its `.spark.sql` twin or the translation), the casts
   to the feed's types with DuckDB's reject rules and reasons (cast, required, unknown
   columns), last record wins by (rank, line) for a file tag and by result order for a query;
3. commit: the cluster writes each feed's Delta table (an upsert on the primary key: MERGE, or
   a rewrite in one overwrite commit when it holds REWRITE_SHARE of the table's rows; append;
   overwrite for truncateAndLoad); every row it writes carries the run id in
   `_courier_run_id`. Sail writes no Delta `txn` action and no commit metadata, so "did run R
   commit?" is answered from the tables: each feed the run wrote holds rows of R.

Scratch: the parsed window, each feed's cast rows and an upsert's repeated keys with their last
rows are written once as Parquet into the courier's scratch folder beside its feed tables
(<destination>/_courier_scratch/<courier>/<run id>/) and read back, because Sail caches nothing
and every action (counts, rejects, dedupe, the write) would otherwise parse the window and run
the query again (200 MB on 2 cores: first load 26.4 -> 12.6 s, MERGE 71.3 -> 15.6 s). courier
removes the folder through the destination's storage after the run, and a killed run's before
the next run or at its recovery.

Formats: NDJSON is read as text on the cluster. CBOR (and XML landed as CBOR), XML and JSON
documents are decoded on the cluster: each file is read as one binary value and courier's own
reader for the format runs in the cluster's Python workers (spark_decode, mapInArrow), writing
the JSON lines the DuckDB engine's transcoder writes; those lines, written once to scratch, then
take the NDJSON path. Nothing of the window passes through courier's process, and both engines
load the same rows and quarantine the same items. The cluster's Python needs courier installed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from courier.destinations.base import FeedType
from courier.engines import spark, spark_decode
from courier.engines.record_order import carry_record_order
from courier.engines.spark import RANK, RUN_ID, _name, engine_error, redact
from courier.errors import EngineError, LoadError
from courier.formats.ndjson import RAW_LIMIT, parse_line
from courier.plan import BadRecord, FeedCounts, FeedLoad, InputSummary

if TYPE_CHECKING:
    from courier.config.models import CourierConfig, FeedConfig
    from courier.engines.base import WindowFile

BAD_LIMIT = 1000  # bad lines / rejected rows per feed collected back to courier.quarantine
SAMPLE_RECORDS = 20_480  # as the DuckDB engine: records of the window its detection samples
SAMPLE_MIN_PER_FILE = 2_048
SAMPLE_LIMIT = 40_960  # lines the sample brings back at most
KEYS_LIMIT = 10_000  # distinct top-level keys looked at
HEAD_FIRST_READ = 256 * 1024  # bytes of a file's head asked for first (~600 lines of 400 bytes)
HEAD_LIMIT = 16 * 1024 * 1024  # a file's head the sample reads at most
HEAD_READERS = 8  # heads read at a time (remote storage: one request each)
HEADS_CHECK_FILES = 64  # the steady check reads heads up to this many files, else the cluster
# An upsert of at least this share of the table's rows rewrites the table (its rows the upsert
# does not replace, then the upsert's) in one overwrite commit instead of a MERGE: Sail's MERGE
# of 1.2 M rows into 1.2 M took 3.6-5.6 s against 0.54 s, and of 1% of them 1.49 s against
# 0.37 s; a share keeps a small upsert into a large table from rewriting all of it.
REWRITE_SHARE = 0.1
ORD = "_courier_ord"
REASON = "_courier_reason"
LOADED_AT = "_courier_loaded_at"

# feed type -> Spark SQL type (decimal(p,s) as DECIMAL(p,s))
SPARK_FEED_TYPES = {
    "string": "STRING",
    "int": "INT",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "json": "STRING",
}
# Spark's inferred JSON types -> DuckDB's (the pinned schema is DuckDB's vocabulary)
DUCKDB_OF_SPARK = {
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "void": "JSON",  # only nulls seen
    "date": "DATE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "timestamp_ntz": "TIMESTAMP",
}


def spark_feed_type(feed_type: str) -> str:
    return FeedType.parse(feed_type).sql(SPARK_FEED_TYPES)


def duckdb_type(dt: Any) -> str:
    """A Spark DataType (from the cluster's inference) as DuckDB spells it."""
    from pyspark.sql import types as T

    if isinstance(dt, T.StructType):
        inner = ", ".join(f'"{f.name}" {duckdb_type(f.dataType)}' for f in dt.fields)
        return f"STRUCT({inner})"
    if isinstance(dt, T.ArrayType):
        return f"{duckdb_type(dt.elementType)}[]"
    if isinstance(dt, T.MapType):
        return f"MAP({duckdb_type(dt.keyType)}, {duckdb_type(dt.valueType)})"
    if isinstance(dt, T.DecimalType):
        return f"DECIMAL({dt.precision},{dt.scale})"
    return DUCKDB_OF_SPARK.get(dt.simpleString(), "VARCHAR")


@dataclass
class FeedJob:
    """One load operation prepared on the cluster: its rows, counts and rejects, not written."""

    load: FeedLoad
    path: str  # the Delta table's URI as the cluster opens it
    rows: Any  # DataFrame: the feed's columns + _courier_run_id/_courier_loaded_at
    counts: FeedCounts
    rejected: list[BadRecord] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass
class ClusterRun:
    """What the cluster prepared for a run (nothing written yet)."""

    summary: InputSummary  # records, bounded bad lines, the schema read, its changes
    bad_count: int
    feeds: list[FeedJob]

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(j.path for j in self.feeds))


class _SplitFiles(Exception):
    """Files (by rank) a whole-file read gave in pieces: each holds the separator byte."""

    def __init__(self, ranks: list[int]):
        super().__init__(f"the files of window ranks {ranks} were read in pieces")
        self.ranks = ranks


class SparkRunner:
    """The Spark engine's run: prepare (read, query, cast, count), then commit (write)."""

    def __init__(self, name: str, remote: str, session: Any, scratch: str | None = None):
        self.name = name
        self.remote = remote
        self.session = session
        self.scratch = scratch  # the run's scratch folder on the cluster (Scratch.run)
        # the first bytes of a window file (its storage's read_head), for the schema sample
        self._heads: Callable[[WindowFile, int], bytes] | None = None
        self._window: dict[int, WindowFile] = {}  # the window's files by rank
        self._written = 0
        self._by_offsets: bool | None = None  # spark.reads_file_offsets, asked once
        self._separators: dict[int, str] = {}  # files read whole at a byte other than NUL
        self._decoded: Any = None  # a CBOR/XML/JSON window's lines, decoded on the cluster

    def _once(self, df: Any, what: str) -> Any:
        """`df` written once to the run's scratch folder and read back (spark.materialize),
        so the actions after it scan Parquet instead of computing the plan again; as it is
        when the run has no scratch folder."""
        if self.scratch is None:
            return df
        self._written += 1
        return spark.materialize(self.session, df, f"{self.scratch}/{self._written}-{what}")

    def _fail(self, exc: BaseException, what: str) -> EngineError:
        error = engine_error(self.name, self.remote, exc)
        return EngineError(f"{what}: {error}", engine=self.name)

    # -- read --------------------------------------------------------------------------------
    def _in_parts(self, uri: str) -> bool:
        """spark.reads_file_offsets, asked of the server once."""
        if self._by_offsets is None:
            self._by_offsets = spark.reads_file_offsets(self.session, uri)
        return self._by_offsets

    def _lines(
        self, files: list[tuple[str, int]], first: int | None = None, pieces: bool = False
    ) -> Any:
        """spark.read_lines, the server asked once whether it reads files in parts (or the
        window's decoded lines, when its format is decoded on the cluster)."""
        if self._decoded is not None:
            return (
                self._decoded
                if first is None
                else self._decoded.where(f"{spark.LINE} <= {int(first)}")
            )
        by_offsets = self._in_parts(files[0][0]) if files else None
        return spark.read_lines(
            self.session, files, first, by_offsets, pieces=pieces, separators=self._separators
        )

    def _read_whole_again(
        self, split: _SplitFiles, ranked: list[tuple[str, int]], keys: dict[int, str]
    ) -> Any:
        """The window's lines again, the files a whole-file read split (they hold a NUL byte)
        read at a byte each lacks, so every line is numbered by its place and the line with
        the NUL is rejected as DuckDB's engine rejects it."""
        uris = {rank: uri for uri, rank in ranked}
        for rank in split.ranks:
            separator = spark.free_separator(self.session, uris[rank])
            if separator is None:
                raise EngineError(
                    f"file {keys[rank]} holds a NUL byte and every other ASCII control "
                    f"byte, so engine '{self.name}' ({redact(self.remote)}) cannot read it whole "
                    "and number its lines; no table was changed: remove the file from the "
                    'window (or repair it), or run this courier with engine = "duckdb"',
                    engine=self.name,
                )
            self._separators[rank] = separator
        return self._lines(ranked, pieces=True)

    def _fits_whole(self, files: list[WindowFile], uris: list[str], whole: bool = False) -> None:
        """A server that reads each file whole (no offsets for a file's parts: Sail; and every
        server for a decoded format, `whole`) holds a file in one value: a file bigger than one
        value holds is refused before any job, by name, instead of failing on the cluster with
        an overflow after reading it."""
        if not uris or (not whole and self._in_parts(uris[0])):
            return
        why = (
            "a decoded format's file is decoded in one piece"
            if whole
            else "its reader does not say where a part of a file begins, which numbering the "
            "lines needs"
        )
        for f in files:
            if f.size > spark.WHOLE_FILE_LIMIT:
                raise EngineError(
                    f"file {f.key} is {f.size:,} bytes, and engine '{self.name}' "
                    f"({redact(self.remote)}) reads each file whole, in one value of at "
                    f"most {spark.WHOLE_FILE_LIMIT:,} bytes ({why}); no table was "
                    "changed: land the stream in smaller parts (the stream's roll_bytes) or "
                    "split the file, or run this courier on Apache Spark, which reads a file "
                    "in parts",
                    engine=self.name,
                )

    def schema(
        self,
        lines: Any,
        files: list[tuple[str, int]],
        pinned: dict[str, str] | None,
        every_key: bool = True,
    ) -> dict[str, str]:
        """The window's schema as DuckDB would detect it: DuckDB's detection over a bounded
        sample of the cluster's lines (the first lines of each file, and with `every_key` the
        lines holding a top-level key the sample lacks, from a scan of every line's keys),
        widening the pinned schema as the DuckDB engine does."""
        from pyspark.sql import functions as F

        per_file = max(SAMPLE_MIN_PER_FILE, SAMPLE_RECORDS // max(1, len(files)))
        if self._heads is not None and self._decoded is None:
            sample = self._sample_heads([rank for _, rank in files], per_file, SAMPLE_LIMIT)
        else:
            head = self._lines(files, per_file)
            head = head.where(spark.is_object(F.col("value"))).orderBy(RANK, spark.LINE)
            sample = head.limit(SAMPLE_LIMIT).select("value").toArrow().column(0).to_pylist()
        detected = detect(sample)
        if every_key:
            keys = F.json_object_keys("value")
            # a line that is not an object has no keys: one parse per line, no object check
            scan = lines.select(F.explode(keys)).distinct().limit(KEYS_LIMIT)
            late = [r[0] for r in scan.collect() if r[0] not in detected]
            if late:  # keys first seen after the sample: their lines join it
                good = lines.where(spark.is_object(F.col("value")))
                wanted = F.array(*[F.lit(k) for k in late])
                more = good.where(F.arrays_overlap(keys, wanted)).limit(SAMPLE_LIMIT // 4)
                detected = detect(sample + [r[0] for r in more.select("value").collect()])
        schema = dict(pinned or {})
        schema.update(detected)
        return schema

    def _sample_heads(self, ranks: list[int], per_file: int, limit: int | None) -> list[str]:
        """The schema sample from the files' heads, read through courier's storage: the lines
        the cluster's sample takes (each file's first `per_file` lines that are objects, in
        window order, `limit` at most), for a few ranged reads (HEAD_READERS at a time)
        instead of a pass over the window (Sail reads each file whole to take its first
        lines: 0.5 s of a 200 MB first run on 2 cores)."""
        heads = self._heads
        assert heads is not None
        window = [self._window[rank] for rank in sorted(ranks)]

        def lines_of(f: WindowFile) -> list[str]:
            return first_lines(partial(heads, f), f.size, per_file)

        sample: list[str] = []
        with ThreadPoolExecutor(HEAD_READERS) as pool:
            for start in range(0, len(window), HEAD_READERS):
                chunk = window[start : start + HEAD_READERS]
                got = [line for lines in pool.map(lines_of, chunk) for line in lines]
                # objects only: detect skips a line that starts as one but is not JSON
                sample += [line for line in got if line.lstrip().startswith("{")]
                if limit is not None and len(sample) >= limit:
                    return sample[:limit]
        return sample

    def _agrees(self, parsed: Any, pinned: dict[str, str]) -> bool:
        """agrees, over the files' heads when courier's storage reads them and the window has
        at most HEADS_CHECK_FILES files (0.3 s of a 200 MB steady run on Sail from the
        cluster; many remote files cost more in requests than the cluster's look at its
        parsed lines), else over the parsed lines."""
        from courier.engines.duckdb import STEADY_SAMPLE_PER_FILE

        heads = None
        if (
            self._heads is not None
            and self._decoded is None
            and len(self._window) <= HEADS_CHECK_FILES
        ):
            heads = self._sample_heads(list(self._window), STEADY_SAMPLE_PER_FILE, None)
        return agrees(parsed, pinned, heads)

    def read(
        self,
        tag: str,
        files: list[WindowFile],
        uris: list[str],
        pinned: dict[str, str] | None,
        fmt: str = "ndjson",
        options: dict[str, Any] | None = None,
        heads: Callable[[WindowFile, int], bytes] | None = None,
    ) -> tuple[Any, InputSummary, int]:
        """The tag's records on the cluster (a temp view named `tag` for queries), its summary
        (bounded bad lines), and how many lines were bad. CBOR, XML and JSON documents are
        decoded on the cluster into JSON lines first (spark.read_decoded), written once.
        `heads` reads a file's first bytes through courier's storage: the schema sample is
        then taken from them, not from the cluster."""
        keys = {f.rank: f.key for f in files}
        self._heads, self._window = heads, {f.rank: f for f in files}
        self._fits_whole(files, uris, whole=fmt != "ndjson")
        try:
            ranked = list(zip(uris, [f.rank for f in files], strict=True))
            if fmt != "ndjson":
                named = [(uri, rank, keys[rank]) for uri, rank in ranked]
                decoded = spark.read_decoded(self.session, named, fmt, options or {})
                self._decoded = self._once(decoded, "decoded")
            lines = self._lines(ranked, pieces=True)
            # steady state: the pinned schema; a new courier: the sample's. Either is read
            # unless the parse finds a key it lacks (or, pinned, a value it cannot read or first
            # lines detected as other types): the schema is then detected over the sample and
            # every line's keys, and the window parsed again
            columns = dict(pinned) if pinned else self.schema(lines, ranked, None, every_key=False)
        except Exception as exc:
            raise self._fail(exc, f"cannot read the window's files ({uris[0]}, ...)") from exc
        try:
            try:
                parsed = self._parse(lines, columns, "steady" if pinned else "new")
            except _SplitFiles as split:  # once: the files are read again at a byte they lack
                lines = self._read_whole_again(split, ranked, keys)
                parsed = self._parse(lines, columns, "steady" if pinned else "new")
            if parsed is None:
                columns = self.schema(lines, ranked, pinned)
                parsed = self._parse(lines, columns, None)
            assert parsed is not None
            df, bad_count, records_in = parsed
        except EngineError:
            raise
        except Exception as exc:
            raise self._fail(exc, f"cannot read file tag {tag!r}") from exc
        summary = InputSummary(tag=tag, schema=dict(columns), records=records_in)
        if pinned is not None:
            from courier.engines.duckdb import schema_changes

            summary.schema_changes = schema_changes(pinned, columns)
        try:
            if bad_count:
                # counted with the parse: only the bounded sample is fetched
                for rank, line, why, text in spark.bad_lines(df, BAD_LIMIT):
                    item = spark_decode.bad_record(text or "")
                    if item is not None:  # an item the format's reader could not take
                        summary.bad.append(BadRecord(keys[rank], line or None, *item))
                        continue
                    stripped = (text or "").strip().encode("utf-8", "surrogateescape")
                    _, reason = parse_line(stripped)
                    summary.bad.append(
                        BadRecord(keys[rank], line, reason or why, (text or "").strip()[:RAW_LIMIT])
                    )
            records = spark.records(df)
            records.drop(RANK, spark.LINE).createOrReplaceTempView(tag)
            records.createOrReplaceTempView(placed(tag))
        except EngineError:
            raise
        except Exception as exc:
            raise self._fail(exc, f"cannot read file tag {tag!r}") from exc
        return records, summary, bad_count

    def _parse(
        self, lines: Any, columns: dict[str, str], check: str | None
    ) -> tuple[Any, int, int] | None:
        """The lines (with spark.PIECE) parsed with `columns` (written once), and how many are
        bad and good. None when the check fails: a line holds a key `columns` lacks ("new",
        "steady"), a value they cannot read, or each file's first lines are detected as other
        types ("steady", the DuckDB engine's check); the caller then detects the schema and
        parses again. _SplitFiles when a file read whole came in pieces."""
        from pyspark.sql import functions as F

        parsed = self._once(spark.parse_text(lines, columns, pieces=True), "parsed")
        typed = spark.typed_lines(parsed, columns, pieces=True)
        line = F.trim("value") != ""  # a piece's first line is kept even when blank
        bad = F.col("_courier_bad")
        unreadable = bad.isNotNull() & bad.startswith("field ")
        totals = typed.agg(
            F.count(F.when(line, 1)).alias("n"),
            F.sum(F.when(line & bad.isNotNull(), 1).otherwise(0)).alias("bad"),
            F.sum(F.when(line & unreadable, 1).otherwise(0)).alias("unreadable"),
            F.sum(spark.PIECE).alias("pieces"),
            F.count_distinct(RANK).alias("files"),
        ).collect()[0]
        if (totals["pieces"] or 0) > totals["files"]:
            pieces = parsed.groupBy(RANK).agg(F.sum(spark.PIECE).alias("n")).where("n > 1")
            raise _SplitFiles(sorted(r[0] for r in pieces.select(RANK).collect()))
        df = typed.where(line).drop(spark.PIECE)
        if check == "steady" and totals["unreadable"]:
            return None
        if check and spark.new_keys(parsed):
            return None
        if check == "steady" and not self._agrees(parsed, columns):
            return None
        bad_count = int(totals["bad"] or 0)
        return df, bad_count, int(totals["n"]) - bad_count

    # -- prepare one load operation ----------------------------------------------------------
    def prepare(
        self,
        courier: CourierConfig,
        load: FeedLoad,
        tag_rows: Any,
        files: list[WindowFile],
        path: str,
        run_id: str,
        loaded_at: datetime,
        schema: dict[str, str],
    ) -> FeedJob:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        feed = load.feed
        keys = {f.rank: f.key for f in files}
        mapping = F.create_map(*[x for r, k in keys.items() for x in (F.lit(r), F.lit(k))])
        if load.query is not None:
            from courier.analyst.crossengine import spark_text

            query = load.query
            text = spark_text(query, {courier.file_tag: schema})
            # each row keeps its input record's place where the query's shape lets it through
            carried = carry_record_order(
                text, {courier.file_tag: placed(courier.file_tag)}, "spark"
            )
            source = None
            for attempt in [t for t in (carried, text) if t is not None]:
                try:
                    source = self.session.sql(attempt)
                    source.schema  # noqa: B018 - the cluster analyses the query now
                    break
                except Exception as exc:
                    source, carried = None, None
                    if attempt is not text:
                        continue
                    error = engine_error(self.name, self.remote, exc, query.name)
                    twin = query.path_for("spark")
                    where = twin if twin.is_file() else query.path
                    raise EngineError(
                        f"{error} ({where.name}); feed {feed.id} was not changed: fix the "
                        f"query and check it with `courier query test {query.name}`",
                        engine=self.name,
                        query=query.name,
                    ) from exc
            assert source is not None
            # the result's order (partition, then position): the tie-break after the place
            source = source.withColumn(ORD, F.monotonically_increasing_id())
            # one partition on purpose: the position in the whole result (only rejects need it)
            position = F.row_number().over(Window.partitionBy(F.lit(0)).orderBy(ORD))
            if carried is not None:
                file_expr = mapping[F.col(RANK)]
                line_expr = F.coalesce(F.col(spark.LINE), position)
            else:
                file_expr = F.lit(None).cast("string")
                line_expr = position
        else:
            source = tag_rows
            file_expr = mapping[F.col(RANK)]
            line_expr = F.col(spark.LINE)
        incoming = {
            f.name: f.dataType
            for f in source.schema.fields
            if f.name not in (ORD, RANK, spark.LINE)
        }
        by_lower = {c.lower(): c for c in incoming}
        matched = {n: (n if n in incoming else by_lower.get(n.lower())) for n in feed.fields}
        used = {m for m in matched.values() if m}
        ignored = [c for c in incoming if c not in used]
        selects, reasons = [], []
        for name, ftype in feed.fields.items():
            target = spark_feed_type(ftype)
            src = matched[name]
            if src is None:
                selects.append(F.lit(None).cast(target).alias(name))
                if name in feed.not_null:
                    reasons.append(F.lit(f"{name}: required field is missing"))
                continue
            col = F.col(_name(src))
            cast = _cast(col, incoming[src], ftype)
            selects.append(cast.alias(name))
            if ftype != "json" and incoming[src].simpleString() != target.lower():
                uncastable = col.isNotNull() & cast.isNull()
                why_cast = F.concat(
                    F.lit(f"{name}: cannot cast "),
                    F.substring(col.cast("string"), 1, 60),
                    F.lit(f" to {ftype}"),
                )
                reasons.append(F.when(uncastable, why_cast))
            if name in feed.not_null:
                reasons.append(F.when(col.isNull(), F.lit(f"{name}: required field is null")))
        if feed.unknown_columns == "reject":
            for c in ignored:
                why = F.lit(f"{c}: column is not in feed {feed.id}")
                reasons.append(F.when(F.col(_name(c)).isNotNull(), why))
        reason = F.concat_ws("; ", *reasons) if reasons else F.lit("")
        order_cols = [c for c in (RANK, spark.LINE, ORD) if c in source.columns]
        staged = source.select(*selects, *[F.col(c) for c in order_cols], reason.alias(REASON))
        try:
            staged = self._once(staged, f"feed-{feed.id}")
            totals = staged.agg(
                F.count(F.lit(1)).alias("n"),
                F.sum(F.when(F.col(REASON) != "", 1).otherwise(0)).alias("rejected"),
            ).collect()[0]
        except Exception as exc:
            raise self._fail(
                exc,
                f"feed {feed.id}: the cluster cannot cast the rows to the feed's types "
                f"(feeds/{feed.id}.toml); no table was changed",
            ) from exc
        read, rejected = int(totals["n"]), int(totals["rejected"] or 0)
        samples: list[BadRecord] = []
        if rejected:
            visible = [F.col(_name(c)) for c in incoming]
            raw = F.to_json(F.struct(*visible)) if visible else F.lit("{}")
            numbered = source.select(
                "*",
                file_expr.alias("_courier_file"),
                line_expr.alias("_courier_qline"),
                raw.alias("_courier_raw"),
                reason.alias(REASON),
            ).where(F.col(REASON) != "")
            order = [F.col(c).asc_nulls_last() for c in order_cols]
            for r in (
                numbered.orderBy(*order)
                .limit(BAD_LIMIT)
                .select("_courier_file", "_courier_qline", REASON, "_courier_raw")
                .collect()
            ):
                samples.append(BadRecord(r[0], int(r[1]), r[2], (r[3] or "")[:RAW_LIMIT]))
        good = staged.where(F.col(REASON) == "").drop(REASON)
        replaced = 0  # rows a later row of their key replaces
        if feed.primary_key:
            # the repeated keys and their last rows are written once (a few, mostly); the rows
            # the write reads are the cast rows less those keys, plus those last rows
            key = feed.primary_key
            repeated = self._once(spark.repeated_keys(good, key), f"repeated-{feed.id}")
            replaced = spark.replaced_rows(repeated)
            if replaced:
                last = partial(self._once, what=f"last-{feed.id}")
                good = spark.last_record_wins(good, key, order_cols, repeated, last)
        rows = good.select(
            *[F.col(_name(n)) for n in feed.fields],
            F.lit(run_id).alias(RUN_ID),
            F.lit(loaded_at.isoformat()).cast("timestamp").alias(LOADED_AT),
        )
        counts = FeedCounts(read=read, loaded=read - rejected - replaced, rejected=rejected)
        return FeedJob(load, path, rows, counts, samples, ignored)

    # -- commit ------------------------------------------------------------------------------
    def write(self, job: FeedJob) -> None:
        """The cluster writes the feed's Delta table: overwrite (truncateAndLoad), MERGE on the
        primary key, or append; an empty source writes nothing (and leaves no trace)."""
        feed = job.load.feed
        if not job.counts.loaded and not job.load.truncate_first:
            return
        mode = "truncateAndLoad" if job.load.truncate_first else "load"
        try:
            _write(self.session, job.rows, job.path, feed.primary_key, mode, job.counts.loaded)
        except Exception as exc:
            raise self._fail(
                exc, f"feed {feed.id}: the cluster could not write the Delta table {job.path}"
            ) from exc

    def committed(self, paths: list[str], run_id: str) -> bool:
        """Did run `run_id` commit? Every table it writes holds rows carrying its id."""
        try:
            return bool(paths) and all(spark.committed(self.session, p, run_id) for p in paths)
        except Exception as exc:
            raise self._fail(exc, f"cannot tell whether run {run_id} committed") from exc


def first_lines(read_head: Callable[[int], bytes], size: int, count: int) -> list[str]:
    """The non-blank lines among an object's first `count` lines (blank ones counted, as
    the cluster numbers them), from ranged reads of its head: HEAD_FIRST_READ bytes, four
    times more while the lines are too few, HEAD_LIMIT at most (then the complete lines
    read)."""
    want = min(size, HEAD_FIRST_READ)
    while True:
        data = read_head(want) if want > 0 else b""
        whole = len(data) >= size or len(data) < want
        lines = data.split(b"\n")
        if not whole:
            lines.pop()  # cut by the read
        if whole or len(lines) >= count or want >= HEAD_LIMIT:
            break
        want = min(size, want * 4, HEAD_LIMIT)
    text = (raw.decode("utf-8", "replace").removesuffix("\r") for raw in lines[:count])
    return [line for line in text if line.strip()]


def detect(lines: list[str]) -> dict[str, str]:
    """DuckDB's schema detection over NDJSON lines that start as objects (a bounded sample);
    a line that is not JSON after all is skipped."""
    import tempfile

    import duckdb

    from courier.engines.duckdb import describe

    if not lines:
        return {}
    with tempfile.TemporaryDirectory(prefix="courier-spark-schema-") as tmp:
        path = Path(tmp) / "sample.ndjson"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        con = duckdb.connect()
        try:
            source = (
                f"read_json('{path}', format = 'newline_delimited', records = true, "
                "sample_size = -1, ignore_errors = true)"
            )
            return describe(con, f"SELECT * FROM {source}")
        finally:
            con.close()


def agrees(parsed: Any, pinned: dict[str, str], lines: list[str] | None = None) -> bool:
    """Does DuckDB's detection over the first STEADY_SAMPLE_PER_FILE lines of each file give
    the pinned types? The DuckDB engine's steady-state check. The lines come from
    parse_text's rows, or are given (`lines`: read from the files' heads)."""
    from pyspark.sql import functions as F

    from courier.engines.duckdb import STEADY_SAMPLE_PER_FILE

    if lines is None:
        head = parsed.where(
            (F.col(spark.LINE) <= STEADY_SAMPLE_PER_FILE) & F.col(spark.NEW_KEYS).isNotNull()
        )
        lines = [r[0] for r in head.orderBy(RANK, spark.LINE).select("value").collect()]
    seen = detect(lines)
    return all(pinned.get(k) == v for k, v in seen.items())


def placed(tag: str) -> str:
    """The temp view of a tag's records with their place (RANK, LINE) on the cluster."""
    return f"_courier_placed_{tag}"


def _cast(col: Any, incoming: Any, feed_type: str) -> Any:
    """DuckDB's cast rules (destinations/duckdb.py cast_expr) in Spark."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    nested = isinstance(incoming, (T.StructType, T.ArrayType, T.MapType))
    target = spark_feed_type(feed_type)
    if feed_type == "json":
        if nested:
            return F.to_json(col)
        return col.cast("string")
    if feed_type == "timestamp" and isinstance(incoming, (T.LongType, T.IntegerType)):
        return F.timestamp_millis(col)
    if incoming.simpleString() == target.lower():
        return col
    if feed_type == "string" and nested:
        return F.to_json(col)
    return col.try_cast(target)


def _write(
    session: Any, rows: Any, path: str, key: list[str], mode: str, count: int | None = None
) -> None:
    """`rows` (`count` of them, when known) into the Delta table at `path`: overwrite, append,
    or an upsert on `key`, which rewrites the table when the rows are at least REWRITE_SHARE
    of it and MERGEs otherwise."""
    if mode == "truncateAndLoad" or not spark.table_exists(session, path):
        rows.write.format("delta").mode("overwrite").save(path)
        return
    if not key:
        rows.write.format("delta").mode("append").save(path)
        return
    table = session.read.format("delta").load(path)
    if count is not None and count >= REWRITE_SHARE * table.count():
        from pyspark.sql import functions as F

        # the table's rows the upsert does not replace, and the upsert's: one overwrite commit
        kept = table.join(rows.select(*[F.col(_name(k)) for k in key]), key, "left_anti")
        kept.unionByName(rows).write.format("delta").mode("overwrite").save(path)
        return
    view = "_courier_src"
    rows.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{_name(k)} = s.{_name(k)}" for k in key)
    session.sql(
        f"MERGE INTO delta.{_name(path)} AS t USING {view} AS s ON {on} "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    ).collect()


def refuse_format(engine: str, remote: str, courier: CourierConfig) -> None:
    """CBOR, XML and JSON documents are decoded on the cluster into JSON lines (spark_decode);
    their `decode = "arrow"` route is the DuckDB engine's own (types from Arrow, not JSON)."""
    if courier.format != "ndjson" and courier.options.model_dump().get("decode") == "arrow":
        raise EngineError(
            f'courier {courier.name}: options.decode = "arrow" cannot run on Spark engine '
            f"'{engine}' ({redact(remote)}): the cluster decodes {courier.format} files into "
            'JSON lines. Remove decode = "arrow" from the courier\'s options (the default '
            '"json" loads the same feed types), or set engine = "duckdb" for this courier',
            engine=engine,
        )


def refuse_escaped_path(engine: str, remote: str, feed: FeedConfig, uri: str) -> None:
    """A Delta table path the cluster would write elsewhere: Sail 0.7 writes a new table at
    its percent-encoded path (measured: `with space` became a folder named `with%20space`, where
    courier and every reader look in vain) and fails each later write there."""
    if quote(uri, safe=":/@=+,;~") != uri:
        raise EngineError(
            f"feed {feed.id}: its Delta table {uri} has a character in its path that a URI "
            f"escapes (a space?), and engine '{engine}' ({redact(remote)}) may write the "
            "table at the escaped path instead (Sail does: a folder named with %20) and then "
            "fail to find it; no table was changed: move the destination's storage (or the "
            'project) to a path without one, or set engine = "duckdb" for this courier',
            engine=engine,
        )


def refuse_destination(engine: str, feed: FeedConfig, destination: Any) -> None:
    if getattr(destination, "type", None) != "delta":
        raise LoadError(
            f"feed {feed.id}: a Spark engine ('{engine}') writes feeds into Delta tables on "
            f"the cluster, but this feed's destination is {getattr(destination, 'type', '?')}: "
            'set destination = "NAME" of a [destinations.NAME] type = "delta" in '
            f'feeds/{feed.id}.toml (or [feeds] destination), or engine = "duckdb"'
        )
