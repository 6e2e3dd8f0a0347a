"""`courier run` on a Spark engine (Sail, a real Spark Connect server): the cluster reads the
window's files, runs the query, casts, dedupes and writes the Delta table; the same courier on
DuckDB + Delta gives the same table row for row and the same quarantine."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable

from courier.analyst.crossengine import canonical_json
from courier.engines.duckdb import pinned_schemas
from tests.projects import NOW, ProjectFactory

pytestmark = pytest.mark.integration

SETTINGS = """
[project]
time_zone = "UTC"

[storages.landing]
type = "local"
path = ".courier/landing"

[storages.lake]
type = "local"
path = ".courier/lake"

[destinations.lake]
type = "delta"
storage = "lake"
path = "feeds"

[feeds]
destination = "lake"
"""
ENGINE = """
[engines.sail]
type = "spark"
remote = "{remote}"
"""
FEED = """
primary_key = ["order_id"]
required = ["order_id", "amount"]

[fields]
order_id = "string"
customer_id = "bigint"
amount = "decimal(12,2)"
placed_at = "timestamp"
status = "string"
tags = "json"
"""
QUERY = """
SELECT o.id AS order_id, o.customer.id AS customer_id, o.amount, o.placed_at, o.status, o.tags
FROM orders AS o
"""
COURIER = """
storage = "landing"
file_pattern = "'orders/'yyyy/MM/dd/HH'/*.ndjson'"
prefix = "00"
format = "ndjson"
file_tag = "orders"
options = {{ max_bad_records = 10 }}
{engine}
[load_operations]
orders = [{{ type = "sql", sql-query = "orders", sql-files = [{{ file = "orders" }}] }}]
"""


def order(i: int, amount: str = "12.50", **extra: Any) -> str:
    record = {
        "id": f"o{i}",
        "customer": {"id": 100 + i % 3, "name": f"c{i}"},
        "amount": amount,
        "placed_at": f"2026-11-22T{i % 24:02d}:15:00Z",
        "status": "new",
        "tags": ["a", f"t{i}"],
        **extra,
    }
    return json.dumps(record)


HOUR_1 = "\n".join([order(1), order(2), "not json {", "", order(3, amount="abc"), order(4)]) + "\n"
HOUR_2 = (
    "\n".join(
        [
            order(2, amount="99.99", status="paid"),  # the later record of o2 wins
            json.dumps({"customer": {"id": 7}, "amount": "1.00"}),  # no id: required
            "[1, 2]",
            order(5, status=None),
        ]
    )
    + "\n"
)
HOUR_3 = "\n".join([order(1, status="shipped", channel="web"), order(6)]) + "\n"


def make(root: Path, remote: str | None, settings: str = SETTINGS) -> ProjectFactory:
    p = ProjectFactory(root)
    settings = settings + (ENGINE.format(remote=remote) if remote else "")
    p.write("config/courier.toml", settings)
    p.feed("orders", FEED)
    p.query("orders", QUERY)
    p.courier("orders", COURIER.format(engine='engine = "sail"' if remote else ""))
    if '[storages.landing]\ntype = "local"' in settings:
        p.land("orders/2026/11/22/01/part-000000.ndjson", HOUR_1.encode())
        p.land("orders/2026/11/22/02/part-000000.ndjson", HOUR_2.encode())
    return p


def feed_rows(p: ProjectFactory, url: str | None = None, options: Any = None) -> list[tuple]:
    url = url or str(p.root / ".courier" / "lake" / "feeds" / "orders")
    table = DeltaTable(url, storage_options=options).to_pyarrow_table()
    names = [c for c in table.column_names if not c.startswith("_courier")]
    out = []
    for r in table.select(names).to_pylist():
        r["tags"] = canonical_json(r["tags"])
        out.append(tuple(r[n] for n in names))
    return sorted(out, key=str)


def quarantine(p: ProjectFactory) -> list[tuple]:
    con = duckdb.connect(str(p.root / ".courier" / "feeds.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT feed, file, line, reason, raw FROM courier.quarantine"
        ).fetchall()
    finally:
        con.close()
    return sorted(((f, k, n, why, _raw(raw)) for f, k, n, why, raw in rows), key=str)


def _raw(text: str) -> str:
    """Raw text by meaning: JSON without its null fields (Spark's to_json leaves them out)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict):
        value = {k: _instant(v) for k, v in value.items() if v is not None}
        return canonical_json(json.dumps(value)) or ""
    return text


def _instant(value: Any) -> Any:
    """A timestamp as one spelling (DuckDB writes 03:15:00+00, Spark 03:15:00.000000Z)."""
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
        except ValueError:
            return value
    return value


def run(p: ProjectFactory) -> dict[str, Any]:
    ctx = p.context()
    window = ctx.window(ctx.project.courier("orders"), date="2026-11-22")
    return ctx.run("orders", window, NOW)


def scratch_files(p: ProjectFactory) -> list[Path]:
    """What the cluster's runs left in the courier's scratch folder beside the tables."""
    return [f for f in (p.root / ".courier/lake/feeds/_courier_scratch").rglob("*") if f.is_file()]


def test_a_courier_on_sail_loads_the_delta_table_duckdb_does(
    sail_remote: str, tmp_path: Path
) -> None:
    duck = make(tmp_path / "duckdb", None)
    lake = make(tmp_path / "sail", sail_remote)
    expected = run(duck)
    result = run(lake)
    assert expected["status"] == "succeeded", expected
    assert result["status"] == "succeeded", result["error"]
    assert feed_rows(lake) == feed_rows(duck)
    assert {r[0] for r in feed_rows(lake)} == {"o1", "o2", "o4", "o5"}
    assert quarantine(lake) == quarantine(duck)
    assert len(quarantine(lake)) == 4  # 2 unreadable lines, 2 rejected rows (cast, required)
    assert result["feeds"] == expected["feeds"]
    assert result["files"]["loaded"] == expected["files"]["loaded"] == 2
    assert result["records"] == expected["records"]
    assert scratch_files(lake) == []  # the parsed window and cast rows are gone after the run
    # a later window merges on the key: o1 updated, o6 inserted, the others kept; the feed
    # gained a column, which the table gets before the cluster merges
    later = {}
    for p in (duck, lake):
        p.feed("orders", FEED + 'channel = "string"\n')
        p.query("orders", QUERY.replace("o.tags", "o.tags, o.channel"))
        p.land("orders/2026/11/22/03/part-000000.ndjson", HOUR_3.encode())
        later[p] = again = run(p)
        assert again["status"] == "succeeded", again["error"]
        assert again["files"]["loaded"] == 1
    assert later[lake]["feeds"] == later[duck]["feeds"]
    assert feed_rows(lake) == feed_rows(duck)
    assert ("o1", 101, "shipped", "web") in {(r[0], r[1], r[4], r[6]) for r in feed_rows(lake)}
    assert run(lake)["status"] == "skipped"  # every file is loaded: nothing twice
    # steady state: past the lines both engines check first, a key the pinned schema lacks
    # (hour 4) and a value it cannot read (placed_at, pinned a timestamp; hour 6) have the
    # schema detected again, as DuckDB's engine does; hour 5 the pinned schema reads as it is
    many = [order(i) for i in range(10, 160)]
    hours = {
        4: [*many, order(11, coupon="C-1")],
        5: [order(9), order(2, status="lost")],
        6: [*many, order(8, placed_at="soon")],
        7: [order(12)],  # the first lines' placed_at a timestamp again: narrowed, as DuckDB does
    }
    for hour, records in hours.items():
        for p in (duck, lake):
            p.land(f"orders/2026/11/22/0{hour}/part-000000.ndjson", "\n".join(records).encode())
            later[p] = again = run(p)
            assert again["status"] == "succeeded", again["error"]
        assert later[lake]["feeds"] == later[duck]["feeds"]
        assert later[lake]["schema_changes"] == later[duck]["schema_changes"]
        assert any("coupon" in c for c in later[lake]["schema_changes"]) == (hour == 4)
        assert feed_rows(lake) == feed_rows(duck)
        assert quarantine(lake) == quarantine(duck)
    assert any("placed_at: cannot cast" in r[3] for r in quarantine(lake))
    assert ("o2", "lost") in {(r[0], r[4]) for r in feed_rows(lake)}


def test_a_new_courier_on_sail_pins_a_key_first_seen_past_the_sample(
    sail_remote: str, tmp_path: Path
) -> None:
    """A new courier reads with the schema of each file's first lines: a key first seen past
    them (line 6,900 of 7,000, past the 6,826 lines sampled of each of three files) has the
    schema detected over every line's keys, as DuckDB's engine does; the pinned schemas agree."""
    many = [order(i) for i in range(10, 7010)]
    many[6890] = order(6900, coupon="C-1")
    pinned, results = {}, {}
    for name, remote in (("duckdb", None), ("sail", sail_remote)):
        p = make(tmp_path / name, remote)
        p.land("orders/2026/11/22/03/part-000000.ndjson", "\n".join(many).encode())
        result = run(p)
        assert result["status"] == "succeeded", result["error"]
        pinned[name] = pinned_schemas(p.root / ".courier" / "feeds.duckdb")[("orders", "orders")]
        results[name] = result
    assert results["sail"]["records"] == results["duckdb"]["records"]
    assert results["sail"]["feeds"] == results["duckdb"]["feeds"]
    assert "coupon" in pinned["sail"]
    assert pinned["sail"] == pinned["duckdb"]


def test_rejects_past_the_middle_of_a_big_file_are_quarantined_as_duckdb_does(
    sail_remote: str, tmp_path: Path
) -> None:
    """A file the cluster reads in parts (40,000 lines): the rows the feed rejects (a cast, a
    required field) are quarantined with the lines DuckDB names, also past the middle, and the
    later record of a key wins, window after window (Sail's row ids did not follow the file
    in about one read of four)."""
    many = [order(i) for i in range(10, 40_010)]
    many[25_000] = order(25_010, amount="abc")  # line 25,001: cannot cast
    many[30_000] = json.dumps({"customer": {"id": 7}, "amount": "1.00"})  # no id: required
    many[35_000] = order(20, status="paid")  # o20 again: this later record wins
    results: dict[str, list[dict[str, Any]]] = {}
    projects = {}
    for name, remote in (("duckdb", None), ("sail", sail_remote)):
        p = projects[name] = make(tmp_path / name, remote)
        for hour in ("01", "02"):
            (p.landing / f"orders/2026/11/22/{hour}/part-000000.ndjson").unlink()
        results[name] = []
        for hour in ("03", "04"):  # the same lines again: every record a later one
            p.land(f"orders/2026/11/22/{hour}/part-000000.ndjson", ("\n".join(many)).encode())
            results[name].append(run(p))
    for duck, lake in zip(results["duckdb"], results["sail"], strict=True):
        assert lake["status"] == duck["status"] == "succeeded", lake["error"]
        assert lake["feeds"] == duck["feeds"]
        assert lake["records"] == duck["records"]
    lake, duck = projects["sail"], projects["duckdb"]
    assert feed_rows(lake) == feed_rows(duck)
    assert ("o20", "paid") in {(r[0], r[4]) for r in feed_rows(lake)}
    assert quarantine(lake) == quarantine(duck)
    assert sorted(r[2] for r in quarantine(lake)) == [25_001, 25_001, 30_001, 30_001]


def test_a_file_holding_a_nul_byte_is_numbered_and_quarantined_as_duckdb_does(
    sail_remote: str, tmp_path: Path
) -> None:
    """Sail reads a file whole by splitting it at NUL bytes (valid JSON never holds one): a
    damaged file that does came in two values, each numbered from line 1, so an earlier record
    won over a later one and the quarantine named two halves of one line. Such a file is read
    again at a byte it lacks: one bad line, at its place, and the later record wins."""
    from courier.engines.spark import SEPARATORS

    damaged = order(2, status="a\0b").replace("\\u0000", "\0")  # a raw NUL in a string
    assert "\0" in damaged
    hour = ["", order(8), order(9), order(6), damaged, order(6, amount="5.00"), order(7)]
    # other bytes JSON refuses or allows: a BOM, raw control bytes in strings (refused), a CR
    # before the line end, whitespace around a record (allowed)
    tab = order(2, status="a\tb").replace("\\t", "\t")
    ctl = order(12, status="x\x01y").replace("\\u0001", "\x01")
    other = ["\ufeff" + order(11), tab, ctl, order(13) + "\r", " " + order(14) + "\t "]
    projects, results = {}, {}
    for name, remote in (("duckdb", None), ("sail", sail_remote)):
        p = projects[name] = make(tmp_path / name, remote)
        p.land("orders/2026/11/22/03/part-000000.ndjson", "\n".join(hour).encode())
        p.land("orders/2026/11/22/05/part-000000.ndjson", "\n".join(other).encode())
        results[name] = run(p)
        assert results[name]["status"] == "succeeded", results[name]["error"]
    lake, duck = projects["sail"], projects["duckdb"]
    assert results["sail"]["feeds"] == results["duckdb"]["feeds"]
    assert results["sail"]["records"] == results["duckdb"]["records"]
    assert feed_rows(lake) == feed_rows(duck)
    assert ("o6", Decimal("5.00")) in {(r[0], r[2]) for r in feed_rows(lake)}
    assert quarantine(lake) == quarantine(duck)
    hour_3 = [r[2] for r in quarantine(lake) if r[1].endswith("/03/part-000000.ndjson")]
    assert hour_3 == [5]
    hour_5 = [r[2] for r in quarantine(lake) if r[1].endswith("/05/part-000000.ndjson")]
    assert hour_5 == [1, 2, 3]
    assert {"o13", "o14"} <= {r[0] for r in feed_rows(lake)}
    # a file holding every byte Sail could split it at is refused by name; nothing changes
    before = table_version(lake)
    every = ('{"id": "o10", "status": "' + "".join(SEPARATORS) + '"}\n').encode()
    lake.land("orders/2026/11/22/06/part-000000.ndjson", every)
    failed = run(lake)
    assert failed["status"] == "failed"
    assert failed["error"].startswith(
        "file orders/2026/11/22/06/part-000000.ndjson holds a NUL byte and every other ASCII "
        "control byte, so engine 'sail'"
    )
    assert table_version(lake) == before


def test_a_file_sail_cannot_hold_whole_fails_the_run_by_name_and_changes_nothing(
    sail_remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from courier.engines import spark

    p = make(tmp_path / "big", sail_remote)
    sizes = {
        k: (p.root / ".courier/landing" / k).stat().st_size
        for k in (
            "orders/2026/11/22/01/part-000000.ndjson",
            "orders/2026/11/22/02/part-000000.ndjson",
        )
    }
    big = max(sizes, key=sizes.__getitem__)
    monkeypatch.setattr(spark, "WHOLE_FILE_LIMIT", sizes[big] - 1)  # stands in for 2 GiB
    failed = run(p)
    assert failed["status"] == "failed"
    assert failed["error"].startswith(f"file {big} is {sizes[big]:,} bytes, and engine 'sail'")
    assert "no table was changed" in failed["error"]
    assert table_version(p) is None and scratch_files(p) == []
    monkeypatch.undo()
    assert run(p)["status"] == "succeeded"  # the files load once they fit


def table_version(p: ProjectFactory) -> int | None:
    path = p.root / ".courier" / "lake" / "feeds" / "orders"
    return DeltaTable(str(path)).version() if (path / "_delta_log").exists() else None


def test_a_spark_connect_server_that_is_down_fails_the_run_naming_it(tmp_path: Path) -> None:
    from tests.analyst.helpers import courier
    from tests.servers import free_port

    remote = f"sc://127.0.0.1:{free_port()}"
    p = make(tmp_path / "down", remote)
    result = courier(p, "run", "orders", "--date", "2026-11-22", "--json")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert f"engine 'sail': the Spark Connect server at {remote} cannot be reached" in out
    assert "Traceback" not in result.stderr
    [run_row] = p.context().runs("orders")
    assert run_row["status"] == "failed"
    assert table_version(p) is None  # no table was made


def test_a_query_the_cluster_rejects_and_a_cast_it_cannot_do_fail_and_change_nothing(
    sail_remote: str, tmp_path: Path
) -> None:
    p = make(tmp_path / "bad", sail_remote)
    assert run(p)["status"] == "succeeded"
    before, rows = table_version(p), feed_rows(p)
    p.land("orders/2026/11/22/03/part-000000.ndjson", HOUR_3.encode())
    # the Spark twin names a column the tag does not have
    p.write("queries/orders.spark.sql", "SELECT o.no_such_column AS order_id FROM orders AS o\n")
    failed = run(p)
    assert failed["status"] == "failed"
    assert failed["error"].startswith(f"engine 'sail' ({sail_remote}): query 'orders' failed")
    assert (
        "orders.spark.sql" in failed["error"] and "feed orders was not changed" in failed["error"]
    )
    assert (table_version(p), feed_rows(p)) == (before, rows)
    # the query gives a struct where the feed wants a bigint: the engine cannot cast it
    p.write(
        "queries/orders.spark.sql",
        "SELECT o.id AS order_id, o.customer AS customer_id, o.amount FROM orders AS o\n",
    )
    failed = run(p)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("feed orders: the cluster cannot cast the rows")
    assert "engine 'sail'" in failed["error"]
    assert (table_version(p), feed_rows(p)) == (before, rows)
    assert scratch_files(p) == []  # a failed run leaves no scratch either
    (p.root / "queries" / "orders.spark.sql").unlink()
    assert run(p)["status"] == "succeeded"  # the window's file loads once the query is fixed
    assert table_version(p) == (before or 0) + 1


RUNNER = """
import sys
from datetime import datetime
from courier.context import Context
from courier.validate import load_project

class Lines:
    def status(self, message):
        print(message, flush=True)
    def warn(self, message):
        print("warning:", message, flush=True)

ctx = Context(load_project(sys.argv[1]), Lines())
window = ctx.window(ctx.project.courier("orders"), date="2026-11-22")
print(ctx.run("orders", window, datetime.fromisoformat(sys.argv[2]))["status"], flush=True)
"""


def settle(folder: Path, quiet: float = 3.0, deadline: float = 120.0) -> None:
    """Wait until nothing under folder changed for `quiet` seconds: a job the killed client
    left running on the cluster has finished (Sail goes on with it; it has no conflict
    detection between two writers of one table, lakehq/sail#171)."""
    import time

    def state() -> list[tuple[str, int]]:
        return sorted((str(f), f.stat().st_size) for f in folder.rglob("*") if f.is_file())

    end = time.monotonic() + deadline
    last, since = state(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.5)
        now = state()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


STATUS_FEED = """
[fields]
order_id = "string"
status = "string"
"""
STATUS_QUERY = "SELECT o.id AS order_id, o.status FROM orders AS o\n"


def with_status_log(p: ProjectFactory) -> ProjectFactory:
    """A second feed of the courier, appended (no primary key), written after orders."""
    p.feed("status_log", STATUS_FEED)
    p.query("status_log", STATUS_QUERY)
    path = p.root / "config" / "couriers" / "orders.toml"
    path.write_text(
        path.read_text()
        + 'status_log = [{ type = "sql", sql-query = "status_log", '
        + 'sql-files = [{ file = "orders" }] }]\n'
    )
    return p


def status_log(p: ProjectFactory) -> list[tuple]:
    table = DeltaTable(str(p.root / ".courier" / "lake" / "feeds" / "status_log"))
    return sorted(
        ((r["order_id"], r["status"]) for r in table.to_pyarrow_table().to_pylist()), key=str
    )


@pytest.mark.parametrize(
    "kill_at",
    [
        "orders: the cluster writes orders",  # while the cluster writes the first feed
        "orders: the cluster writes status_log",  # between the two feeds' cluster commits
        "orders: recording",  # after the cluster commits, before courier's state commit
    ],
)
def test_kill_9_of_a_spark_run_then_the_rerun_converges(
    sail_remote: str, tmp_path: Path, kill_at: str
) -> None:
    import signal
    import subprocess
    import sys

    duck = with_status_log(make(tmp_path / "duckdb", None))
    lake = with_status_log(make(tmp_path / "sail", sail_remote))
    assert run(duck)["status"] == "succeeded"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(lake.root), NOW.isoformat()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line.strip())
        if line.startswith(kill_at):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, seen  # killed where asked, not finished
    settle(lake.root / ".courier" / "lake")
    assert scratch_files(lake)  # the killed run's parsed window and cast rows
    again = run(lake)
    assert scratch_files(lake) == []  # cleared by the next run
    [killed] = [r for r in lake.context().runs("orders") if r["run_id"] != again["run_id"]]
    if kill_at.endswith("recording"):  # the cluster had committed: rolled forward
        assert killed["status"] == "succeeded", killed
        assert again["status"] == "skipped"  # its files count as loaded: nothing twice
    elif kill_at.endswith("status_log"):  # orders committed: status_log written on recovery
        # (or, when the signal lands late on a busy machine, by the run itself)
        assert killed["status"] == "succeeded", killed
    else:  # the run is failed or rolled forward, whichever the cluster got to
        assert killed["status"] in ("failed", "succeeded"), killed
    assert feed_rows(lake) == feed_rows(duck)
    assert len(DeltaTable(str(lake.root / ".courier/lake/feeds/orders")).to_pyarrow_table()) == 4
    assert status_log(lake) == status_log(duck)  # appended once: nothing doubled or lost
    assert len(status_log(lake)) == 7
    assert run(lake)["status"] == "skipped"


S3_SETTINGS = """
[project]
time_zone = "UTC"

[storages.landing]
type = "s3"
bucket = "{bucket}"
prefix = "landing"
endpoint_url = "{endpoint}"
region = "us-east-1"

[storages.lake]
type = "s3"
bucket = "{bucket}"
prefix = "lake"
endpoint_url = "{endpoint}"
region = "us-east-1"

[destinations.lake]
type = "delta"
storage = "lake"
path = "feeds"

[feeds]
destination = "lake"
"""
AZURE_SETTINGS = """
[project]
time_zone = "UTC"

[storages.landing]
type = "azure"
container = "{bucket}"
prefix = "landing"
connection_string = "{connection}"

[storages.lake]
type = "azure"
container = "{bucket}"
prefix = "lake"
connection_string = "{connection}"

[destinations.lake]
type = "delta"
storage = "lake"
path = "feeds"

[feeds]
destination = "lake"
"""


def test_a_courier_on_sail_loads_s3_as_duckdb_does(
    moto_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    """Files and tables on a moto S3 server: the cluster reads s3:// and writes the Delta
    table there with its own credentials (a real cluster: its instance role or keys)."""
    import boto3

    from tests.servers import MOTO_CREDENTIALS, start_sail, stop_process

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    env = {
        **MOTO_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    proc, remote = start_sail(tmp_path / "sail-s3", env)
    try:
        projects = {}
        for name, engine in (("duck-orders", None), ("sail-orders", remote)):
            s3.create_bucket(Bucket=name)
            for hour, text in ((1, HOUR_1), (2, HOUR_2)):
                key = f"landing/orders/2026/11/22/{hour:02d}/part-000000.ndjson"
                s3.put_object(Bucket=name, Key=key, Body=text.encode())
            settings = S3_SETTINGS.format(bucket=name, endpoint=moto_endpoint)
            projects[name] = make(tmp_path / name, engine, settings)
        options = {
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            **{k: v for k, v in MOTO_CREDENTIALS.items() if k.startswith("AWS_")},
        }
        # the same records landed as CBOR: the cluster reads each file as bytes from S3
        s3.create_bucket(Bucket="sail-cbor")
        for hour, text in ((1, HOUR_1), (2, HOUR_2)):
            key = f"landing/orders/2026/11/22/{hour:02d}/part-000000.cbor"
            s3.put_object(Bucket="sail-cbor", Key=key, Body=cbor_items(text))
        settings = S3_SETTINGS.format(bucket="sail-cbor", endpoint=moto_endpoint)
        projects["sail-cbor"] = cbor = make(tmp_path / "sail-cbor", remote, settings)
        text = (cbor.root / "config" / "couriers" / "orders.toml").read_text()
        cbor.courier("orders", text.replace("ndjson", "cbor"))
        results = {name: run(p) for name, p in projects.items()}
        for name, result in results.items():
            assert result["status"] == "succeeded", (name, result["error"])
        rows = {
            name: feed_rows(p, f"s3://{name}/lake/feeds/orders", options)
            for name, p in projects.items()
        }
        assert rows["sail-orders"] == rows["duck-orders"] == rows["sail-cbor"]
        assert len(rows["sail-orders"]) == 4
        assert quarantine(projects["sail-orders"]) == quarantine(projects["duck-orders"])
        assert results["sail-orders"]["feeds"] == results["duck-orders"]["feeds"]
        assert results["sail-cbor"]["feeds"] == results["duck-orders"]["feeds"]
        # the cluster wrote its scratch Parquet beside the tables, and courier removed it
        scratch = s3.list_objects_v2(Bucket="sail-orders", Prefix="lake/feeds/_courier_scratch")
        assert scratch["KeyCount"] == 0
        assert s3.list_objects_v2(Bucket="sail-orders", Prefix="lake/feeds/orders/")["KeyCount"]
    finally:
        stop_process(proc)


def test_a_courier_on_sail_loads_azure_as_duckdb_does(
    azurite_endpoint: str, tmp_path: Path
) -> None:
    """Files and tables on Azurite: the cluster reads abfss:// (the account from the
    connection string) and writes the Delta table there."""
    from azure.storage.blob import BlobServiceClient

    from courier.config.models import AzureStorageConfig
    from courier.destinations.delta_table import azure_options
    from tests.servers import AZURITE_KEY, azurite_connection_string, start_sail, stop_process

    connection = azurite_connection_string(azurite_endpoint)
    service = BlobServiceClient.from_connection_string(connection)
    env = {  # the cluster's own Azure settings (Azurite's well-known development account)
        "AZURE_STORAGE_ACCOUNT_NAME": "devstoreaccount1",
        "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
        "AZURE_STORAGE_ENDPOINT": azurite_endpoint,
        "AZURE_ALLOW_HTTP": "true",
    }
    proc, remote = start_sail(tmp_path / "sail-azure", env)
    try:
        projects = {}
        for name, engine in (("duck-orders", None), ("sail-orders", remote)):
            service.create_container(name)
            for hour, text in ((1, HOUR_1), (2, HOUR_2)):
                key = f"landing/orders/2026/11/22/{hour:02d}/part-000000.ndjson"
                service.get_blob_client(name, key).upload_blob(text.encode())
            settings = AZURE_SETTINGS.format(bucket=name, connection=connection)
            projects[name] = make(tmp_path / name, engine, settings)
        service.create_container("sail-cbor")  # the same records landed as CBOR
        for hour, text in ((1, HOUR_1), (2, HOUR_2)):
            key = f"landing/orders/2026/11/22/{hour:02d}/part-000000.cbor"
            service.get_blob_client("sail-cbor", key).upload_blob(cbor_items(text))
        settings = AZURE_SETTINGS.format(bucket="sail-cbor", connection=connection)
        projects["sail-cbor"] = cbor = make(tmp_path / "sail-cbor", remote, settings)
        text = (cbor.root / "config" / "couriers" / "orders.toml").read_text()
        cbor.courier("orders", text.replace("ndjson", "cbor"))
        options = azure_options(
            AzureStorageConfig(type="azure", container="x", connection_string=connection)
        )
        results = {name: run(p) for name, p in projects.items()}
        for name, result in results.items():
            assert result["status"] == "succeeded", (name, result["error"])
        rows = {
            name: feed_rows(p, f"az://{name}/lake/feeds/orders", options)
            for name, p in projects.items()
        }
        assert rows["sail-orders"] == rows["duck-orders"] == rows["sail-cbor"]
        assert len(rows["sail-orders"]) == 4
        assert quarantine(projects["sail-orders"]) == quarantine(projects["duck-orders"])
        container = service.get_container_client("sail-orders")
        assert list(container.list_blobs("lake/feeds/_courier_scratch")) == []
        assert list(container.list_blobs("lake/feeds/orders/"))
    finally:
        stop_process(proc)


def cbor_items(lines: str) -> bytes:
    """An hour's NDJSON test lines as a CBOR sequence: each JSON line an item, any other line
    an item that is not a map (the text itself)."""
    import cbor2

    out = b""
    for line in lines.splitlines():
        if not line:
            continue
        try:
            out += cbor2.dumps(json.loads(line))
        except ValueError:
            out += cbor2.dumps(line)
    return out


def cbor_project(root: Path, remote: str | None) -> ProjectFactory:
    p = make(root, remote)
    text = (p.root / "config" / "couriers" / "orders.toml").read_text()
    p.courier("orders", text.replace("ndjson", "cbor"))
    for path in (p.root / ".courier" / "landing").rglob("*.ndjson"):
        path.unlink()
    p.land("orders/2026/11/22/01/part-000000.cbor", cbor_items(HOUR_1))
    # an item of the last file cut short: the rest of the file is one bad record
    p.land("orders/2026/11/22/02/part-000000.cbor", cbor_items(HOUR_2) + b"\xa2\x62id")
    return p


def test_a_cbor_courier_on_sail_loads_what_it_loads_on_duckdb(
    sail_remote: str, tmp_path: Path
) -> None:
    """CBOR is decoded on the cluster by courier's reader into the lines the NDJSON path
    reads: the same rows, and the same quarantine (bad items by item number, rejected rows by
    line, with DuckDB's reasons)."""
    duck = cbor_project(tmp_path / "duckdb", None)
    lake = cbor_project(tmp_path / "sail", sail_remote)
    expected, result = run(duck), run(lake)
    assert expected["status"] == "succeeded", expected["error"]
    assert result["status"] == "succeeded", result["error"]
    assert feed_rows(lake) == feed_rows(duck)
    assert {r[0] for r in feed_rows(lake)} == {"o1", "o2", "o4", "o5"}
    assert quarantine(lake) == quarantine(duck)
    reasons = [r[3] for r in quarantine(lake)]
    assert len(reasons) == 5, quarantine(lake)  # 3 bad items (2 not maps, 1 cut short), 2 rows
    assert result["feeds"] == expected["feeds"]
    assert result["records"] == expected["records"]
    assert scratch_files(lake) == []
    # the next window in steady state (the pinned schema): a merge on the key
    for p in (duck, lake):
        p.land("orders/2026/11/22/03/part-000000.cbor", cbor_items(HOUR_3))
        again = run(p)
        assert again["status"] == "succeeded", again["error"]
        assert again["files"]["loaded"] == 1
    assert feed_rows(lake) == feed_rows(duck)
    assert {r[0] for r in feed_rows(lake)} == {"o1", "o2", "o4", "o5", "o6"}


def test_decode_arrow_on_a_spark_engine_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from tests.servers import free_port

    p = make(tmp_path / "cbor", f"sc://127.0.0.1:{free_port()}")
    text = (p.root / "config" / "couriers" / "orders.toml").read_text()
    text = text.replace('format = "ndjson"', 'format = "cbor"')
    p.courier(
        "orders", text.replace("max_bad_records = 10", 'max_bad_records = 10, decode = "arrow"')
    )
    failed = run(p)
    assert failed["status"] == "failed"
    assert failed["error"].startswith(
        "courier orders: options.decode = \"arrow\" cannot run on Spark engine 'sail'"
    )
    assert 'or set engine = "duckdb" for this courier' in failed["error"]
    assert table_version(p) is None


POS_FILES = (
    "config/streams/pos-records.toml",
    "config/couriers/pos_tenders.toml",
    "feeds/pos_tenders.toml",
    "queries/pos_tenders.sql",
)


def pos_project(root: Path, remote: str | None) -> ProjectFactory:
    """The repository's point-of-sale example (XML payloads landed as CBOR, record_path and
    force_list) into a Delta feed, and the same payloads as XML files for a second courier."""
    from courier.formats.xml import parse_xml
    from tests.formats.test_pos_example import XML_COURIER

    repo = Path(__file__).resolve().parents[1]
    p = ProjectFactory(root)
    p.write("config/courier.toml", SETTINGS + (ENGINE.format(remote=remote) if remote else ""))
    engine = 'engine = "sail"\n' if remote else ""
    for rel in POS_FILES:
        text = (repo / rel).read_text()
        if rel.startswith("config/couriers/"):
            text = text.replace('prefix = "00"\n', f'prefix = "00"\n{engine}')
        p.write(rel, text)
    xml_courier = XML_COURIER.replace('prefix = "00"\n', f'prefix = "00"\n{engine}')
    p.write(
        "config/couriers/pos_xml.toml", xml_courier.replace("pos_tenders_xml =", "pos_tenders =")
    )
    sample = (repo / "samples" / "pos-records.xml").read_bytes()
    one = sample.replace(b"pos-0001", b"pos-0009")
    items = cbor2_dumps(parse_xml(sample)) + cbor2_dumps(parse_xml(one))
    p.land("pos-records/2026/11/22/09/part-w1-000000.cbor", items + items[:-10])
    p.land("pos-xml/2026/11/22/09/a.xml", sample)
    p.land("pos-xml/2026/11/22/18/b.xml", one)
    p.land("pos-xml/2026/11/22/19/c.xml", b"<records><record></records>")
    return p


def cbor2_dumps(value: Any) -> bytes:
    import cbor2

    return cbor2.dumps(value)


def test_the_pos_example_as_cbor_and_as_xml_on_sail_loads_what_duckdb_loads(
    sail_remote: str, tmp_path: Path
) -> None:
    duck = pos_project(tmp_path / "duckdb", None)
    lake = pos_project(tmp_path / "sail", sail_remote)
    for courier in ("pos_tenders", "pos_xml"):
        results = {}
        for p in (duck, lake):
            ctx = p.context()
            window = ctx.window(ctx.project.courier(courier), date="2026-11-22")
            results[p] = ctx.run(courier, window, NOW)
            assert results[p]["status"] == "succeeded", (courier, results[p]["error"])
        assert results[lake]["feeds"] == results[duck]["feeds"], courier
        assert results[lake]["records"] == results[duck]["records"], courier
        url = str(lake.root / ".courier" / "lake" / "feeds" / "pos_tenders")
        table = DeltaTable(url).to_pyarrow_table()
        names = [c for c in table.column_names if not c.startswith("_courier")]
        duck_url = str(duck.root / ".courier" / "lake" / "feeds" / "pos_tenders")
        theirs = DeltaTable(duck_url).to_pyarrow_table().select(names).to_pylist()
        assert sorted(table.select(names).to_pylist(), key=str) == sorted(theirs, key=str)
        assert len(theirs) == 5  # pos-0001 and pos-0009 (2 tenders each), pos-0002 (twice: one row)
    assert quarantine(lake) == quarantine(duck)
    assert [(r[1], r[2]) for r in quarantine(lake)] == [
        ("pos-records/2026/11/22/09/part-w1-000000.cbor", 4),  # the cut item
        ("pos-xml/2026/11/22/19/c.xml", 1),
    ]


def test_a_delta_table_whose_path_holds_a_space_is_refused_before_the_cluster_writes(
    sail_remote: str, tmp_path: Path
) -> None:
    """Sail writes such a table at its percent-encoded path (a folder named `with%20space`)
    and fails every later write: the run is refused by name before any job, nothing written."""
    lake = make(tmp_path / "with space", sail_remote)
    failed = run(lake)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("feed orders: its Delta table ")
    assert "has a character in its path that a URI escapes (a space?)" in failed["error"]
    assert "move the destination's storage (or the" in failed["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["with space"]  # no with%20space
    assert table_version(lake) is None
