"""Build small courier projects on disk for tests."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from courier.context import Context
from courier.project import Project
from courier.validate import load_project

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

EVENTS_FEED = """
primary_key = ["event_id", "item_idx"]
required = ["event_id"]

[fields]
event_id = "string"
item_idx = "int"
customer_id = "bigint"
sku = "string"
qty = "int"
price = "decimal(12,2)"
"""

EVENTS_QUERY = """
SELECT e.event_id, i.item_idx, e.customer.id AS customer_id,
       i.item.sku AS sku, i.item.qty AS qty, i.item.price AS price
FROM events AS e,
     LATERAL (SELECT unnest(e.items) AS item, generate_subscripts(e.items, 1) AS item_idx) AS i
"""

EVENTS_COURIER = """
storage = "landing"
file_pattern = "'events/'yyyy/MM/dd/HH'/*.ndjson'"
prefix = "00"
format = "ndjson"
file_tag = "events"
options = { max_bad_records = 10 }

[load_operations]
order_items = [{ type = "sql", sql-query = "order_items", sql-files = [{ file = "events" }] }]
"""


def event(i: int, customer: int = 1, items: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "customer": {"id": customer, "email": f"c{customer}@x.test"},
        "items": [{"sku": f"s{j}", "qty": j + 1, "price": 1.5 * (j + 1)} for j in range(items)],
        **extra,
    }


class ProjectFactory:
    """A project folder with settings, couriers, feeds and queries written from strings."""

    def __init__(self, root: Path):
        self.root = root
        (root / "config").mkdir(parents=True)
        self.write("config/courier.toml", '[project]\ntime_zone = "UTC"\n')

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def courier(self, name: str, text: str) -> ProjectFactory:
        self.write(f"config/couriers/{name}.toml", text)
        return self

    def feed(self, name: str, text: str) -> ProjectFactory:
        self.write(f"feeds/{name}.toml", text)
        return self

    def query(self, name: str, sql: str) -> ProjectFactory:
        self.write(f"queries/{name}.sql", sql)
        return self

    def events_project(self) -> ProjectFactory:
        """The standard nested-events courier: events -> order_items (upsert on 2 keys)."""
        self.feed("order_items", EVENTS_FEED)
        self.query("order_items", EVENTS_QUERY)
        self.courier("events", EVENTS_COURIER)
        return self

    @property
    def landing(self) -> Path:
        return self.root / ".courier" / "landing"

    def land(self, key: str, records: list[Any] | bytes) -> Path:
        path = self.landing / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(records, bytes):
            path.write_bytes(records)
        else:
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        return path

    def land_hour(self, day: date, hour: int, records: list[Any] | bytes, part: int = 0) -> Path:
        return self.land(f"events/{day:%Y/%m/%d}/{hour:02d}/part-test-{part:06d}.ndjson", records)

    def load(self) -> Project:
        return load_project(self.root)

    def context(self) -> Context:
        return Context(self.load())

    def run(self, courier: str = "events", day: str = "2026-11-22", **kwargs: Any) -> dict:
        ctx = self.context()
        window = ctx.window(ctx.project.courier(courier), date=day)
        return ctx.run(courier, window, kwargs.pop("now", NOW), **kwargs)

    def sql(self, query: str) -> list[tuple]:
        import duckdb

        con = duckdb.connect(str(self.root / ".courier" / "feeds.duckdb"), read_only=True)
        try:
            return con.execute(query).fetchall()
        finally:
            con.close()
