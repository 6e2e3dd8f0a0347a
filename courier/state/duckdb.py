"""State in DuckDB (schema `courier`), by default in the feed database so that a run's state
and its feed rows commit in one transaction."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from courier.errors import ConfigError
from courier.plan import BadRecord, PlannedFile
from courier.records import (
    GROUP_RUN_COLUMNS,
    LEASE_COLUMNS,
    RUN_COLUMNS,
    GroupRunRecord,
    Lease,
    RunRecord,
)
from courier.state.base import StateStore
from courier.storage.base import ObjectInfo

if TYPE_CHECKING:
    import pyarrow as pa

    from courier.alerts import Alert
    from courier.backends import Session
    from courier.config.models import StateSection
    from courier.project import Project

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
    """CREATE TABLE IF NOT EXISTS courier.group_runs (
        group_run_id VARCHAR, group_name VARCHAR, scheduled_at TIMESTAMPTZ, trigger VARCHAR,
        status VARCHAR, members JSON, error VARCHAR, started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ, duration_s DOUBLE, host VARCHAR, pid INTEGER)""",
    """CREATE TABLE IF NOT EXISTS courier.leases (
        scope VARCHAR, holder VARCHAR, host VARCHAR, pid INTEGER, acquired_at TIMESTAMPTZ,
        expires_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS courier.alerts (
        alert_id VARCHAR, kind VARCHAR, group_name VARCHAR, group_run_id VARCHAR,
        courier VARCHAR, run_id VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ,
        message VARCHAR, details JSON, deliveries JSON, created_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS courier.cursors (
        source VARCHAR PRIMARY KEY, cursor VARCHAR, pending JSON, updated_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS courier.source_keys (
        source VARCHAR, key VARCHAR, landed_as VARCHAR, landed_at TIMESTAMPTZ,
        PRIMARY KEY (source, key))""",
]

JSON_COLUMNS = {"feeds", "warnings", "schema_changes"}
PLANS = "courier.run_plans"  # files a run is about to load (only when state commits apart)


def open_backend(name: str, config: StateSection, session: Session) -> DuckDBStateStore:
    """Registry entry (courier.backends): state in the feed database (schema `courier`)."""
    from courier.engines.duckdb import feeds_connection

    project = session.project
    feeds_db = project.path(project.settings.feeds.database)
    if project.path(config.database).resolve() != feeds_db.resolve():
        raise ConfigError(
            "[state] database must be the feed database for now, so that a run's state and "
            "its rows commit in one transaction; remove [state] database or set it to "
            f"{project.settings.feeds.database!r}",
            project.root / "config" / "courier.toml",
            "state.database",
        )
    return DuckDBStateStore(feeds_connection(session))


def _each_values(rows: list[tuple[Any, ...]], width: int) -> Iterator[tuple[str, list[Any]]]:
    from courier.engines.duckdb import each_values

    return each_values(rows, width)


class DuckDBStateStore(StateStore):
    def __init__(self, con: duckdb.DuckDBPyConnection, create: bool = True):
        self.con = con
        for ddl in DDL if create else ():
            self.con.execute(ddl)

    @classmethod
    def reading(cls, con: duckdb.DuckDBPyConnection) -> DuckDBStateStore | None:
        """A store over a read-only connection (the status page's visit): nothing is
        created; None while the database holds no courier state yet."""
        have = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'courier'"
            ).fetchall()
        }
        needed = {ddl.split("courier.")[1].split(" ")[0] for ddl in DDL if "TABLE" in ddl}
        return cls(con, create=False) if needed <= have else None

    def begin(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        try:
            self.con.execute("ROLLBACK")
        except duckdb.TransactionException:
            pass  # nothing was open

    def loaded_versions(
        self, courier: str, storage: str, keys: Iterable[str]
    ) -> dict[str, set[tuple[int, str]]]:
        out: dict[str, set[tuple[int, str]]] = {}
        for key, size, version, _ in self._loaded(courier, storage, keys):
            out.setdefault(key, set()).add((int(size), version or ""))
        return out

    def loaded_checksums(
        self, courier: str, storage: str, keys: Iterable[str]
    ) -> dict[tuple[str, int, str], set[str]]:
        out: dict[tuple[str, int, str], set[str]] = {}
        for key, size, version, checksum in self._loaded(courier, storage, keys):
            if checksum is not None:
                out.setdefault((key, int(size), version or ""), set()).add(checksum)
        return out

    def loaded_versions_many(
        self, wanted: dict[tuple[str, str], list[str]]
    ) -> dict[str, dict[str, set[tuple[int, str]]]]:
        import pyarrow as pa

        rows = [(c, s, k) for (c, s), keys in wanted.items() for k in keys]
        out: dict[str, dict[str, set[tuple[int, str]]]] = {}
        if not rows:
            return out
        names = ("courier", "storage", "key")
        keys = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
        self.con.register("_courier_wanted", keys)  # a view: works on a read-only connection
        try:
            found = self.con.execute(
                "SELECT f.courier, f.key, f.size, f.version FROM courier.files f "
                "JOIN _courier_wanted w ON w.key = f.key AND w.courier = f.courier "
                "AND w.storage = f.storage"
            ).fetchall()
        finally:
            self.con.unregister("_courier_wanted")
        for courier, key, size, version in found:
            out.setdefault(courier, {}).setdefault(key, set()).add((int(size), version or ""))
        return out

    def _loaded(self, courier: str, storage: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """(key, size, version, checksum) of each load of these keys by the courier."""
        wanted = list(keys)
        if not wanted:
            return []
        found: list[tuple[Any, ...]] = []
        for source, params in _each_values([(k,) for k in wanted], 1):
            found += self.con.execute(
                "SELECT f.key, f.size, f.version, f.checksum FROM courier.files f "
                f"JOIN {source} ON v.c0 = f.key WHERE f.storage = ? AND f.courier = ?",
                [*params, storage, courier],
            ).fetchall()
        return found

    def record_files(
        self, run_id: str, courier: str, tag: str, files: list[PlannedFile], loaded_at: datetime
    ) -> None:
        rows = [
            (
                f.storage, f.key, f.info.size, f.info.version, f.info.etag,
                f.info.modified, f.checksum or f.info.etag, courier, tag, f.partition,
                run_id, loaded_at,
            )
            for f in files
        ]  # fmt: skip
        for source, params in _each_values(rows, 12):
            self.con.execute(f"INSERT INTO courier.files SELECT * FROM {source}", params)

    def start_run(self, record: RunRecord) -> None:
        row = record.to_row()
        values = [self._value(c, row[c]) for c in RUN_COLUMNS]
        placeholders = ", ".join("?" for _ in RUN_COLUMNS)
        self.con.execute(
            f"INSERT INTO courier.runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders})", values
        )

    def finish_run(self, record: RunRecord) -> None:
        row = record.to_row()
        cols = [c for c in RUN_COLUMNS if c != "run_id"]
        assignments = ", ".join(f"{c} = ?" for c in cols)
        values = [self._value(c, row[c]) for c in cols]
        self.con.execute(
            f"UPDATE courier.runs SET {assignments} WHERE run_id = ?", [*values, record.run_id]
        )

    def save_plan(
        self,
        run_id: str,
        tag: str,
        files: list[PlannedFile],
        courier: str | None = None,
        sequence: int | None = None,
    ) -> None:
        self._plans_table()
        plan = {
            "tag": tag,
            "files": [
                {
                    "storage": f.storage, "key": f.key, "size": f.info.size, "etag": f.info.etag,
                    "modified": f.info.modified.isoformat() if f.info.modified else None,
                    "partition": f.partition.isoformat(), "checksum": f.checksum,
                }
                for f in files
            ],
        }  # fmt: skip
        self.con.execute(
            f"INSERT INTO {PLANS} (run_id, plan, courier, sequence) VALUES (?, ?, ?, ?)",
            [run_id, json.dumps(plan), courier, sequence],
        )

    def _plans_table(self) -> None:
        if getattr(self, "_plans_ready", False):
            return
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {PLANS} (run_id VARCHAR, plan JSON)")
        # added with run sequences (a plan table of an older courier gains them)
        self.con.execute(f"ALTER TABLE {PLANS} ADD COLUMN IF NOT EXISTS courier VARCHAR")
        self.con.execute(f"ALTER TABLE {PLANS} ADD COLUMN IF NOT EXISTS sequence BIGINT")
        self._plans_ready = True

    def plan_sequence(self, run_id: str) -> int | None:
        from courier.engines.duckdb import table_exists

        if not table_exists(self.con, "courier", "run_plans"):
            return None
        self._plans_table()
        row = self.con.execute(
            f"SELECT sequence FROM {PLANS} WHERE run_id = ?", [run_id]
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def last_sequence(self, courier: str) -> int:
        from courier.engines.duckdb import table_exists

        if not table_exists(self.con, "courier", "run_plans"):
            return 0
        self._plans_table()
        row = self.con.execute(
            f"SELECT max(sequence) FROM {PLANS} WHERE courier = ?", [courier]
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def saved_plan(self, run_id: str) -> tuple[str, list[PlannedFile]] | None:
        from courier.engines.duckdb import table_exists

        if not table_exists(self.con, "courier", "run_plans"):
            return None
        row = self.con.execute(f"SELECT plan FROM {PLANS} WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            return None
        plan = json.loads(row[0])
        files = [
            PlannedFile(
                f["storage"],
                ObjectInfo(
                    f["key"], f["size"], f["etag"],
                    datetime.fromisoformat(f["modified"]) if f["modified"] else None,
                ),
                datetime.fromisoformat(f["partition"]),
                checksum=f.get("checksum"),
            )
            for f in plan["files"]
        ]  # fmt: skip
        return plan["tag"], files

    @staticmethod
    def _value(column: str, value: Any) -> Any:
        if column in JSON_COLUMNS and value is not None:
            return json.dumps(value)
        return value

    def runs(
        self,
        courier: str | None = None,
        limit: int = 20,
        group: str | None = None,
        status: str | None = None,
        run_id: str | None = None,
    ) -> list[RunRecord]:
        conditions = [
            (c, v)
            for c, v in (
                ("courier", courier), ("group_name", group), ("status", status), ("run_id", run_id)
            )
            if v
        ]  # fmt: skip
        where = " AND ".join(f"{c} = ?" for c, _ in conditions)
        params = [v for _, v in conditions]
        # started_at is kept to the second: runs started within one second list newest first
        # by the order they were recorded in (rowid), not by their run ids' random suffix
        cur = self.con.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM courier.runs "
            f"{'WHERE ' + where if where else ''} "
            f"ORDER BY started_at DESC, rowid DESC, run_id DESC LIMIT {int(limit)}",
            params,
        )
        return [self._record(row) for row in cur.fetchall()]

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RunRecord:
        rec = dict(zip(RUN_COLUMNS, row, strict=True))
        for c in JSON_COLUMNS:
            if rec[c] is not None:
                rec[c] = json.loads(rec[c])
        return RunRecord.from_row(rec)

    def runs_since(self, since: datetime, columns: list[str]) -> pa.Table:
        cols = ", ".join(f"{c}::VARCHAR AS {c}" if c in JSON_COLUMNS else c for c in columns)
        return self.con.sql(
            f"SELECT {cols} FROM courier.runs WHERE started_at >= $since",
            params={"since": since},
        ).to_arrow_table()

    def quarantine_arrow(self, run_id: str, courier: str, feed: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        self.con.register("_courier_rejected", rows)
        try:
            self.con.execute(
                "INSERT INTO courier.quarantine SELECT ?, ?, ?, file, line, reason, raw, now() "
                "FROM _courier_rejected",
                [run_id, courier, feed],
            )
        finally:
            self.con.unregister("_courier_rejected")

    def run(self, run_id: str) -> RunRecord | None:
        found = self.runs(run_id=run_id, limit=1)
        return found[0] if found else None

    def run_files(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.con.execute(
            "SELECT key, size, partition_start, file_tag FROM courier.files WHERE run_id = ? "
            "ORDER BY key",
            [run_id],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def quarantined(
        self, courier: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        conditions = [(c, v) for c, v in (("q.courier", courier), ("q.run_id", run_id)) if v]
        where = " AND ".join(f"{c} = ?" for c, _ in conditions)
        cur = self.con.execute(
            "SELECT q.run_id, q.courier, q.feed, q.file, q.line, q.reason, q.raw, "
            "q.quarantined_at FROM courier.quarantine q "
            f"{'WHERE ' + where if where else ''} "
            f"ORDER BY q.quarantined_at DESC, q.run_id DESC, q.file, q.line LIMIT {int(limit)}",
            [v for _, v in conditions],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def quarantine(self, run_id: str, courier: str, feed: str | None, bad: list[BadRecord]) -> None:
        if not bad:
            return
        rows = [(b.file, b.line, b.reason, b.raw) for b in bad]
        for source, params in _each_values(rows, 4):
            self.con.execute(
                "INSERT INTO courier.quarantine SELECT ?, ?, ?, c0, c1, c2, c3, now() "
                f"FROM {source}",
                [run_id, courier, feed, *params],
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

    # -- groups, leases, alerts, status -----------------------------------------------------
    def _select(
        self, table: str, columns: list[str], tail: str, params: list[Any]
    ) -> list[dict[str, Any]]:
        cur = self.con.execute(f"SELECT {', '.join(columns)} FROM {table} {tail}", params)
        out = []
        for row in cur.fetchall():
            rec = dict(zip(columns, row, strict=True))
            for c in JSON_COLUMNS | {"members", "details", "deliveries"}:
                if isinstance(rec.get(c), str):
                    rec[c] = json.loads(rec[c])
            out.append(rec)
        return out

    def _insert(self, table: str, columns: list[str], record: dict[str, Any]) -> None:
        values = [
            json.dumps(record.get(c)) if c in GROUP_JSON and record.get(c) is not None
            else record.get(c)
            for c in columns
        ]  # fmt: skip
        marks = ", ".join("?" for _ in columns)
        self.con.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)

    def start_group_run(self, record: GroupRunRecord) -> None:
        self._insert("courier.group_runs", GROUP_RUN_COLUMNS, record.to_row())

    def finish_group_run(self, record: GroupRunRecord) -> None:
        row = record.to_row()
        cols = [c for c in GROUP_RUN_COLUMNS if c not in ("group_run_id", "started_at")]
        values = [
            json.dumps(row[c]) if c in GROUP_JSON and row[c] is not None else row[c] for c in cols
        ]
        self.con.execute(
            f"UPDATE courier.group_runs SET {', '.join(f'{c} = ?' for c in cols)} "
            "WHERE group_run_id = ?",
            [*values, record.group_run_id],
        )

    def group_runs(
        self,
        group: str | None = None,
        limit: int = 20,
        trigger: str | None = None,
        scheduled_at: datetime | None = None,
        since: datetime | None = None,
    ) -> list[GroupRunRecord]:
        where, params = ["true"], []
        for clause, value in (
            ("group_name = ?", group),
            ("trigger = ?", trigger),
            ("scheduled_at = ?", scheduled_at),
            ("scheduled_at >= ?", since),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self._select(
            "courier.group_runs",
            GROUP_RUN_COLUMNS,
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY scheduled_at DESC, started_at DESC LIMIT {int(limit)}",
            params,
        )
        return [GroupRunRecord.from_row(r) for r in rows]

    def last_scheduled_run(self, group: str) -> datetime | None:
        row = self.con.execute(
            "SELECT max(scheduled_at) FROM courier.group_runs WHERE group_name = ? "
            "AND trigger = 'scheduled' AND status NOT IN ('running', 'abandoned', 'interrupted')",
            [group],
        ).fetchone()
        return row[0] if row else None

    def window_runs(self, courier: str, start: datetime, end: datetime) -> list[RunRecord]:
        rows = self._select(
            "courier.runs",
            RUN_COLUMNS,
            "WHERE courier = ? AND window_start = ? AND window_end = ? "
            "ORDER BY started_at DESC, rowid DESC, run_id DESC",
            [courier, start, end],
        )
        return [RunRecord.from_row(r) for r in rows]

    def runs_of_groups(self, group_run_ids: list[str]) -> list[RunRecord]:
        if not group_run_ids:
            return []
        marks = ", ".join("?" for _ in group_run_ids)
        rows = self._select(
            "courier.runs",
            RUN_COLUMNS,
            f"WHERE group_run_id IN ({marks}) ORDER BY started_at, run_id",
            list(group_run_ids),
        )
        return [RunRecord.from_row(r) for r in rows]

    def get_lease(self, scope: str) -> Lease | None:
        rows = self._select("courier.leases", LEASE_COLUMNS, "WHERE scope = ?", [scope])
        return Lease.from_row(rows[0]) if rows else None

    def put_lease(self, lease: Lease) -> None:
        self.con.execute("DELETE FROM courier.leases WHERE scope = ?", [lease.scope])
        self._insert("courier.leases", LEASE_COLUMNS, lease.to_row())

    def drop_lease(self, scope: str, holder: str) -> None:
        self.con.execute(
            "DELETE FROM courier.leases WHERE scope = ? AND holder = ?", [scope, holder]
        )

    def record_alert(self, alert: Alert) -> None:
        self._insert("courier.alerts", ALERT_COLUMNS, alert.row())

    def alerts(
        self, group_run_id: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        where, params = ["true"], []
        if group_run_id is not None:
            where.append("group_run_id = ?")
            params.append(group_run_id)
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        return self._select(
            "courier.alerts",
            ALERT_COLUMNS,
            f"WHERE {' AND '.join(where)} ORDER BY created_at DESC LIMIT {int(limit)}",
            params,
        )

    # -- sources ------------------------------------------------------------------------------
    def source_state(self, source: str) -> dict[str, Any]:
        row = self.con.execute(
            "SELECT cursor, pending FROM courier.cursors WHERE source = ?", [source]
        ).fetchone()
        if row is None:
            return {"cursor": None, "pending": None}
        return {"cursor": row[0], "pending": json.loads(row[1]) if row[1] else None}

    def put_source_state(self, source: str, cursor: str | None, pending: Any) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO courier.cursors VALUES (?, ?, ?, now())",
            [source, cursor, None if pending is None else json.dumps(pending)],
        )

    def seen_keys(self, source: str, keys: list[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        rows: list[tuple[Any, ...]] = []
        for values, params in _each_values([(k,) for k in set(keys)], 1):
            rows += self.con.execute(
                "SELECT s.key, s.landed_as FROM courier.source_keys s "
                f"JOIN {values} ON v.c0 = s.key WHERE s.source = ?",
                [*params, source],
            ).fetchall()
        return {k: v for k, v in rows}

    def add_keys(self, source: str, keys: dict[str, str | None], at: datetime) -> None:
        if keys:
            for values, params in _each_values(list(keys.items()), 2):
                self.con.execute(
                    "INSERT OR REPLACE INTO courier.source_keys "
                    f"SELECT ?, c0, CAST(c1 AS VARCHAR), ? FROM {values}",
                    [source, at, *params],
                )

    def drop_keys(self, source: str, keys: list[str]) -> None:
        if keys:
            for values, params in _each_values([(k,) for k in keys], 1):
                self.con.execute(
                    "DELETE FROM courier.source_keys WHERE source = ? "
                    f"AND key IN (SELECT c0 FROM {values})",
                    [source, *params],
                )

    def courier_summary(self, courier: str) -> dict[str, Any]:
        last_success = self.con.execute(
            "SELECT max(finished_at) FROM courier.runs WHERE courier = ? AND status = 'succeeded'",
            [courier],
        ).fetchone()
        newest = self.con.execute(
            "SELECT max(partition_start), count(*) FROM courier.files WHERE courier = ?",
            [courier],
        ).fetchone()
        last = self.runs(courier, limit=1)
        finished = self.con.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM courier.runs WHERE courier = ? "
            "AND status <> 'running' ORDER BY started_at DESC, rowid DESC, run_id DESC LIMIT 1",
            [courier],
        ).fetchone()
        return {
            "last_success": last_success[0] if last_success else None,
            "newest_partition": newest[0] if newest else None,
            "files_loaded": int(newest[1]) if newest else 0,
            "last_run": last[0] if last else None,
            "last_finished": self._record(finished) if finished else None,
        }

    def courier_summaries(self, couriers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Every courier's summary in three queries, whatever the number of couriers."""
        out: dict[str, dict[str, Any]] = {
            name: {"last_success": None, "newest_partition": None, "files_loaded": 0,
                   "last_run": None, "last_finished": None}
            for name in couriers
        }  # fmt: skip
        # the newest run and the newest finished run of each courier (ties: the larger run
        # id, as runs() orders them), then those rows whole: one scan each
        picks = self.con.execute(
            "SELECT courier, arg_max(run_id, (started_at, run_id)), "
            "arg_max(run_id, (started_at, run_id)) FILTER (WHERE status <> 'running'), "
            "max(finished_at) FILTER (WHERE status = 'succeeded') "
            "FROM courier.runs GROUP BY courier"
        ).fetchall()
        wanted = {r for _, last, fin, _ in picks for r in (last, fin) if r is not None}
        records = {}
        if wanted:
            rows = self.con.execute(
                f"SELECT {', '.join(RUN_COLUMNS)} FROM courier.runs "
                "WHERE list_contains($ids, run_id)",
                {"ids": sorted(wanted)},
            ).fetchall()
            records = {row[0]: self._record(row) for row in rows}
        for name, last, fin, success in picks:
            if name in out:
                out[name]["last_run"] = records.get(last) if last else None
                out[name]["last_finished"] = records.get(fin) if fin else None
                out[name]["last_success"] = success
        for name, newest, count in self.con.execute(
            "SELECT courier, max(partition_start), count(*) FROM courier.files GROUP BY courier"
        ).fetchall():
            if name in out:
                out[name]["newest_partition"] = newest
                out[name]["files_loaded"] = int(count)
        return out


ALERT_COLUMNS = [
    "alert_id", "kind", "group_name", "group_run_id", "courier", "run_id", "window_start",
    "window_end", "message", "details", "deliveries", "created_at",
]  # fmt: skip
GROUP_JSON = {"members", "details", "deliveries"}


# -- one database instance per process --------------------------------------------------------


class _Keeper:
    """Keeps one connection to the feed database open while any thread of this process works
    in it, and opens/closes it under a lock.

    DuckDB shares one database instance between the connections of a process, created by the
    first connect and torn down by the last close; a connect racing a create or a teardown in
    another thread fails ("Unique file handle conflict"). With the keeper open, couriers
    running in parallel threads only ever attach to a live instance. Between runs nothing is
    held, so another process can take its turn."""

    def __init__(self, open_: Callable[[], duckdb.DuckDBPyConnection]):
        self.open = open_
        self.lock = threading.Lock()
        self.count = 0
        self.con: duckdb.DuckDBPyConnection | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self.lock:
            if self.count == 0:
                self.con = self.open()  # TransientError: another process holds the database
            self.count += 1
        try:
            yield
        finally:
            with self.lock:
                self.count -= 1
                if self.count == 0 and self.con is not None:
                    self.con.close()
                    self.con = None


_KEEPERS: dict[str, _Keeper] = {}
_KEEPERS_LOCK = threading.Lock()


def keep_open(project: Project) -> AbstractContextManager[None]:
    """Registry hook (courier.workspace.keep_open): while held, the project's feed database
    stays open in this process, so parallel runs in threads attach to a live instance."""
    from courier.engines.duckdb import connect

    feeds = project.settings.feeds
    path = project.path(feeds.database)

    def open_() -> duckdb.DuckDBPyConnection:
        con = connect(path, feeds.memory_limit, feeds.threads, feeds.lock_timeout)
        try:  # the tables exist before another thread's workspace would race to create them
            DuckDBStateStore(con)
        except BaseException:
            con.close()
            raise
        return con

    with _KEEPERS_LOCK:
        return _KEEPERS.setdefault(str(path.resolve()), _Keeper(open_)).hold()
