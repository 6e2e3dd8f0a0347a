"""`make bench`: nested NDJSON -> flattening query -> upsert into a feed table, three ways.

    python -m bench.run            # ~200 MB (BENCH_MB=1024 for the 1 GB window)

Contenders, each in its own process on the same files (see bench/README.md for the exact SQL):

  courier        Context.run("web_events", --date D): the repository's web_events courier,
                 order_items query and feed (upsert on event_id, item_idx) into a fresh feed DB.
  duckdb-upsert  the same SQL by hand: read_json + the same SELECT + casts to the feed types
                 into a temp table, DELETE the keys it holds, INSERT with last-record-wins dedupe.
  duckdb-insert  the floor: one INSERT INTO feed SELECT ... FROM read_json(...), no dedupe.
  dlt            dlt pipeline, DuckDB destination, write_disposition="merge",
                 primary_key="event_id"; items become the child table web_events__items as dlt
                 does by itself. dlt is slow, so it gets the first BENCH_DLT_FILES hourly files.

Records/s is input events (NDJSON lines) per second of wall time for every contender; MB/s is
input bytes per second. Peak RSS is the contender process's ru_maxrss.

Environment: BENCH_MB (default 200), BENCH_DLT_FILES (default 2), BENCH_DIR (default
bench/data), BENCH_REPEAT=1 also times a second load of the same window into the full table.
The exit status is 0 even when a target fails: this is a report, printed loudly.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    MB,
    REPO,
    Clock,
    Measurement,
    Phases,
    human_rate,
    run_isolated,
    table,
)
from bench.data import Dataset, ensure_dataset

TARGET_VS_DUCKDB = 0.8
TARGET_VS_DLT = 10.0
TARGET_RSS = 1.5e9
FEED = "order_items"

FEED_DDL = """CREATE TABLE IF NOT EXISTS order_items (
    event_id VARCHAR, item_idx INTEGER, occurred_at TIMESTAMPTZ, customer_id BIGINT,
    customer_email VARCHAR, sku VARCHAR, qty INTEGER, price DECIMAL(12,2), page VARCHAR,
    context JSON, _courier_run_id VARCHAR, _courier_loaded_at TIMESTAMPTZ)"""

# queries/order_items.sql with the casts to the feed's types written in.
SELECT_SQL = """SELECT
    CAST(e.event_id AS VARCHAR) AS event_id,
    CAST(i.item_idx AS INTEGER) AS item_idx,
    CAST(e.occurred_at AS TIMESTAMPTZ) AS occurred_at,
    CAST(e.customer.id AS BIGINT) AS customer_id,
    CAST(e.customer.email AS VARCHAR) AS customer_email,
    CAST(i.item.sku AS VARCHAR) AS sku,
    CAST(i.item.qty AS INTEGER) AS qty,
    CAST(i.item.price AS DECIMAL(12,2)) AS price,
    CAST(e.context.page AS VARCHAR) AS page,
    to_json(e.context) AS context,
    'hand' AS _courier_run_id,
    now() AS _courier_loaded_at
FROM read_json({files}, format = 'newline_delimited') AS e,
     LATERAL (SELECT unnest(e.items) AS item, generate_subscripts(e.items, 1) AS item_idx) AS i"""

UPSERT_SQL = [
    "BEGIN",
    "CREATE OR REPLACE TEMP TABLE batch AS " + SELECT_SQL,
    "DELETE FROM order_items t USING batch b "
    "WHERE t.event_id = b.event_id AND t.item_idx = b.item_idx",
    "INSERT INTO order_items SELECT * FROM batch "
    "QUALIFY row_number() OVER (PARTITION BY event_id, item_idx ORDER BY rowid DESC) = 1",
    "DROP TABLE batch",
    "COMMIT",
]
INSERT_SQL = ["BEGIN", "INSERT INTO order_items " + SELECT_SQL, "COMMIT"]

CHECKSUM_SQL = (
    "SELECT count(*), sum(hash(event_id, item_idx, occurred_at, customer_id, customer_email, "
    "sku, qty, price, page, CAST(context AS VARCHAR))) FROM order_items"
)


# -- contenders (each runs in its own process through bench.common) -------------------------------
def courier_load(project: str, day: str, repeat: bool = False) -> dict[str, Any]:
    import duckdb

    import courier.destinations.duckdb
    import courier.engines.duckdb
    import courier.state.duckdb  # noqa: F401 - imported before the clock, as duckdb is for the hand
    from courier.context import Context
    from courier.project import load_project

    db = Path(project) / ".courier" / "feeds.duckdb"
    for leftover in (db, db.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(Path(project) / ".courier" / "tmp", ignore_errors=True)
    phases = profile_statements()

    def once(reload: bool) -> tuple[Clock, dict[str, Any]]:
        phases.seconds.clear()
        with Clock() as clock:
            ctx = Context(load_project(project))
            window = ctx.window(ctx.project.courier("web_events"), date=day)
            result = ctx.run("web_events", window, datetime.now(UTC), reload=reload)
        return clock, result

    clock, result = once(False)
    if repeat:
        clock, result = once(True)
    if result["status"] != "succeeded":
        raise RuntimeError(f"courier run {result['status']}: {result['error']}")
    con = duckdb.connect(str(db), read_only=True)
    rows, checksum = con.execute(CHECKSUM_SQL).fetchone()  # type: ignore[misc]
    con.close()
    return {
        **clock.report(),
        "records": result["records"],
        "bytes": result["bytes"],
        "rows": rows,
        "checksum": str(checksum),
        "feed": result["feeds"][FEED],
        "run_duration_s": result["duration_s"],
        "phases": dict(phases.seconds),
    }


# Where a courier run spends its time, by the SQL statements it sends to DuckDB.
PHASES = [
    ("schema: sampled detection", re.compile(r"^DESCRIBE SELECT \* FROM read_json")),
    ("schema: top-level keys and count", re.compile(r"json_keys\(")),
    ("read files into the tag table", re.compile(r"TEMP TABLE \"_courier_in_")),
    ("read files + run the saved query", re.compile(r"TEMP TABLE \"_courier_q_")),
    (
        "reject check (casts, required)",
        re.compile(r"^SELECT count\(\*\) FROM \"_courier_q_.*WHERE"),
    ),
    ("stage + quarantine", re.compile(r"_courier_stage_|courier\.quarantine")),
    ("delete replaced keys", re.compile(r"^DELETE FROM")),
    ("insert into the feed", re.compile(r"^INSERT INTO \"\w+\"\.\"main\"")),
    ("dedupe (last record wins)", re.compile(r"_courier_dups_|_courier_losers_|QUALIFY")),
    ("commit", re.compile(r"^COMMIT")),
]


def profile_statements() -> Phases:
    """Time every statement a courier run sends to DuckDB, by phase (bench only: it wraps the
    workspace's connection in a timing proxy)."""
    import courier.context

    phases = Phases()
    real_open = courier.context.open_workspace

    class Timed:
        def __init__(self, con: Any):
            self._con = con

        def execute(self, sql: str, *args: Any) -> Any:
            text = " ".join(str(sql).split())
            name = next((n for n, rx in PHASES if rx.search(text)), "other (state, counts)")
            with phases(name):
                return self._con.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._con, name)

    def open_timed(project: Any, read_only: bool = False) -> Any:
        ws = real_open(project, read_only)
        timed = Timed(ws.connection)
        parts: list[Any] = [ws.engine, ws.destination, ws.state]
        for part in parts:
            if getattr(part, "con", None) is ws.connection:
                part.con = timed
        return ws

    courier.context.open_workspace = open_timed  # type: ignore[assignment]
    return phases


def hand_duckdb(
    files: list[str],
    db: str,
    nbytes: int,
    upsert: bool = True,
    repeat: bool = False,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    import duckdb

    for leftover in (Path(db), Path(db + ".wal")):
        leftover.unlink(missing_ok=True)
    statements = UPSERT_SQL if upsert else INSERT_SQL
    file_list = "[" + ", ".join(f"'{f}'" for f in files) + "]"

    def once() -> Clock:
        with Clock() as clock:
            con = duckdb.connect(db)
            con.execute("SET TimeZone = 'UTC'")
            if memory_limit:
                con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(FEED_DDL)
            for sql in statements:
                con.execute(sql.format(files=file_list))
            con.close()
        return clock

    clock = once()
    if repeat:
        clock = once()
    con = duckdb.connect(db, read_only=True)
    rows, checksum = con.execute(CHECKSUM_SQL).fetchone()  # type: ignore[misc]
    events = con.execute(
        f"SELECT count(*) FROM read_json({file_list}, format = 'newline_delimited', "
        "columns = {'event_id': 'VARCHAR'})"
    ).fetchone()[0]  # type: ignore[index]
    con.close()
    return {
        **clock.report(),
        "records": events,
        "bytes": nbytes,
        "rows": rows,
        "checksum": str(checksum),
    }


def dlt_load(files: list[str], workdir: str, nbytes: int, events: int) -> dict[str, Any]:
    import dlt
    import duckdb
    import orjson

    shutil.rmtree(workdir, ignore_errors=True)
    Path(workdir).mkdir(parents=True)
    db = str(Path(workdir) / "dlt.duckdb")

    @dlt.resource(name="web_events", write_disposition="merge", primary_key="event_id")
    def web_events() -> Any:
        for path in files:
            with open(path, "rb") as f:
                batch = []
                for line in f:
                    batch.append(orjson.loads(line))
                    if len(batch) == 10_000:
                        yield batch
                        batch = []
                if batch:
                    yield batch

    with Clock() as clock:
        pipeline = dlt.pipeline(
            pipeline_name="bench_web_events",
            destination=dlt.destinations.duckdb(db),
            dataset_name="bench",
            pipelines_dir=str(Path(workdir) / "pipelines"),
        )
        pipeline.run(web_events())
    con = duckdb.connect(db, read_only=True)
    parents = con.execute("SELECT count(*) FROM bench.web_events").fetchone()[0]  # type: ignore[index]
    children = con.execute("SELECT count(*) FROM bench.web_events__items").fetchone()[0]  # type: ignore[index]
    con.close()
    return {
        **clock.report(),
        "records": events,
        "bytes": nbytes,
        "rows": parents,
        "child_rows": children,
        "dlt_version": dlt.__version__,
    }


def count_events(files: list[str]) -> int:
    n = 0
    for path in files:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                n += chunk.count(b"\n")
    return n


# -- the report --------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def dlt_available() -> str | None:
    try:
        import dlt  # noqa: F401
    except ImportError as exc:
        return f"dlt is not installed ({exc}); install it with .venv/bin/pip install -e '.[bench]'"
    return None


def best(measurements: list[Measurement]) -> Measurement:
    """The fastest successful run (the machine is shared: the minimum is the least disturbed);
    its peak RSS is the largest seen in any run."""
    ok = [m for m in measurements if m.ok]
    if not ok:
        return measurements[-1]
    chosen = min(ok, key=lambda m: m.seconds)
    chosen.peak_rss = max(m.peak_rss for m in measurements)
    chosen.detail["all_seconds"] = [round(m.seconds, 2) for m in ok]
    return chosen


def main() -> int:
    megabytes = int(os.environ.get("BENCH_MB", "200"))
    dlt_files = int(os.environ.get("BENCH_DLT_FILES", "2"))
    rounds = max(1, int(os.environ.get("BENCH_RUNS", "3")))
    repeat = os.environ.get("BENCH_REPEAT", "0") == "1"
    root = Path(os.environ.get("BENCH_DIR", str(REPO / "bench" / "data"))).resolve()
    print(f"== courier bench: nested NDJSON -> order_items upsert, BENCH_MB={megabytes} ==")
    ds: Dataset = ensure_dataset(root, megabytes)
    print(
        f"data: {ds.events:,} events, {ds.item_rows:,} item rows, {ds.bytes / MB:,.0f} MB in "
        f"{len(ds.files)} hourly files ({ds.landing}); {os.cpu_count()} CPUs, "
        f"best of {rounds} run(s)"
    )
    work = root / "work"
    work.mkdir(exist_ok=True)
    dlt_missing = dlt_available()
    if dlt_missing:
        print(f"dlt: NOT RUN - {dlt_missing}")
    subset, subset_bytes = ds.subset(dlt_files)
    contenders: list[tuple[str, str, dict[str, Any]]] = [
        ("courier", "bench.run:courier_load", {"project": str(ds.project), "day": ds.day}),
        ("duckdb-upsert", "bench.run:hand_duckdb", {
            "files": ds.files, "db": str(work / "hand.duckdb"), "nbytes": ds.bytes,
            "upsert": True,
        }),
        ("duckdb-insert", "bench.run:hand_duckdb", {
            "files": ds.files, "db": str(work / "plain.duckdb"), "nbytes": ds.bytes,
            "upsert": False,
        }),
    ]  # fmt: skip
    hand_limit = os.environ.get("BENCH_HAND_MEMORY_LIMIT")
    if hand_limit:  # the hand upsert under courier's memory limit, for information
        contenders.append(("duckdb-upsert-limited", "bench.run:hand_duckdb", {
            "files": ds.files, "db": str(work / "limited.duckdb"), "nbytes": ds.bytes,
            "upsert": True, "memory_limit": hand_limit,
        }))  # fmt: skip
    for _, _, kwargs in contenders:
        kwargs["repeat"] = repeat
    if not dlt_missing:
        contenders.append(("dlt", "bench.run:dlt_load", {
            "files": subset, "workdir": str(work / "dlt"), "nbytes": subset_bytes,
            "events": count_events(subset),
        }))  # fmt: skip

    only = [n for n in os.environ.get("BENCH_ONLY", "").split(",") if n]
    if only:  # e.g. BENCH_ONLY=courier,duckdb-upsert while working on the courier path
        contenders = [c for c in contenders if c[0] in only or c[0] == "courier"]
    results: dict[str, list[Measurement]] = {name: [] for name, _, _ in contenders}
    for n in range(rounds):  # round robin, so a busy spell on the machine hits everyone alike
        for name, target, kwargs in contenders:
            if name == "dlt" and n > 0:
                continue  # ~100x slower: once is enough for the 10x target
            label = f"{name} (run {n + 1}/{rounds})" if rounds > 1 and name != "dlt" else name
            print(f"running {label} ...", flush=True)
            m = run_isolated(name, target, kwargs, env={"RUNTIME__DLTHUB_TELEMETRY": "false"})
            if m.ok:
                print(
                    f"  {m.seconds:.2f} s (CPU {m.cpu_seconds:.1f} s), "
                    f"{human_rate(m.records_per_s)} records/s, peak RSS {m.peak_rss / MB:,.0f} MB",
                    flush=True,
                )
            else:
                print(f"  FAILED: {m.error}", flush=True)
            results[name].append(m)
    runs = [best(results[name]) for name, _, _ in contenders]
    by_name = {m.name: m for m in runs}
    courier = by_name["courier"]
    hand = by_name.get("duckdb-upsert", Measurement("duckdb-upsert", error="not run"))
    dlt = by_name.get("dlt")

    print()
    what = (
        "second load of the same window into the full table"
        if repeat
        else ("first load into an empty feed table")
    )
    print(f"== results: {what}; records = input events (NDJSON lines) ==")
    rows = []
    for m in runs:
        if m.ok:
            rows.append([
                m.name, f"{m.records:,}", f"{m.bytes / MB:,.0f}", f"{m.seconds:.2f}",
                f"{m.cpu_seconds:.1f}", human_rate(m.records_per_s), f"{m.mb_per_s:,.1f}",
                f"{m.peak_rss / MB:,.0f}", f"{m.detail.get('rows', 0):,}",
            ])  # fmt: skip
        else:
            rows.append([m.name, "-", "-", "-", "-", "-", "-", f"{m.peak_rss / MB:,.0f}", "FAILED"])
    print(table(
        ["contender", "records", "MB", "wall s", "CPU s", "records/s", "MB/s", "peak RSS MB",
         "feed rows"],
        rows,
    ))  # fmt: skip
    if rounds > 1:
        for m in runs:
            print(f"  {m.name}: wall seconds of each run {m.detail.get('all_seconds')}")
    if dlt is not None and dlt.ok:
        print(
            f"dlt ran on the first {dlt_files} of {len(ds.files)} hourly files "
            f"({dlt.records:,} events, {dlt.bytes / MB:,.0f} MB -> {dlt.detail['rows']:,} rows "
            f"in web_events + {dlt.detail['child_rows']:,} in web_events__items, "
            f"dlt {dlt.detail['dlt_version']}); records/s are compared."
        )
    if courier.ok and hand.ok:
        same = courier.detail["checksum"] == hand.detail["checksum"]
        print(
            f"courier and duckdb-upsert feed tables identical "
            f"({courier.detail['rows']:,} rows, checksum of every column): "
            f"{'yes' if same else 'NO'}"
        )
        feed = courier.detail["feed"]
        print(
            f"courier run: read {feed['read']:,} rows from the query, loaded {feed['loaded']:,}, "
            f"rejected {feed['rejected']:,}"
        )
        phases = courier.detail.get("phases") or {}
        if phases:
            print()
            print("== where the courier run spends its time (fastest run, DuckDB statements) ==")
            total = courier.seconds
            prow = [[name, f"{s:.2f}", f"{100 * s / total:.0f}%"] for name, s in
                    sorted(phases.items(), key=lambda kv: -kv[1])]  # fmt: skip
            rest = total - sum(phases.values())
            prow.append(
                ["python (config, discovery, plan)", f"{rest:.2f}", f"{100 * rest / total:.0f}%"]
            )
            print(table(["phase", "seconds", "share"], prow))

    print()
    print("== targets (SPEC 7) ==")
    checks: list[tuple[str, str, bool | None]] = []
    notes: list[str] = []
    if courier.ok and hand.ok:
        r = courier.records_per_s / hand.records_per_s
        checks.append((
            f"courier / duckdb-upsert records/s >= {TARGET_VS_DUCKDB}x", f"{r:.2f}x",
            r >= TARGET_VS_DUCKDB,
        ))  # fmt: skip
        cpu = hand.cpu_seconds / courier.cpu_seconds if courier.cpu_seconds else 0.0
        notes.append(
            f"  (for information: by CPU seconds, which a busy shared machine disturbs less, "
            f"courier / duckdb-upsert = {cpu:.2f}x)"
        )
    else:
        checks.append(("courier / duckdb-upsert", "not measured (a contender failed)", None))
    if courier.ok and dlt is not None and dlt.ok:
        r = courier.records_per_s / dlt.records_per_s
        checks.append(
            (f"courier / dlt records/s >= {TARGET_VS_DLT:g}x", f"{r:.1f}x", r >= TARGET_VS_DLT)
        )
    else:
        why = dlt_missing or (dlt.error if dlt is not None else "not run")
        checks.append(("courier / dlt", f"not measured: {why}", None))
    if courier.ok:
        checks.append((
            f"courier peak RSS < {TARGET_RSS / 1e9:g} GB (window of {ds.bytes / MB:,.0f} MB)",
            f"{courier.peak_rss / MB:,.0f} MB", courier.peak_rss < TARGET_RSS,
        ))  # fmt: skip
    failed = []
    for name, value, ok in checks:
        print(f"  [{'N/A ' if ok is None else verdict(ok)}] {name}: {value}")
        if ok is not True:
            failed.append(name)
    for note in notes:
        print(note)
    if failed:
        print()
        print("!" * 78)
        print(f"!! TARGET NOT MET: {'; '.join(failed)}")
        print("!" * 78)
    else:
        print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
