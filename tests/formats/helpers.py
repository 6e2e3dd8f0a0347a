"""Helpers for the format tests: write files, read them through a reader or the DuckDB engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import duckdb
import orjson

from courier.engines.duckdb import DuckDBEngine
from courier.formats.arrow_tree import TreeReader
from courier.formats.options import TreeOptions
from courier.plan import BadRecord, InputFile, InputSummary


def events(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Nested records shaped like the example web events."""
    return [
        {
            "event_id": f"e{i}",
            "occurred_at": f"2026-11-22T10:{i % 60:02d}:00Z",
            "customer": {"id": i % 7, "email": f"c{i % 7}@x.test"},
            "items": [
                {"sku": f"s{j}", "qty": j + 1, "price": 1.5 * (j + 1)} for j in range(i % 3 + 1)
            ],
        }
        for i in range(start, start + n)
    ]


def write(path: Path, data: bytes) -> InputFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return InputFile(f"landing/{path.name}", path, len(data))


def ndjson(records: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def cbor_seq(records: list[Any]) -> bytes:
    return b"".join(cbor2.dumps(r) for r in records)


def read_items(reader: TreeReader, file: InputFile, **options: Any) -> list[Any]:
    return list(reader.items(file, TreeOptions.parse(options)))


def read_rows(
    reader: TreeReader, files: list[InputFile], **options: Any
) -> tuple[list[dict[str, Any]], list[BadRecord]]:
    rows: list[dict[str, Any]] = []
    bad: list[BadRecord] = []
    opts = TreeOptions.parse(options)
    for f in files:
        for batch, _numbers, batch_bad in reader.rows(f, opts):
            rows.extend(batch)
            bad.extend(batch_bad)
    return rows, bad


class Engine:
    """A DuckDB engine on an in-memory database, reading file tags like a courier run does."""

    def __init__(self) -> None:
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.engine = DuckDBEngine(self.con)

    def read(
        self, tag: str, files: list[InputFile], fmt: str, read_once: bool = False, **options: Any
    ) -> InputSummary:
        _relation, summary = self.engine.read_local(
            tag, files, fmt, options, None, read_once=read_once
        )
        return summary

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def types(self, tag: str) -> dict[str, str]:
        return {r[0]: r[1] for r in self.con.execute(f"DESCRIBE {tag}").fetchall()}

    def close(self) -> None:
        self.engine.close()
        self.con.close()


NESTED_QUERY = """
SELECT e.event_id, e.occurred_at, e.customer.id AS customer_id, i.item_idx,
       i.item.sku AS sku, i.item.qty AS qty, i.item.price AS price
FROM {tag} AS e,
     LATERAL (SELECT unnest(e.items) AS item, generate_subscripts(e.items, 1) AS item_idx) AS i
ORDER BY e.event_id, i.item_idx
"""
