"""`make bench-spark`: the bench window through `courier run` on Sail (Spark Connect, no JVM)
against the same courier on DuckDB into Delta, on the same files.

    python -m bench.spark          # BENCH_MB (default 200)

duckdb+delta  Context.run("web_events", --date D) into a Delta destination (delta-rs), a new
              courier's first run, then the same window again with --reload (a MERGE of every
              key into the table).
sail          the same courier with engine = "sail" (a Sail server started here on loopback):
              the cluster reads the files, detects the schema (DuckDB over a bounded sample),
              runs the order_items query (courier's translation), casts, counts rejects, keeps
              the last record per key and writes the Delta table; then --reload (MERGE).
              Both paths are timed warm: a first load into a throwaway project runs before
              (Sail's first queries after start-up cost seconds).

duckdb+delta-cbor, sail-cbor
              the same records landed as CBOR sequences (bench.cbor's landing), format =
              "cbor": DuckDB decodes them in courier's process; Sail decodes them on the
              cluster with courier's reader (binaryFile + mapInArrow, engines/spark_decode.py)
              and then takes the NDJSON path. BENCH_CBOR=0 leaves them out.

jvm-spark     Apache Spark's own Spark Connect server (JVM, local[2], from the pyspark wheel;
              no Delta jars here): the same building blocks (engines/spark_run.py) read the
              window, detect, run the query, cast and keep the last record per key, and
              write the rows as Parquet: the flatten's fidelity and speed, not Delta. Run twice
              in one session: a new courier (cold), then its next run (warm: the JVM warmed
              up, the schema the first run pinned, as an hourly run reads). BENCH_JVM=0 leaves
              it out.

Records/s is input events per second of wall time. The two Delta tables are compared on the
feed's columns (EXCEPT ALL both ways): the rows must be equal.
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
from bench.run import FEED

REPO = Path(__file__).resolve().parents[1]


def start_sail(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests.servers import start_sail as start

    return start(log)


LAKE_TOML = """
[storages.lake]
type = "local"
path = "{lake}"

[destinations.lake]
type = "delta"
storage = "lake"
path = "feeds"
"""
ENGINE_TOML = """
[engines.sail]
type = "spark"
remote = "{remote}"
"""


def lake_project(ds: Any, root: Path, remote: str | None) -> Path:
    """The bench project's courier into Delta feeds (on Sail when remote is given), reading the
    dataset's landed files in place."""
    shutil.rmtree(root, ignore_errors=True)
    for folder in ("config", "feeds", "queries"):
        shutil.copytree(ds.project / folder, root / folder)
    landing = (ds.project / ".courier" / "landing").resolve()
    toml = (root / "config" / "courier.toml").read_text()
    toml = toml.replace('path = ".courier/landing"', f'path = "{landing}"')
    toml = toml.replace("[feeds]", '[feeds]\ndestination = "lake"', 1)
    toml += LAKE_TOML.format(lake=(root / ".courier" / "lake").resolve())
    if remote:
        toml += ENGINE_TOML.format(remote=remote)
        courier = root / "config" / "couriers" / "web_events.toml"
        courier.write_text('engine = "sail"\n' + courier.read_text())
    (root / "config" / "courier.toml").write_text(toml)
    return root


def courier_run(project: Path, day: str, reload: bool) -> dict[str, Any]:
    from datetime import UTC, datetime

    from courier.context import Context
    from courier.validate import load_project

    started = time.perf_counter()
    ctx = Context(load_project(str(project)))
    window = ctx.window(ctx.project.courier("web_events"), date=day)
    result = ctx.run("web_events", window, datetime.now(UTC), reload=reload)
    if result["status"] != "succeeded":
        raise RuntimeError(f"courier run on {project.name}: {result['error']}")
    return {"seconds": time.perf_counter() - started, "result": result}


def jvm_flatten(ds: Any, project: Path, work: Path) -> tuple[list[float], int, Path]:
    """The bench window's flatten on JVM Spark (see the module doc): (seconds of each of two
    runs, rows written, the Parquet folder of the last)."""
    from datetime import UTC, datetime

    from courier.context import Context
    from courier.engines.base import WindowFile
    from courier.engines.spark import connect
    from courier.engines.spark_run import SparkRunner
    from courier.validate import load_project
    from tests.servers import start_spark_jvm, stop_process

    ctx = Context(load_project(str(project)))
    courier = ctx.project.courier("web_events")
    [load] = ctx._loads(courier)
    files = [WindowFile(f, f, Path(f).stat().st_size, i) for i, f in enumerate(ds.files)]
    proc, remote = start_spark_jvm(work / "jvm")
    seconds, rows, out = [], 0, work / "jvm-out"
    pinned = None  # the second run reads as a courier's next run: with the schema the first pinned

    def heads(f: WindowFile, nbytes: int) -> bytes:  # the schema sample, as courier's run reads it
        with open(f.uri, "rb") as fh:
            return fh.read(nbytes)

    try:
        session = connect("jvm", remote)
        for attempt in range(2):
            scratch = (work / f"jvm-scratch-{attempt}").resolve()
            out = (work / f"jvm-out-{attempt}").resolve()
            started = time.perf_counter()
            runner = SparkRunner("jvm", remote, session, str(scratch))
            tag_rows, summary, _ = runner.read(
                courier.file_tag, files, ds.files, pinned, heads=heads
            )
            job = runner.prepare(courier, load, tag_rows, files, "", f"bench-{attempt}",
                                 datetime.now(UTC), summary.schema)  # fmt: skip
            job.rows.write.mode("overwrite").parquet(str(out))
            seconds.append(time.perf_counter() - started)
            rows = job.counts.loaded
            pinned = summary.schema
    finally:
        stop_process(proc)
    return seconds, rows, out


def cbor_lake_project(ds: Any, root: Path, remote: str | None) -> Path:
    """lake_project over the same records landed as CBOR (bench.cbor): the cluster decodes
    them with courier's reader (engines/spark_decode.py) before the NDJSON path."""
    from bench.cbor import CBOR_COURIER, cbor_projects

    cbor_projects(ds, ds.project.parent / "cbor")  # the CBOR landing, made once
    landing = (ds.project.parent / "cbor" / "landing").resolve()
    project = lake_project(ds, root, remote)
    toml = (project / "config" / "courier.toml").read_text()
    ndjson = (ds.project / ".courier" / "landing").resolve()
    (project / "config" / "courier.toml").write_text(toml.replace(str(ndjson), str(landing)))
    courier = CBOR_COURIER.format(decode="json", extra="")
    engine = 'engine = "sail"\n' if remote else ""
    (project / "config" / "couriers" / "web_events.toml").write_text(engine + courier)
    return project


def main() -> int:
    megabytes = int(os.environ.get("BENCH_MB", "200"))
    root = Path(os.environ.get("BENCH_DIR", REPO / "bench" / "data" / f"{megabytes}mb"))
    ds = ensure_dataset(root, megabytes)
    size = f"{len(ds.files)} files, {ds.bytes / 2**20:,.0f} MB, {ds.events:,} events"
    print(f"== bench.spark: {size} ==")
    work = root / "spark"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    proc, remote = start_sail(work / "sail")
    try:
        timings: dict[str, dict[str, Any]] = {}
        contenders = (("duckdb+delta", None, False), ("sail", remote, False))
        if os.environ.get("BENCH_CBOR", "1") != "0":  # the same records landed as CBOR
            contenders += (("duckdb+delta-cbor", None, True), ("sail-cbor", remote, True))
        for name, engine, cbor in contenders:
            make = cbor_lake_project if cbor else lake_project
            # warm: a first load into a throwaway project first (Sail's first queries after
            # start-up cost it seconds; the same for both paths), then the timed runs
            courier_run(make(ds, work / f"{name}-warmup", engine), ds.day, reload=False)
            project = make(ds, work / name, engine)
            timings[name] = {
                "load": courier_run(project, ds.day, reload=False),
                "merge": courier_run(project, ds.day, reload=True),  # the same window again
            }
        same = compare_delta(work / "duckdb+delta", work / "sail")
        if "sail-cbor" in timings:
            same += "; sail-cbor: " + compare_delta(work / "duckdb+delta", work / "sail-cbor")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    jvm = None
    if os.environ.get("BENCH_JVM", "1") != "0":
        project = lake_project(ds, work / "jvm-spark", None)
        jvm = jvm_flatten(ds, project, work)
    events = ds.events
    base = timings["duckdb+delta"]
    rows = []
    for name, phases in timings.items():
        for phase, t in phases.items():
            ratio = (events / t["seconds"]) / (events / base[phase]["seconds"])
            feed = t["result"]["feeds"][FEED]
            rows.append(
                [
                    f"courier run, {name}, {'first load' if phase == 'load' else 'merge (reload)'}",
                    f"{t['seconds']:.1f}",
                    human_rate(events / t["seconds"]),
                    f"{ratio:.2f}x",
                    f"{feed['loaded']:,}",
                ]
            )
    if jvm is not None:
        seconds, loaded, _ = jvm
        base_load = base["load"]["seconds"]
        for label, t in (("cold", seconds[0]), ("warm", seconds[1])):
            rows.append(
                [
                    f"jvm spark flatten to Parquet, {label}",
                    f"{t:.1f}",
                    human_rate(events / t),
                    f"{base_load / t:.2f}x",
                    f"{loaded:,}",
                ]
            )
    print(table(["path", "seconds", "records/s", "vs duckdb+delta", "rows loaded"], rows))
    print(f"Delta tables identical (EXCEPT ALL both ways): {same}")
    if jvm is not None:
        print(f"JVM Spark rows identical to the DuckDB feed: {compare_parquet(work, jvm[2])}")
    return 0


def compare_parquet(work: Path, folder: Path) -> str:
    """The JVM's Parquet rows against the DuckDB path's Delta table."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    feed = DeltaTable(str(work / "duckdb+delta" / ".courier" / "lake" / "feeds" / FEED))
    return compare_tables(feed.to_pyarrow_table(), pq.read_table(folder), "duckdb", "jvm")


def compare_delta(a: Path, b: Path) -> str:
    from deltalake import DeltaTable

    tables = [
        DeltaTable(str(p / ".courier" / "lake" / "feeds" / FEED)).to_pyarrow_table() for p in (a, b)
    ]
    return compare_tables(tables[0], tables[1], a.name, b.name)


def compare_tables(first: Any, second: Any, a: str, b: str) -> str:
    """EXCEPT ALL both ways on the feed's columns (courier's own columns left out)."""
    import duckdb

    cols = [c for c in first.column_names if not c.startswith("_courier")]
    con = duckdb.connect()
    con.register("a", first.select(cols))
    con.register("b", second.select(cols).cast(first.select(cols).schema))
    only_a = con.execute("SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)")
    x = only_a.fetchall()[0][0]
    y = con.execute("SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)").fetchall()
    n = first.num_rows
    return (
        "yes"
        if x == 0 and y[0][0] == 0
        else f"no ({x} rows only in {a}, {y[0][0]} in {b}; {n} rows)"
    )


if __name__ == "__main__":
    sys.exit(main())
