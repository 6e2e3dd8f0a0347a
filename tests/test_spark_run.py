"""`courier run` on a Spark engine (Sail, a real Spark Connect server): the cluster reads the
window's files, runs the query, casts, dedupes and writes the Delta table; the same courier on
DuckDB + Delta gives the same table row for row and the same quarantine."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable

from courier.analyst.crossengine import canonical_json
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
HOUR_3 = "\n".join([order(1, status="shipped"), order(6)]) + "\n"


def make(root: Path, remote: str | None) -> ProjectFactory:
    p = ProjectFactory(root)
    settings = SETTINGS + (ENGINE.format(remote=remote) if remote else "")
    p.write("config/courier.toml", settings)
    p.feed("orders", FEED)
    p.query("orders", QUERY)
    p.courier("orders", COURIER.format(engine='engine = "sail"' if remote else ""))
    p.land("orders/2026/11/22/01/part-000000.ndjson", HOUR_1.encode())
    p.land("orders/2026/11/22/02/part-000000.ndjson", HOUR_2.encode())
    return p


def feed_rows(p: ProjectFactory) -> list[tuple]:
    table = DeltaTable(str(p.root / ".courier" / "lake" / "feeds" / "orders")).to_pyarrow_table()
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
    # a later window merges on the key: o1 updated, o6 inserted, the others kept
    for p in (duck, lake):
        p.land("orders/2026/11/22/03/part-000000.ndjson", HOUR_3.encode())
        again = run(p)
        assert again["status"] == "succeeded", again
        assert again["files"]["loaded"] == 1
    assert feed_rows(lake) == feed_rows(duck)
    assert ("o1", 101, "shipped") in {(r[0], r[1], r[4]) for r in feed_rows(lake)}
    assert run(lake)["status"] == "skipped"  # every file is loaded: nothing twice


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
    (p.root / "queries" / "orders.spark.sql").unlink()
    assert run(p)["status"] == "succeeded"  # the window's file loads once the query is fixed
    assert table_version(p) == (before or 0) + 1
