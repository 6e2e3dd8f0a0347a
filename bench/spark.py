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
        for name, engine in (("duckdb+delta", None), ("sail", remote)):
            project = lake_project(ds, work / name, engine)
            timings[name] = {
                "load": courier_run(project, ds.day, reload=False),
                "merge": courier_run(project, ds.day, reload=True),  # the same window again
            }
        same = compare_delta(work / "duckdb+delta", work / "sail")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
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
    print(table(["path", "seconds", "records/s", "vs duckdb+delta", "rows loaded"], rows))
    print(f"Delta tables identical (EXCEPT ALL both ways): {same}")
    return 0


def compare_delta(a: Path, b: Path) -> str:
    import duckdb
    from deltalake import DeltaTable

    tables = [
        DeltaTable(str(p / ".courier" / "lake" / "feeds" / FEED)).to_pyarrow_table() for p in (a, b)
    ]
    cols = [c for c in tables[0].column_names if not c.startswith("_courier")]
    con = duckdb.connect()
    con.register("a", tables[0].select(cols))
    con.register("b", tables[1].select(cols).cast(tables[0].select(cols).schema))
    only_a = con.execute("SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)")
    x = only_a.fetchall()[0][0]
    y = con.execute("SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)").fetchall()
    n = tables[0].num_rows
    return (
        "yes"
        if x == 0 and y[0][0] == 0
        else f"no ({x} rows only in {a.name}, {y[0][0]} in {b.name}; {n} rows)"
    )


if __name__ == "__main__":
    sys.exit(main())
