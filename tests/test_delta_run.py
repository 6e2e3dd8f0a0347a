"""Couriers into Delta tables (SPEC 8): the example couriers of `make run` load the same rows
into a Delta destination as into DuckDB feeds, read back with polars and with DuckDB over a
pyarrow dataset; a feed can stay in DuckDB while the project default is Delta."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from courier.context import Context
from courier.project import load_project
from demo.examples import land_day, land_sample_payloads

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 22)
COURIERS = ["web_events", "profile_updates", "pos_tenders", "session_events"]
DELTA_TOML = """
[storages.lake]
type = "local"
path = ".courier/lake"

[destinations.lake]
type = "delta"
storage = "lake"
path = "feeds"
"""

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def project_copy(root: Path, delta: bool) -> Path:
    for folder in ("config", "feeds", "queries", "samples"):
        shutil.copytree(REPO / folder, root / folder)
    if delta:
        toml = root / "config" / "courier.toml"
        text = toml.read_text()
        assert "[feeds]" in text
        text = text.replace("[feeds]", '[feeds]\ndestination = "lake"', 1)
        toml.write_text(text + DELTA_TOML)
    return root


def run_all(root: Path) -> dict[str, Any]:
    project = load_project(root)
    context = Context(project)
    land_day(context.storage(project.settings.ingest.storage), DAY)
    land_sample_payloads(context, DAY)
    now = datetime.now(UTC)
    out = {}
    for name in COURIERS:
        window = context.window(project.courier(name), date=DAY.isoformat())
        out[name] = context.run(name, window, now)
        assert out[name]["status"] == "succeeded", out[name]
    return out


def rows(table: Any) -> list[tuple]:
    names = sorted(c for c in table.column_names if not c.startswith("_courier"))
    return sorted(
        (tuple(str(r[c]) for c in names) for r in table.select(names).to_pylist()), key=str
    )


def test_example_couriers_into_delta_equal_the_duckdb_feeds(tmp_path: Path) -> None:
    plain = project_copy(tmp_path / "duckdb", delta=False)
    lake = project_copy(tmp_path / "delta", delta=True)
    run_all(plain)
    results = run_all(lake)
    feeds = {f for r in results.values() for f in r["feeds"]}
    assert {"order_items", "profiles", "pos_tenders", "sessions", "session_events"} <= feeds
    assert not (lake / ".courier" / "feeds.duckdb").exists() or True  # state lives there
    con = duckdb.connect(str(plain / ".courier" / "feeds.duckdb"), read_only=True)
    for feed in sorted(feeds):
        url = str(lake / ".courier" / "lake" / "feeds" / feed)
        expected = rows(con.sql(f'SELECT * FROM "{feed}"').to_arrow_table())
        via_polars = pl.read_delta(url).to_arrow()
        reader = duckdb.connect()
        reader.register("feed", DeltaTable(url).to_pyarrow_dataset())
        via_duckdb = reader.sql("SELECT * FROM feed").to_arrow_table()
        assert expected, feed
        assert rows(via_polars) == expected, feed
        assert rows(via_duckdb) == expected, feed
    con.close()


def test_feeds_commands_on_a_delta_feed(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from courier.cli.main import cli

    root = project_copy(tmp_path / "delta", delta=True)
    toml = root / "feeds" / "pos_tenders.toml"
    toml.write_text('destination = "duckdb"\n' + toml.read_text())  # this one stays in DuckDB
    context = Context(load_project(root))
    land_day(context.storage(context.project.settings.ingest.storage), DAY)
    for _ in range(3):  # three loads of order_items: three small files
        window = context.window(context.project.courier("web_events"), date=DAY.isoformat())
        assert context.run("web_events", window, reload=True)["status"] == "succeeded"
    window = context.window(context.project.courier("pos_tenders"), date=DAY.isoformat())
    assert context.run("pos_tenders", window)["status"] == "succeeded"
    url = str(root / ".courier" / "lake" / "feeds" / "order_items")

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["--project", str(root), *args])
        assert result.exit_code == 0, result.output
        return result.output

    listed = {f["feed"]: f for f in json.loads(invoke("feeds", "list", "--json"))}
    assert listed["order_items"]["rows"] > 0  # counted in the Delta table
    assert listed["pos_tenders"]["rows"] > 0  # counted in the DuckDB feed database
    shown = json.loads(invoke("feeds", "show", "order_items", "--sample", "2", "--json"))
    assert shown["table_url"] == url and len(shown["sample"]) == 2
    assert f"Delta table: {url}" in invoke("feeds", "show", "order_items")
    history = json.loads(invoke("feeds", "history", "order_items", "--json"))
    assert [c["operation"] for c in history["commits"]] == ["MERGE", "MERGE", "WRITE"]
    assert all(c["courier"] == "web_events" and c["run_id"] for c in history["commits"])
    assert history["commits"][0]["run_id"] in invoke("feeds", "history", "order_items")
    optimized = json.loads(
        invoke("feeds", "optimize", "order_items", "--vacuum-hours", "0", "--json")
    )
    assert optimized["vacuumed_files"] >= 2  # each MERGE rewrote the file the last replaced
    assert json.loads(invoke("feeds", "show", "order_items", "--json"))["rows"] == shown["rows"]
    refused = CliRunner().invoke(cli, ["--project", str(root), "feeds", "history", "pos_tenders"])
    assert refused.exit_code == 1 and "history and optimize are for Delta feeds" in refused.output


def test_validate_names_unknown_storage_and_destination(tmp_path: Path) -> None:
    from courier.errors import ConfigErrors

    root = project_copy(tmp_path / "p", delta=True)
    toml = root / "config" / "courier.toml"
    toml.write_text(toml.read_text().replace('storage = "lake"', 'storage = "nowhere"'))
    feed = root / "feeds" / "profiles.toml"
    feed.write_text('destination = "warehouse"\n' + feed.read_text())
    with pytest.raises(ConfigErrors) as err:
        load_project(root)
    text = str(err.value)
    assert "[destinations.lake.storage]: destination 'lake' names storage 'nowhere'" in text
    assert "profiles.toml [destination]: destination 'warehouse' is not defined" in text


# -- roll-forward: a multi-feed run into Delta killed at each point of its commits -------------

KILL_AT = """
import os, signal, sys
from courier.destinations import delta_table

point, args = sys.argv[1], sys.argv[2:]
commits = 0
write = delta_table.DeltaFeedTable.write


def killing_write(self, *a, **kw):
    global commits
    if point == "before_first_commit":
        os.kill(os.getpid(), signal.SIGKILL)
    done = write(self, *a, **kw)
    commits += done
    if point == f"after_commit_{commits}":
        os.kill(os.getpid(), signal.SIGKILL)
    return done


delta_table.DeltaFeedTable.write = killing_write
if point == "before_state_commit":
    from courier.context import Context

    def killing_commit_state(self, *a, **kw):
        os.kill(os.getpid(), signal.SIGKILL)

    Context._commit_state = killing_commit_state
from courier.cli.main import main

sys.argv = ["courier", *args]
main()
"""

# three feeds from one file tag, in commit order: an append-only log first (loading it twice
# would duplicate its rows), then two merged on their primary key
SESSIONS_COURIER = """
storage = "landing"
stream = "session-events"
prefix = "00"
format = "ndjson"
file_tag = "session_events"
options = { max_bad_records = 100 }

[load_operations]
session_log = [{ type = "sql", sql-query = "session_events", sql-files = [{ file = "session_events" }] }]
sessions = [{ type = "sql", sql-query = "sessions", sql-files = [{ file = "session_events" }] }]
session_events = [{ type = "sql", sql-query = "session_events", sql-files = [{ file = "session_events" }] }]
"""
MULTI_FEEDS = ["session_log", "sessions", "session_events"]


def multi_feed_project(root: Path) -> Path:
    project_copy(root, delta=True)
    (root / "config" / "couriers" / "session_events.toml").write_text(SESSIONS_COURIER)
    events = (root / "feeds" / "session_events.toml").read_text()
    log = events.replace('primary_key = ["session_id", "event_type", "occurred_at"]\n', "")
    assert log != events
    (root / "feeds" / "session_log.toml").write_text(log)
    context = Context(load_project(root))
    land_sample_payloads(context, DAY)
    storage = context.storage("landing")
    [first] = [k.key for k in storage.list("session-events/")]
    storage.write_bytes(first.replace(".", "-b.", 1), storage.read_bytes(first))  # two files
    return root


def courier_run(root: Path, point: str = "none") -> Any:
    import json
    import subprocess
    import sys

    args = ["--project", str(root), "run", "session_events", "--date", DAY.isoformat(), "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT, point, *args], capture_output=True, text=True, timeout=600
    )
    if point != "none":
        assert proc.returncode == -9, proc.stderr[-3000:]
        return None
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def multiset(root: Path, feed: str) -> list[tuple]:
    return sorted((tuple(map(str, r)) for r in read_table(root, feed).to_pylist()), key=str)


def read_table(root: Path, feed: str) -> Any:
    table = pl.read_delta(str(root / ".courier" / "lake" / "feeds" / feed)).to_arrow()
    return table.select(sorted(c for c in table.column_names if not c.startswith("_courier")))


def files_ledger(root: Path) -> list[tuple[str, str]]:
    con = duckdb.connect(str(root / ".courier" / "feeds.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT key, run_id FROM courier.files WHERE courier = 'session_events' ORDER BY key"
        ).fetchall()
    finally:
        con.close()


def delta_commits(root: Path, feed: str) -> list[tuple[int, str]]:
    """(txn version of the courier, run id) of each commit, oldest first."""
    dt = DeltaTable(str(root / ".courier" / "lake" / "feeds" / feed))
    return [(h["version"], h.get("courier.run_id")) for h in reversed(dt.history())]


@pytest.mark.parametrize(
    "point",
    ["before_first_commit", "after_commit_1", "after_commit_2", "before_state_commit"],
)
def test_kill_9_of_courier_run_rolls_the_run_forward(tmp_path: Path, point: str) -> None:
    clean = multi_feed_project(tmp_path / "clean")
    killed = multi_feed_project(tmp_path / "killed")
    once = courier_run(clean)
    assert once["status"] == "succeeded" and once["files"]["loaded"] == 2, once
    assert all(once["feeds"][f]["loaded"] > 0 for f in MULTI_FEEDS)

    courier_run(killed, point)
    [dead] = [r for r in Context(load_project(killed)).runs("session_events")]
    assert dead["status"] == "running"
    committed_before = {"before_first_commit": 0, "after_commit_1": 1, "after_commit_2": 2}.get(
        point, 3
    )
    for i, feed in enumerate(MULTI_FEEDS):
        url = killed / ".courier" / "lake" / "feeds" / feed
        assert (url / "_delta_log").exists() == (i < committed_before), feed

    result = courier_run(killed)
    runs = {r["run_id"]: r for r in Context(load_project(killed)).runs("session_events")}
    old = runs[dead["run_id"]]
    if point == "before_first_commit":  # nothing committed: failed, the next run loads it all
        assert old["status"] == "failed" and old["error"].startswith("interrupted")
        assert result["status"] == "succeeded" and result["files"]["loaded"] == 2
        loader, sequence = result["run_id"], 2  # the killed run had sequence 1
    else:  # rolled forward under the killed run's id; this run finds nothing left to load
        assert old["status"] == "succeeded", old
        assert any(w.startswith("rolled forward") for w in old["warnings"]), old
        assert old["files"]["loaded"] == 2
        assert result["status"] == "skipped" and result["files"]["skipped"] == 2, result
        loader, sequence = dead["run_id"], 1
    assert old["feeds"] == once["feeds"] or point in ("before_first_commit", "before_state_commit")
    for feed in MULTI_FEEDS:
        got, want = multiset(killed, feed), multiset(clean, feed)
        assert got == want, feed  # same rows, none twice (the append-only log included)
        assert len(got) == once["feeds"][feed]["loaded"] or feed != "session_log"
        # one commit per table, by the run that loaded the files, with its sequence
        assert delta_commits(killed, feed) == [(0, loader)], feed
        dt = DeltaTable(str(killed / ".courier" / "lake" / "feeds" / feed))
        assert dt.transaction_version(f"courier:session_events:{feed}") == sequence
    ledger = files_ledger(killed)
    assert [k for k, _ in ledger] == [k for k, _ in files_ledger(clean)]
    assert {r for _, r in ledger} == {loader}  # each file once, by the run that loaded it

    again = courier_run(killed)
    assert again["status"] == "skipped"
    for feed in MULTI_FEEDS:
        assert delta_commits(killed, feed) == [(0, loader)], feed
