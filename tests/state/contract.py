"""The state contract: every StateStore passes these tests (a backend that serves only some
concerns runs the matching `*Contract` classes).

Subclass the contracts in a `Test*` class and provide a `state` fixture that yields a fresh,
empty store (closed afterwards).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from courier.alerts import Alert
from courier.plan import BadRecord, PlannedFile
from courier.records import GroupRunRecord, Lease, RunRecord
from courier.state.base import StateStore
from courier.storage.base import ObjectInfo
from courier.windows import Window

T0 = datetime(2026, 11, 22, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(days=1))


def record(run_id: str, courier: str = "shop", **kw: object) -> RunRecord:
    started = kw.pop("started", T0 + timedelta(days=1, hours=6))
    return RunRecord.for_window(run_id, courier, WINDOW, started, host="h", pid=1, **kw)  # type: ignore[arg-type]


def planned(key: str, size: int = 10, etag: str = "e1") -> PlannedFile:
    return PlannedFile("landing", ObjectInfo(key, size, etag, T0), T0)


class RunHistoryContract:
    def test_a_run_reads_back_as_it_was_recorded(self, state: StateStore) -> None:
        run = record("r1", group="nightly", group_run_id="g1")
        state.start_run(run)
        run.status, run.files_found, run.files_loaded, run.bytes = "succeeded", 3, 2, 99
        run.records, run.quarantined = 7, 1
        run.feeds = {"orders": {"read": 7, "loaded": 6, "rejected": 1}}
        run.warnings, run.schema_changes = ["w"], ["c"]
        run.duration_s, run.finished_at = 1.5, T0 + timedelta(days=1, hours=7)
        state.finish_run(run)
        [back] = state.runs("shop")
        assert back.to_json(listing=True) == run.to_json(listing=True)
        assert back.to_row()["rows_loaded"] == 6 and back.to_row()["rows_rejected"] == 1
        assert (back.host, back.pid, back.group) == ("h", 1, "nightly")

    def test_runs_are_newest_first_and_filtered(self, state: StateStore) -> None:
        for i in range(3):
            state.start_run(record(f"r{i}", started=T0 + timedelta(hours=i)))
        state.start_run(record("other", courier="crm"))
        assert [r.run_id for r in state.runs("shop", limit=2)] == ["r2", "r1"]
        assert {r.courier for r in state.runs()} == {"shop", "crm"}
        state.start_run(record("bad", status="failed", started=T0 + timedelta(hours=9)))
        assert [r.run_id for r in state.runs("shop", status="failed")] == ["bad"]
        assert [r.run_id for r in state.runs(status="running", limit=1)] == ["other"]

    def test_runs_started_within_one_second_list_in_the_order_recorded(
        self, state: StateStore
    ) -> None:
        """started_at is kept to the second; run ids end in random hex, so they cannot say
        which of two runs started in one second came last (a run, then its skipped rerun)."""
        for run_id in ("20261123T060000-shop-ffffff", "20261123T060000-shop-000000"):
            state.start_run(record(run_id))
            finished = state.runs("shop", limit=1)[0]
            finished.status = "succeeded"
            state.finish_run(finished)
        assert [r.run_id for r in state.runs("shop")] == [
            "20261123T060000-shop-000000", "20261123T060000-shop-ffffff",
        ]  # fmt: skip

    def test_window_runs_and_runs_of_groups(self, state: StateStore) -> None:
        state.start_run(record("r1", group="g", group_run_id="g1"))
        state.start_run(record("r2", group="g", group_run_id="g2"))
        assert [r.run_id for r in state.window_runs("shop", WINDOW.start, WINDOW.end)] == [
            "r2", "r1",
        ]  # fmt: skip
        assert [r.run_id for r in state.runs_of_groups(["g1"])] == ["r1"]
        assert state.runs_of_groups([]) == []

    def test_summaries_of_many_couriers_equal_each_summary_and_the_default(
        self, state: StateStore
    ) -> None:
        """courier_summaries (the status page's overview) is courier_summary for each; a
        backend's own bulk version agrees with the base class's loop over it."""
        done = record("s1", status="succeeded", started=T0 + timedelta(hours=1))
        done.finished_at = T0 + timedelta(hours=2)
        state.start_run(done)
        state.start_run(record("s2", started=T0 + timedelta(hours=3)))  # still running
        state.start_run(record("c1", courier="crm", status="failed", error="boom"))
        state.record_files("s1", "shop", "events", [planned("a.ndjson")], T0)
        names = ["shop", "crm", "never"]
        bulk = state.courier_summaries(names)
        one_by_one = {n: state.courier_summary(n) for n in names}
        assert bulk == one_by_one == StateStore.courier_summaries(state, names)
        shop = bulk["shop"]
        assert shop["last_run"].run_id == "s2" and shop["last_finished"].run_id == "s1"
        assert shop["last_success"] == T0 + timedelta(hours=2)
        assert (shop["newest_partition"], shop["files_loaded"]) == (T0, 1)
        assert bulk["crm"]["last_finished"].error == "boom"
        assert bulk["never"]["last_run"] is None and bulk["never"]["last_finished"] is None

    def test_runs_since_as_an_arrow_table(self, state: StateStore) -> None:
        for i in range(4):
            run = record(f"r{i}", started=T0 + timedelta(hours=i), status="succeeded")
            run.feeds = {"orders": {"read": i, "loaded": i, "rejected": 0}}
            state.start_run(run)
        columns = ["run_id", "status", "feeds", "started_at"]
        for table in (
            state.runs_since(T0 + timedelta(hours=2), columns),
            StateStore.runs_since(state, T0 + timedelta(hours=2), columns),
        ):
            rows = sorted(table.to_pylist(), key=lambda r: r["run_id"])
            assert table.column_names == columns
            assert [(r["run_id"], r["status"]) for r in rows] == [
                ("r2", "succeeded"), ("r3", "succeeded"),
            ]  # fmt: skip
            assert json.loads(rows[1]["feeds"]) == {"orders": {"read": 3, "loaded": 3,
                                                               "rejected": 0}}  # fmt: skip

    def test_a_saved_plan_gives_back_its_files(self, state: StateStore) -> None:
        assert state.saved_plan("r1") is None
        state.save_plan("r1", "events", [planned("a/1.ndjson"), planned("a/2.ndjson", 20)])
        tag, files = state.saved_plan("r1")  # type: ignore[misc]
        assert tag == "events"
        assert [(f.key, f.info.size, f.info.version, f.partition) for f in files] == [
            ("a/1.ndjson", 10, "e1", T0), ("a/2.ndjson", 20, "e1", T0),
        ]  # fmt: skip


class FileLedgerContract:
    def test_recorded_files_are_loaded_versions_of_their_courier(self, state: StateStore) -> None:
        state.record_files("r1", "shop", "events", [planned("a.ndjson")], T0)
        assert state.loaded_versions("shop", "landing", ["a.ndjson", "b.ndjson"]) == {
            "a.ndjson": {(10, "e1")}
        }
        assert state.loaded_versions("crm", "landing", ["a.ndjson"]) == {}
        assert state.loaded_versions("shop", "landing", []) == {}

    def test_loaded_versions_of_many_couriers_at_once(self, state: StateStore) -> None:
        state.record_files(
            "r1", "shop", "events", [planned("a.ndjson"), planned("b.ndjson", 7)], T0
        )
        state.record_files("r2", "crm", "events", [planned("a.ndjson", 3, "e2")], T0)
        wanted = {("shop", "landing"): ["a.ndjson", "b.ndjson", "c.ndjson"],
                  ("crm", "landing"): ["a.ndjson"], ("crm", "other"): ["a.ndjson"]}  # fmt: skip
        expected = {
            "shop": {"a.ndjson": {(10, "e1")}, "b.ndjson": {(7, "e1")}},
            "crm": {"a.ndjson": {(3, "e2")}},
        }
        assert state.loaded_versions_many(wanted) == expected
        assert StateStore.loaded_versions_many(state, wanted) == expected
        assert state.loaded_versions_many({}) == {}

    def test_a_pinned_schema_is_replaced(self, state: StateStore) -> None:
        assert state.pinned_schema("shop", "events") is None
        state.pin_schema("shop", "events", {"id": "BIGINT"}, "r1")
        state.pin_schema("shop", "events", {"id": "BIGINT", "v": "VARCHAR"}, "r2")
        assert state.pinned_schema("shop", "events") == {"id": "BIGINT", "v": "VARCHAR"}


class QuarantineContract:
    def test_quarantined_records_are_exported_as_ndjson(
        self, state: StateStore, tmp_path: Path
    ) -> None:
        import pyarrow as pa

        state.quarantine("r1", "shop", None, [BadRecord("a.ndjson", 2, "not JSON", "{oops")])
        rejected = pa.table({"file": ["a.ndjson"], "line": [5], "reason": ["qty"], "raw": ["{}"]})
        state.quarantine_arrow("r1", "shop", "orders", rejected)
        state.quarantine("r2", "shop", None, [BadRecord("b.ndjson", 1, "x", "y")])
        out = tmp_path / "q" / "r1.ndjson"
        state.export_quarantine("r1", out)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(r["file"], r["line"], r["feed"], r["reason"]) for r in rows] == [
            ("a.ndjson", 2, None, "not JSON"), ("a.ndjson", 5, "orders", "qty"),
        ]  # fmt: skip


class TransactionContract:
    def test_rollback_drops_the_writes_since_begin(self, state: StateStore) -> None:
        state.start_run(record("r0"))
        state.begin()
        state.start_run(record("r1"))
        state.record_files("r1", "shop", "events", [planned("a.ndjson")], T0)
        state.rollback()
        assert [r.run_id for r in state.runs()] == ["r0"]
        assert state.loaded_versions("shop", "landing", ["a.ndjson"]) == {}
        state.rollback()  # nothing open: no error

    def test_commit_keeps_them(self, state: StateStore) -> None:
        state.begin()
        state.start_run(record("r1"))
        state.commit()
        assert [r.run_id for r in state.runs()] == ["r1"]


class SchedulerStateContract:
    def test_leases_are_taken_over_and_dropped_by_their_holder(self, state: StateStore) -> None:
        lease = Lease("group:g", "a", "h", 1, T0, T0 + timedelta(minutes=5))
        assert state.get_lease("group:g") is None
        state.put_lease(lease)
        state.put_lease(replace(lease, holder="b"))
        assert state.get_lease("group:g").holder == "b"  # type: ignore[union-attr]
        state.drop_lease("group:g", "a")  # not the holder: kept
        assert state.get_lease("group:g") is not None
        state.drop_lease("group:g", "b")
        assert state.get_lease("group:g") is None

    def test_group_runs_and_alerts(self, state: StateStore) -> None:
        run = GroupRunRecord("g1", "g", T0, "scheduled", "running", [], started_at=T0)
        state.start_group_run(run)
        state.finish_group_run(replace(run, status="succeeded", members=[{"courier": "shop"}]))
        [run] = state.group_runs("g")
        assert run.status == "succeeded" and run.members == [{"courier": "shop"}]
        assert state.last_scheduled_run("g") == T0
        state.record_alert(Alert("failed", "m", group_run_id="g1", details={"x": 1},
                                 created_at=T0, alert_id="a1"))  # fmt: skip
        [alert] = state.alerts(group_run_id="g1")
        assert alert["details"] == {"x": 1}


class SourceStateContract:
    def test_cursor_and_landed_keys(self, state: StateStore) -> None:
        assert state.source_state("api") == {"cursor": None, "pending": None}
        state.put_source_state("api", "c1", {"page": 2})
        assert state.source_state("api") == {"cursor": "c1", "pending": {"page": 2}}
        state.add_keys("api", {"k1": "part-1", "k2": None}, T0)
        assert state.seen_keys("api", ["k1", "k2", "k3"]) == {"k1": "part-1", "k2": None}
        state.drop_keys("api", ["k1"])
        assert state.seen_keys("api", ["k1", "k2"]) == {"k2": None}


class StateContract(
    RunHistoryContract,
    FileLedgerContract,
    QuarantineContract,
    TransactionContract,
    SchedulerStateContract,
    SourceStateContract,
):
    """Every concern: what a full StateStore passes."""
