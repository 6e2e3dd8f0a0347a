"""Recovery at the start of a run (Context.recover), when feeds and state commit apart (a
destination that is not the state's DuckDB): a run left 'running' by a dead process is rolled
forward when its destination commit happened, else marked failed."""

from __future__ import annotations

import socket
import subprocess
from datetime import date

import pyarrow as pa

from courier.destinations import memory
from courier.destinations.base import LoadContext
from courier.engines.base import ArrowRows
from courier.records import RunRecord
from tests.projects import NOW, ProjectFactory, event

DAY = date(2026, 11, 22)


def memory_project(p: ProjectFactory, name: str) -> ProjectFactory:
    memory.STORES.pop(name, None)
    p.write(
        "config/courier.toml",
        f'[project]\ntime_zone = "UTC"\n[feeds]\ndestination = "{name}"\n'
        f'[destinations.{name}]\ntype = "memory"\n',
    )
    p.events_project()
    p.land_hour(DAY, 1, [event(1), event(2)])
    return p


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def interrupted_run(p: ProjectFactory, commit_feeds: bool) -> str:
    """What a process killed between its destination commit and its state commit leaves."""
    ctx = p.context()
    courier = ctx.project.courier("events")
    window = ctx.window(courier, date="2026-11-22")
    with ctx.workspace() as ws:
        plan = ctx.plan("events", window, NOW, workspace=ws)
        record = RunRecord.for_window(
            plan.run_id, "events", window, NOW, host=socket.gethostname(), pid=dead_pid()
        )
        ws.state.start_run(record)
        ws.state.save_plan(plan.run_id, "events", plan.to_load)
        if commit_feeds:
            feed = ctx.project.feed("order_items")
            dest = ws.destination_for(feed)
            dest.begin(LoadContext(plan.run_id, "events", NOW, ws.state))
            dest.ensure_table(feed)
            rows = pa.table({"event_id": ["e1", "e2"], "item_idx": [1, 1]})
            dest.load(feed, ArrowRows(rows))
            dest.commit(plan.run_id)
    return plan.run_id


def test_a_run_whose_feeds_committed_is_rolled_forward(make_project: ProjectFactory) -> None:
    p = memory_project(make_project, "recover_fwd")
    run_id = interrupted_run(p, commit_feeds=True)
    again = p.run()
    assert again["status"] == "skipped"  # its files count as loaded: nothing loads twice
    [old] = [r for r in p.context().runs("events") if r["run_id"] == run_id]
    assert old["status"] == "succeeded" and old["files"]["loaded"] == 1
    assert any("rolled forward" in w for w in old["warnings"])
    assert memory.STORES["recover_fwd"].tables["order_items"].num_rows == 2


def test_a_run_whose_feeds_did_not_commit_is_marked_failed(make_project: ProjectFactory) -> None:
    p = memory_project(make_project, "recover_fail")
    run_id = interrupted_run(p, commit_feeds=False)
    again = p.run()
    assert again["status"] == "succeeded" and again["files"]["loaded"] == 1
    [old] = [r for r in p.context().runs("events") if r["run_id"] == run_id]
    assert old["status"] == "failed" and old["error"].startswith("interrupted")
    assert memory.STORES["recover_fail"].tables["order_items"].num_rows == 4  # 2 events x 2
