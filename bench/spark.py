"""`make bench-spark`: the bench window through Sail (Spark Connect, no JVM) against courier's
DuckDB path, on the same files.

    python -m bench.spark          # BENCH_MB (default 200)

courier       Context.run("web_events", --date D) in steady state (schema pinned), then --reload
              (bench.run's courier contender, in this process).
sail          the Spark engine's building blocks (courier/engines/spark.py) on a Sail server
              started here on loopback: each file read on the cluster with its rank and line
              numbers, parsed with the schema courier pinned, the last record per event_id kept,
              the order_items query (courier's translation) run there, the rows written by the
              cluster into a Delta table (first load), then the same window MERGEd into it.

Records/s is input events per second of wall time. The Delta table is read back and compared
with courier's feed table (EXCEPT ALL both ways on the feed's columns): the rows must be equal.
Not yet the full engine: casts to the feed types and quarantine are not on this path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import human_rate, table
from bench.data import ensure_dataset
from bench.run import FEED, courier_load

REPO = Path(__file__).resolve().parents[1]


def start_sail(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.servers import start_sail as start

    return start(log)


def sail_load(session: Any, files: list[str], columns: dict[str, str], table_path: str) -> dict:
    from courier.engines import spark
    from courier.engines.spark_dialect import translate, with_order_columns

    sql = translate((REPO / "queries" / "order_items.sql").read_text(), "order_items", None, {})
    ordered = with_order_columns(sql.sql, ["web_events"], (spark.RANK, spark.LINE))
    assert ordered is not None
    keys = ["event_id", "item_idx"]
    out = {}
    for mode, run_id in (("truncateAndLoad", "bench-1"), ("load", "bench-2")):
        started = time.perf_counter()
        df = spark.read_ndjson(session, [(f, r) for r, f in enumerate(files)], columns)
        bad, _sample = spark.bad_records(df, 10)
        spark.records(df).createOrReplaceTempView("web_events")
        rows = spark.last_record_wins(session.sql(ordered), keys)
        spark.write_delta(session, rows, table_path, keys, mode, run_id)
        out[mode] = {"seconds": time.perf_counter() - started, "bad": bad}
    return out


def main() -> int:
    megabytes = int(os.environ.get("BENCH_MB", "200"))
    root = Path(os.environ.get("BENCH_DIR", REPO / "bench" / "data" / f"{megabytes}mb"))
    ds = ensure_dataset(root, megabytes)
    size = f"{len(ds.files)} files, {ds.bytes / 2**20:,.0f} MB, {ds.events:,} events"
    print(f"== bench.spark: {size} ==")
    duck = courier_load(str(ds.project), ds.day)
    columns = duck["pinned"]
    work = root / "spark"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    proc, remote = start_sail(work)
    try:
        from courier.engines.spark import connect

        session = connect("sail", remote)
        table_path = str(work / "feeds" / FEED)
        sail = sail_load(session, ds.files, columns, table_path)
        loaded = session.read.format("delta").load(table_path)
        same = compare(ds.project, loaded.drop("_courier_run_id").toArrow())
        session.stop()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    events = ds.events
    rows = [
        ["courier (DuckDB) load", f"{duck['seconds']:.1f}", human_rate(events / duck["seconds"])],
        [
            "courier (DuckDB) reload",
            f"{duck['reload']['seconds']:.1f}",
            human_rate(events / duck["reload"]["seconds"]),
        ],
        [
            "sail first load",
            f"{sail['truncateAndLoad']['seconds']:.1f}",
            human_rate(events / sail["truncateAndLoad"]["seconds"]),
        ],
        [
            "sail merge",
            f"{sail['load']['seconds']:.1f}",
            human_rate(events / sail["load"]["seconds"]),
        ],
    ]
    print(table(["path", "seconds", "records/s"], rows))
    ratio = (events / sail["truncateAndLoad"]["seconds"]) / (events / duck["seconds"])
    print(f"sail / courier records/s, first load: {ratio:.2f}x (target: within 2x, i.e. >= 0.5x)")
    print(f"rows identical to courier's feed table: {same}")
    return 0


def compare(project: Path, other: Any) -> str:
    import duckdb

    con = duckdb.connect(str(project / ".courier" / "feeds.duckdb"), read_only=True)
    cols = list(other.column_names)
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_name = '{FEED}'"
        ).fetchall()
    )
    con.register("other", other)
    sel = ", ".join(f'"{c}"' for c in cols)
    cast = ", ".join(f'CAST("{c}" AS {types[c]}) AS "{c}"' for c in cols)
    a = con.execute(
        f"SELECT count(*) FROM (SELECT {sel} FROM main.{FEED} EXCEPT ALL SELECT {cast} FROM other)"
    ).fetchall()[0][0]
    b = con.execute(
        f"SELECT count(*) FROM (SELECT {cast} FROM other EXCEPT ALL SELECT {sel} FROM main.{FEED})"
    ).fetchall()[0][0]
    con.close()
    return "yes" if a == 0 and b == 0 else f"no ({a} rows only in courier's, {b} only in Sail's)"


if __name__ == "__main__":
    sys.exit(main())
