"""`make bench` (Delta): courier into a Delta table against the same SQL done by hand.

    python -m bench.delta          # ~200 MB (BENCH_MB=1024 for the 1 GB window)
    BENCH_RUNS=3 (default)         # each contender that often, interleaved; best load and merge

Contenders, each in its own process on bench.run's files:

  hand-delta      DuckDB runs the flatten (bench.run SELECT_SQL, input columns declared) with
                  last-record-wins (QUALIFY), hands Arrow to delta-rs: write_deltalake into a new
                  table (load), then DeltaTable.merge of the same window on (event_id, item_idx)
                  into the full table (merge: every key matched).
  courier-delta   the web_events courier with [destinations.lake] type = "delta" on a local
                  folder, in steady state (the schema its first run pinned, as the hand path
                  declares its columns): Context.run into a new table (load), then --reload
                  (merge).
  courier         bench.run's courier contender (DuckDB feed, steady state), for the
                  within-1.5x/2x targets.

Targets (issue 14): courier-delta load and merge >= 0.8x hand-delta records/s, load within
1.5x and merge within 2x of courier's DuckDB time; peak RSS < 1.5 GB at 1 GB; the Delta table
equals the DuckDB feed (same rows, same checksum over every column).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import MB, REPO, Clock, Measurement, human_rate, run_isolated, table
from bench.data import ensure_dataset
from bench.run import COLUMNS_SQL, SELECT_SQL, best
from bench.run import load as machine_load

KEYS = ["event_id", "item_idx"]
TARGET_VS_HAND = 0.8
TARGET_LOAD_VS_DUCKDB = 1.5
TARGET_MERGE_VS_DUCKDB = 2.0
RSS_LIMIT = 1.5e9
DELTA_TOML = """
[destinations.lake]
type = "delta"
storage = "lake"
path = "feeds"

[storages.lake]
type = "local"
path = ".courier/lake"
"""

CHECKSUM_SQL = (
    "SELECT count(*), sum(hash(event_id, item_idx, occurred_at, customer_id, customer_email, "
    "sku, qty, price, page, CAST(context AS VARCHAR))) FROM feed"
)


def delta_checksum(url: str, version: int) -> tuple[int, str]:
    """Row count and a hash over every feed column of the table at `version`, read after the
    contender's process has ended, in a process of its own: inside the contender it added
    ~400 MB to its peak RSS at 1 GB, and the bench's own process stays small."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.delta", "--checksum", url, str(version)],
        cwd=REPO, check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows, total = json.loads(out.stdout)
    return int(rows), str(total)


def read_checksum(url: str, version: int) -> tuple[int, str]:
    """Row count and a hash over every feed column, read through a pyarrow dataset in DuckDB."""
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("feed", DeltaTable(url, version=version).to_pyarrow_dataset())
    rows, total = con.execute(CHECKSUM_SQL).fetchone()  # type: ignore[misc]
    con.close()
    return int(rows), str(total)


def hand_delta(files: list[str], url: str, nbytes: int, events: int) -> dict[str, Any]:
    import duckdb
    from deltalake import DeltaTable, write_deltalake

    shutil.rmtree(url, ignore_errors=True)
    file_list = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    flatten = SELECT_SQL.format(files=file_list, columns=f", columns = {COLUMNS_SQL}")
    last = "ORDER BY rowid DESC"  # the last record of a key wins, as courier's dedupe

    def rows() -> Any:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET memory_limit = '1GB'")
        con.execute(f"CREATE TEMP TABLE batch AS {flatten}")
        sql = (
            "SELECT * FROM batch QUALIFY row_number() OVER "
            f"(PARTITION BY event_id, item_idx {last}) = 1"
        )
        return con, con.sql(sql).to_arrow_reader()

    def once(merge: bool) -> dict[str, Any]:
        with Clock() as clock:
            con, reader = rows()
            if merge:
                on = " AND ".join(f"t.{k} = s.{k}" for k in KEYS)
                DeltaTable(url).merge(
                    reader, predicate=on, source_alias="s", target_alias="t"
                ).when_matched_update_all().when_not_matched_insert_all().execute()
            else:
                write_deltalake(url, reader, mode="append")
            con.close()
        table = {"url": url, "version": DeltaTable(url).version()}
        return {**clock.report(), "records": events, "bytes": nbytes, **table}

    out = once(False)
    out["reload"] = once(True)
    return out


def courier_delta(project: str, day: str, pinned: str) -> dict[str, Any]:
    """The web_events courier into a Delta table, in steady state (the schema its earlier runs
    pinned, as the hand path declares its columns): load into a new table, then --reload."""
    from deltalake import DeltaTable

    import courier.destinations.delta  # noqa: F401 - imported before the clock
    from bench.run import COURIER, FEED
    from courier.context import Context
    from courier.validate import load_project

    root = Path(project)
    shutil.rmtree(root / ".courier" / "lake", ignore_errors=True)
    for leftover in (root / ".courier").glob("feeds.duckdb*"):
        leftover.unlink()
    with Context(load_project(project)).workspace() as ws:
        ws.state.pin_schema(COURIER, COURIER, json.loads(Path(pinned).read_text()), "bench")
    url = str(root / ".courier" / "lake" / "feeds" / FEED)

    def once(again: bool) -> dict[str, Any]:
        with Clock() as clock:
            ctx = Context(load_project(project))
            window = ctx.window(ctx.project.courier(COURIER), date=day)
            result = run_courier(ctx, COURIER, window, again)
        if result["status"] != "succeeded":
            raise RuntimeError(f"courier run {result['status']}: {result['error']}")
        return {
            **clock.report(),
            "records": result["records"],
            "bytes": result["bytes"],
            "url": url,
            "version": DeltaTable(url).version(),
        }

    out = once(False)
    out["reload"] = once(True)
    return out


def run_courier(ctx: Any, courier: str, window: Any, reload: bool) -> dict[str, Any]:
    from datetime import UTC, datetime

    return ctx.run(courier, window, datetime.now(UTC), reload=reload)  # type: ignore[no-any-return]


def delta_project(source: Path, root: Path) -> Path:
    """bench.run's project with the feeds in a Delta destination (landing hard-linked)."""
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(".courier"))
    (root / ".courier").mkdir()
    landing = source / ".courier" / "landing"
    shutil.copytree(landing, root / ".courier" / "landing", copy_function=os.link)
    toml = root / "config" / "courier.toml"
    text = toml.read_text()
    if "[feeds]" in text:
        text = text.replace("[feeds]", '[feeds]\ndestination = "lake"', 1)
    else:
        text += '\n[feeds]\ndestination = "lake"\n'
    toml.write_text(text + DELTA_TOML)
    return root


def checked(m: Measurement) -> Measurement:
    """m with the rows and checksum of the Delta table its load and merge left (read here,
    before the next round replaces the table)."""
    for detail in (m.detail, m.detail.get("reload")):
        if m.ok and detail and "url" in detail:
            detail["rows"], detail["checksum"] = delta_checksum(detail["url"], detail["version"])
    return m


def split(m: Measurement) -> tuple[Measurement, Measurement | None]:
    again = m.detail.get("reload")
    if not m.ok or not again:
        return m, None
    r = Measurement(f"{m.name} (merge)", peak_rss=m.peak_rss)
    r.seconds, r.records, r.bytes = again["seconds"], again["records"], again["bytes"]
    r.cpu_seconds = again.get("cpu_seconds", 0.0)
    r.detail = again
    return m, r


def main() -> int:
    megabytes = int(os.environ.get("BENCH_MB", "200"))
    data_dir = Path(os.environ.get("BENCH_DIR", REPO / "bench" / "data" / f"{megabytes}mb"))
    ds = ensure_dataset(data_dir, megabytes)
    project = delta_project(ds.project, data_dir / "delta-project")
    hand_url = str(data_dir / "hand-delta")
    pinned = data_dir / "work" / "pinned-schema.json"  # what the courier's earlier runs pinned
    first = run_isolated(
        "courier-first-run", "bench.run:courier_load",
        {"project": str(ds.project), "day": ds.day, "reload": False},
    )  # fmt: skip
    if not first.ok:
        raise SystemExit(f"courier's first run failed: {first.error}")
    pinned.parent.mkdir(parents=True, exist_ok=True)
    pinned.write_text(json.dumps(first.detail["pinned"]))
    steady = {"day": ds.day, "pinned": str(pinned)}
    contenders = [
        ("hand-delta", "bench.delta:hand_delta",
         {"files": ds.files, "url": hand_url, "nbytes": ds.bytes, "events": ds.events}),
        ("courier-delta", "bench.delta:courier_delta", {"project": str(project), **steady}),
        ("courier", "bench.run:courier_load", {"project": str(ds.project), **steady}),
    ]  # fmt: skip
    rounds = max(1, int(os.environ.get("BENCH_RUNS", "3")))
    runs: dict[str, list[tuple[Measurement, Measurement | None]]] = {}
    for _ in range(rounds):  # round robin: a busy spell on the machine hits everyone alike
        for name, target, kwargs in contenders:
            runs.setdefault(name, []).append(split(checked(run_isolated(name, target, kwargs))))
    results: dict[str, tuple[Measurement, Measurement | None]] = {}
    for name, pairs in runs.items():  # the fastest load and the fastest merge, each
        merges = [m for _, m in pairs if m is not None]
        results[name] = (best([first for first, _ in pairs]), best(merges) if merges else None)
    rows = []
    for load, merge in results.values():
        for m in (load, merge):
            if m is None:
                continue
            rows.append(
                [m.name, f"{m.seconds:.2f}", f"{m.cpu_seconds:.2f}", human_rate(m.records_per_s),
                 f"{m.peak_rss / MB:,.0f}", m.detail.get("rows", ""), m.error or ""]
            )  # fmt: skip
    print(
        f"\nDelta destination, {ds.bytes / MB:,.0f} MB, {ds.events:,} events, best of {rounds} "
        f"(interleaved); machine: {machine_load()}"
    )
    print(table(["contender", "s", "cpu s", "records/s", "peak RSS MB", "rows", "error"], rows))
    hand, cd, duck = results["hand-delta"], results["courier-delta"], results["courier"]
    checks = []

    def ratio(a: Measurement | None, b: Measurement | None) -> float | None:
        return (
            a.records_per_s / b.records_per_s if a and b and a.ok and b.ok and b.seconds else None
        )

    def cpu_ratio(a: Measurement | None, b: Measurement | None) -> float | None:
        """b's CPU seconds / a's: the speed ratio on a machine whose wall time is waiting."""
        ok = a and b and a.ok and b.ok and a.cpu_seconds
        return b.cpu_seconds / a.cpu_seconds if ok else None  # type: ignore[union-attr]

    for label, i in (("load", 0), ("merge", 1)):
        r = ratio(cd[i], hand[i])
        checks.append((f"courier-delta {label} vs hand-delta", r, r is not None and r >= 0.8))
        c = cpu_ratio(cd[i], hand[i])
        checks.append(
            (f"courier-delta {label} vs hand-delta, by CPU seconds", c, c is not None and c >= 0.8)
        )
        d = ratio(duck[i], cd[i])  # courier-delta time / courier DuckDB time
        limit = TARGET_LOAD_VS_DUCKDB if i == 0 else TARGET_MERGE_VS_DUCKDB
        checks.append(
            (f"courier-delta {label} time / courier (DuckDB) time, at most {limit}x", d,
             d is not None and d <= limit)
        )  # fmt: skip
    same = (
        cd[1] is not None
        and hand[1] is not None
        and (
            cd[1].detail.get("checksum")
            == hand[1].detail.get("checksum")
            == (duck[1].detail.get("checksum") if duck[1] else None)
        )
    )
    checks.append(("Delta table == hand Delta == DuckDB feed (rows, checksum)", None, same))
    checks.append(
        ("courier-delta peak RSS < 1.5 GB", cd[0].peak_rss / MB, cd[0].peak_rss < RSS_LIMIT)
    )
    for label, value, ok in checks:
        shown = "" if value is None else f"{value:.2f}"
        print(f"  {'PASS' if ok else 'FAIL'}  {label} {shown}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--checksum"]:  # delta_checksum's process
        print(json.dumps(read_checksum(sys.argv[2], int(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
