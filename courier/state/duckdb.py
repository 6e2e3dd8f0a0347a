"""State in DuckDB (schema `courier`), by default in the feed database so that a run's state
and its feed rows commit in one transaction."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from courier.plan import BadRecord, PlannedFile
from courier.state.base import StateStore

DDL = [
    "CREATE SCHEMA IF NOT EXISTS courier",
    """CREATE TABLE IF NOT EXISTS courier.files (
        storage VARCHAR, key VARCHAR, size BIGINT, version VARCHAR, etag VARCHAR,
        modified TIMESTAMPTZ, checksum VARCHAR, courier VARCHAR, file_tag VARCHAR,
        partition_start TIMESTAMPTZ, run_id VARCHAR, loaded_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS courier.runs (
        run_id VARCHAR, courier VARCHAR, status VARCHAR, trigger VARCHAR,
        group_name VARCHAR, group_run_id VARCHAR,
        window_start TIMESTAMPTZ, window_end TIMESTAMPTZ,
        files_found INTEGER, files_loaded INTEGER, files_skipped INTEGER, bytes BIGINT,
        rows_read BIGINT, rows_loaded BIGINT, rows_rejected BIGINT, quarantined BIGINT,
        feeds JSON, warnings JSON, schema_changes JSON, error VARCHAR,
        reload BOOLEAN, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, duration_s DOUBLE,
        host VARCHAR, pid INTEGER)""",
    """CREATE TABLE IF NOT EXISTS courier.quarantine (
        run_id VARCHAR, courier VARCHAR, feed VARCHAR, file VARCHAR, line BIGINT,
        reason VARCHAR, raw VARCHAR, quarantined_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS courier.schemas (
        courier VARCHAR, file_tag VARCHAR, columns JSON, run_id VARCHAR,
        updated_at TIMESTAMPTZ)""",
]

RUN_COLUMNS = [
    "run_id", "courier", "status", "trigger", "group_name", "group_run_id", "window_start",
    "window_end", "files_found", "files_loaded", "files_skipped", "bytes", "rows_read",
    "rows_loaded", "rows_rejected", "quarantined", "feeds", "warnings", "schema_changes", "error",
    "reload", "started_at", "finished_at", "duration_s", "host", "pid",
]  # fmt: skip
JSON_COLUMNS = {"feeds", "warnings", "schema_changes"}


class DuckDBStateStore(StateStore):
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        for ddl in DDL:
            self.con.execute(ddl)

    def begin(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        try:
            self.con.execute("ROLLBACK")
        except duckdb.TransactionException:
            pass  # nothing was open

    def loaded_versions(self, storage: str, keys: Iterable[str]) -> dict[str, set[tuple[int, str]]]:
        wanted = list(keys)
        out: dict[str, set[tuple[int, str]]] = {}
        if not wanted:
            return out
        self.con.execute("CREATE OR REPLACE TEMP TABLE _courier_keys (key VARCHAR)")
        self.con.executemany("INSERT INTO _courier_keys VALUES (?)", [(k,) for k in wanted])
        rows = self.con.execute(
            "SELECT f.key, f.size, f.version FROM courier.files f "
            "JOIN _courier_keys k ON k.key = f.key WHERE f.storage = ?",
            [storage],
        ).fetchall()
        for key, size, version in rows:
            out.setdefault(key, set()).add((int(size), version or ""))
        return out

    def record_files(
        self, run_id: str, courier: str, tag: str, files: list[PlannedFile], loaded_at: datetime
    ) -> None:
        self.con.executemany(
            "INSERT INTO courier.files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f.storage, f.key, f.info.size, f.info.version, f.info.etag,
                    f.info.modified, f.info.etag, courier, tag, f.partition, run_id, loaded_at,
                )
                for f in files
            ],
        )  # fmt: skip

    def start_run(self, record: dict[str, Any]) -> None:
        row = [self._value(c, record.get(c)) for c in RUN_COLUMNS]
        placeholders = ", ".join("?" for _ in RUN_COLUMNS)
        self.con.execute(
            f"INSERT INTO courier.runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders})", row
        )

    def finish_run(self, record: dict[str, Any]) -> None:
        cols = [c for c in RUN_COLUMNS if c != "run_id" and c in record]
        assignments = ", ".join(f"{c} = ?" for c in cols)
        values = [self._value(c, record[c]) for c in cols]
        self.con.execute(
            f"UPDATE courier.runs SET {assignments} WHERE run_id = ?", [*values, record["run_id"]]
        )

    @staticmethod
    def _value(column: str, value: Any) -> Any:
        if column in JSON_COLUMNS and value is not None:
            return json.dumps(value)
        return value

    def runs(self, courier: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = "", []
        if courier:
            where, params = "WHERE courier = ?", [courier]
        cur = self.con.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM courier.runs {where} "
            f"ORDER BY started_at DESC, run_id DESC LIMIT {int(limit)}",
            params,
        )
        out = []
        for row in cur.fetchall():
            rec = dict(zip(RUN_COLUMNS, row, strict=True))
            for c in JSON_COLUMNS:
                if rec[c] is not None:
                    rec[c] = json.loads(rec[c])
            out.append(rec)
        return out

    def quarantine(self, run_id: str, courier: str, feed: str | None, bad: list[BadRecord]) -> None:
        if not bad:
            return
        self.con.executemany(
            "INSERT INTO courier.quarantine VALUES (?, ?, ?, ?, ?, ?, ?, now())",
            [(run_id, courier, feed, b.file, b.line, b.reason, b.raw) for b in bad],
        )

    def export_quarantine(self, run_id: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        self.con.execute(
            "COPY (SELECT * FROM courier.quarantine WHERE run_id = $run_id ORDER BY file, line) "
            f"TO '{str(tmp).replace(chr(39), chr(39) * 2)}' (FORMAT json)",
            {"run_id": run_id},
        )
        os.replace(tmp, path)

    def pinned_schema(self, courier: str, tag: str) -> dict[str, str] | None:
        row = self.con.execute(
            "SELECT columns FROM courier.schemas WHERE courier = ? AND file_tag = ? "
            "ORDER BY updated_at DESC LIMIT 1",
            [courier, tag],
        ).fetchone()
        return json.loads(row[0]) if row else None

    def pin_schema(self, courier: str, tag: str, schema: dict[str, str], run_id: str) -> None:
        self.con.execute(
            "DELETE FROM courier.schemas WHERE courier = ? AND file_tag = ?", [courier, tag]
        )
        self.con.execute(
            "INSERT INTO courier.schemas VALUES (?, ?, ?, ?, now())",
            [courier, tag, json.dumps(schema), run_id],
        )
