"""Couriers into Delta tables (SPEC 8): the example couriers of `make run` load the same rows
into a Delta destination as into DuckDB feeds, read back with polars and with DuckDB over a
pyarrow dataset; a feed can stay in DuckDB while the project default is Delta."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
import duckdb
import polars as pl
import pyarrow as pa
import pytest
from azure.storage.blob import BlobServiceClient
from deltalake import DeltaTable

from courier.context import Context
from courier.destinations.delta_table import delta_location
from courier.validate import load_project
from demo.examples import land_day, land_sample_payloads
from tests.servers import AZURITE_KEY, azurite_connection_string

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 22)
COURIERS = ["web_events", "profile_updates", "pos_tenders", "session_events"]
LOCAL_LAKE = """
[storages.lake]
type = "local"
path = ".courier/lake"
"""
DELTA_TOML = """
[destinations.lake]
type = "delta"
storage = "lake"
path = "feeds"
"""

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def project_copy(root: Path, delta: bool, lake: str = LOCAL_LAKE) -> Path:
    """A copy of the example project; with delta, its feeds in Delta tables on `lake` (a
    [storages.lake] entry)."""
    for folder in ("config", "feeds", "queries", "samples"):
        shutil.copytree(REPO / folder, root / folder)
    if delta:
        toml = root / "config" / "courier.toml"
        text = toml.read_text()
        assert "[feeds]" in text
        text = text.replace("[feeds]", '[feeds]\ndestination = "lake"', 1)
        toml.write_text(text + lake + DELTA_TOML)
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


@pytest.fixture(scope="module")
def duckdb_feeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make run's couriers into DuckDB feeds (what every Delta store must equal)."""
    plain = project_copy(tmp_path_factory.mktemp("duckdb"), delta=False)
    run_all(plain)
    return plain / ".courier" / "feeds.duckdb"


def lake_storage(store: str, request: pytest.FixtureRequest) -> str:
    """A [storages.lake] entry on a fresh bucket (moto) or container (Azurite)."""
    if store == "local":
        return LOCAL_LAKE
    name = f"lake-{uuid.uuid4().hex[:12]}"
    if store == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        request.getfixturevalue("aws_env")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=name
        )
        return (
            f'\n[storages.lake]\ntype = "s3"\nbucket = "{name}"\nendpoint_url = "{endpoint}"\n'
            'region = "us-east-1"\n'
        )
    conn = azurite_connection_string(request.getfixturevalue("azurite_delta_endpoint"))
    with BlobServiceClient.from_connection_string(conn) as service:
        service.create_container(name)
    return (
        f'\n[storages.lake]\ntype = "azure"\ncontainer = "{name}"\nconnection_string = "{conn}"\n'
    )


@pytest.mark.parametrize("store", ["local", "s3", "azure"])
def test_example_couriers_into_delta_equal_the_duckdb_feeds(
    tmp_path: Path, store: str, duckdb_feeds: Path, request: pytest.FixtureRequest
) -> None:
    lake = project_copy(tmp_path / "delta", delta=True, lake=lake_storage(store, request))
    results = run_all(lake)
    feeds = {f for r in results.values() for f in r["feeds"]}
    assert {"order_items", "profiles", "pos_tenders", "sessions", "session_events"} <= feeds
    project = load_project(lake)
    location = delta_location("lake", project.settings.storages["lake"], "feeds", lake)
    con = duckdb.connect(str(duckdb_feeds), read_only=True)
    for feed in sorted(feeds):
        url, options = location.table_url(feed), location.options
        expected = rows(con.sql(f'SELECT * FROM "{feed}"').to_arrow_table())
        via_polars = pl.read_delta(url, storage_options=options).to_arrow()
        reader = duckdb.connect()
        reader.register("feed", DeltaTable(url, storage_options=options).to_pyarrow_dataset())
        via_duckdb = reader.sql("SELECT * FROM feed").to_arrow_table()
        assert expected, feed
        assert rows(via_polars) == expected, feed
        assert rows(via_duckdb) == expected, feed
    con.close()
    if store != "local":  # nothing of the lake on local disk: the tables are in the store
        assert not (lake / ".courier" / "lake").exists()


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
    # an upsert is a copy-on-write commit (delta_merge.py): Delta calls it a WRITE
    assert [c["operation"] for c in history["commits"]] == ["WRITE", "WRITE", "WRITE"]
    assert [c["load"] for c in history["commits"]] == ["upsert", "upsert", "upsert"]
    assert all(c["courier"] == "web_events" and c["run_id"] for c in history["commits"])
    assert history["commits"][0]["run_id"] in invoke("feeds", "history", "order_items")
    optimized = json.loads(
        invoke("feeds", "optimize", "order_items", "--vacuum-hours", "0", "--json")
    )
    assert optimized["vacuumed_files"] >= 2  # each upsert rewrote the file the last one replaced
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


def multi_feed_project(root: Path, lake: str = LOCAL_LAKE) -> Path:
    project_copy(root, delta=True, lake=lake)
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


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The multi-feed project run once without a kill, and its --json result: what a killed
    run must converge to (read only; one for the module's kill tests)."""
    clean = multi_feed_project(tmp_path_factory.mktemp("delta-clean") / "clean")
    once = courier_run(clean)
    assert once["status"] == "succeeded" and once["files"]["loaded"] == 2, once
    assert all(once["feeds"][f]["loaded"] > 0 for f in MULTI_FEEDS)
    return clean, once


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
def test_kill_9_of_courier_run_rolls_the_run_forward(
    tmp_path: Path, point: str, clean_run: tuple[Path, Any]
) -> None:
    clean, once = clean_run
    killed = multi_feed_project(tmp_path / "killed")

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


def test_a_roll_forward_killed_in_turn_is_rolled_forward_by_the_next_run(
    tmp_path: Path, clean_run: tuple[Path, Any]
) -> None:
    clean, _ = clean_run
    killed = multi_feed_project(tmp_path / "killed")
    courier_run(killed, "after_commit_1")  # session_log committed
    [dead] = Context(load_project(killed)).runs("session_events")
    courier_run(killed, "after_commit_1")  # recovery commits sessions, then dies too
    assert [delta_commits(killed, f) for f in MULTI_FEEDS[:2]] == [[(0, dead["run_id"])]] * 2
    assert not (killed / ".courier" / "lake" / "feeds" / "session_events").exists()
    assert courier_run(killed)["status"] == "skipped"
    for feed in MULTI_FEEDS:
        assert multiset(killed, feed) == multiset(clean, feed), feed
        assert delta_commits(killed, feed) == [(0, dead["run_id"])], feed
    assert {r for _, r in files_ledger(killed)} == {dead["run_id"]}


def test_a_table_holding_a_later_run_of_the_courier_is_refused(tmp_path: Path) -> None:
    """Another process committed a later run of a courier of this name (another project on
    the same lake): rolling the killed run forward is refused with the table, the versions
    and what to do, nothing is written, and the courier loads nothing until it is resolved."""
    from courier.destinations.delta_table import DeltaFeedTable, delta_location, feed_arrow_schema

    root = multi_feed_project(tmp_path / "p")
    courier_run(root, "after_commit_1")
    [dead] = Context(load_project(root)).runs("session_events")
    project = load_project(root)
    location = delta_location("lake", project.settings.storages["lake"], "feeds", root)
    sessions = DeltaFeedTable(project.feed("sessions"), location)
    empty = feed_arrow_schema(project.feed("sessions")).empty_table()
    assert sessions.write(empty, "append", courier="session_events", run_id="elsewhere", sequence=5)
    for _ in range(2):  # refused, and again: the files are never loaded a second time
        result = courier_run(root)
        assert result["status"] == "failed"
        assert result["error"].startswith(
            f"run {dead['run_id']} of courier session_events ended after feed(s) session_log "
            "committed, and committing sessions, session_events from its files failed: feed "
            f"sessions: the Delta table {location.table_url('sessions')} already holds "
            "application transaction courier:session_events:sessions version 5, and this run "
            f"({dead['run_id']}) is number 1 of courier session_events"
        ), result["error"]
        assert "Give one of the couriers another name" in result["error"]
    assert delta_commits(root, "sessions") == [(0, "elsewhere")]
    assert not (root / ".courier" / "lake" / "feeds" / "session_events").exists()
    assert delta_commits(root, "session_log") == [(0, dead["run_id"])]
    assert files_ledger(root) == []
    runs = {r["run_id"]: r for r in Context(load_project(root)).runs("session_events")}
    assert runs[dead["run_id"]]["status"] == "running"  # still to be rolled forward


# -- bad input: a clear error naming the feed, the table and what to do; nothing written -------


def run_in_process(root: Path, reload: bool = False) -> dict[str, Any]:
    context = Context(load_project(root))
    window = context.window(context.project.courier("session_events"), date=DAY.isoformat())
    return context.run("session_events", window, reload=reload)


def table_versions(root: Path) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for feed in MULTI_FEEDS:
        url = root / ".courier" / "lake" / "feeds" / feed
        out[feed] = DeltaTable(str(url)).version() if (url / "_delta_log").exists() else None
    return out


@pytest.mark.parametrize("case", ["foreign_table", "primary_key_changed", "type_changed"])
def test_a_refused_feed_table_fails_the_run_and_writes_nothing(tmp_path: Path, case: str) -> None:
    """The refused feed (session_events) commits last: the feeds before it are not written
    either, since every table is checked before the first commit."""
    from deltalake import write_deltalake

    root = multi_feed_project(tmp_path / "p")
    url = str(root / ".courier" / "lake" / "feeds" / "session_events")
    feed_toml = root / "feeds" / "session_events.toml"
    if case == "foreign_table":
        write_deltalake(url, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    else:
        assert run_in_process(root)["status"] == "succeeded"
        text = feed_toml.read_text()
        if case == "primary_key_changed":
            changed = text.replace('"event_type", "occurred_at"]', '"event_type"]')
        else:
            changed = text.replace('screen      = "string"', 'screen      = "bigint"')
        assert changed != text
        feed_toml.write_text(changed)
    before = table_versions(root)
    result = run_in_process(root, reload=case != "foreign_table")
    assert result["status"] == "failed"
    error = result["error"]
    assert error.startswith("feed session_events: ") and url in error, error
    expected = {
        "foreign_table": "is not this feed's table (columns: id, name): point feed "
        "session_events at another path ([destinations] path), or move the table away",
        "primary_key_changed": "was loaded with primary key (session_id, event_type, "
        "occurred_at) but feeds/session_events.toml says (session_id, event_type): rows "
        "merged on one key cannot be merged on another; change primary_key back, or point",
        "type_changed": "column screen is string in the Delta table "
        f"{url} but bigint in feeds/session_events.toml, and a Delta column's type cannot be "
        "changed in place. Change the type back, or point feed session_events at another",
    }[case]
    assert expected in error, error
    assert table_versions(root) == before  # no feed written, not even those before it
    loaded = files_ledger(root)
    assert len(loaded) == (0 if case == "foreign_table" else 2)  # only the first run's


def s3_lake(s3: Any, secret: str) -> str:
    """A [storages.lake] entry on a checking moto server's bucket, with the key's id."""
    return (
        f'\n[storages.lake]\ntype = "s3"\nbucket = "{s3.bucket}"\n'
        f'endpoint_url = "{s3.endpoint}"\nregion = "us-east-1"\n'
        f'access_key_id = "{s3.key_id}"\nsecret_access_key = "{secret}"\n'
    )


def test_delta_on_s3_that_checks_credentials(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage entry's keys are what delta-rs signs with (the run loads); a session
    token left in the environment goes with them, and the refusal says so."""
    s3 = request.getfixturevalue("checking_s3")
    request.getfixturevalue("aws_env")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-token-of-another-session")
    root = multi_feed_project(tmp_path / "token", s3_lake(s3, s3.secret))
    result = run_in_process(root)
    assert result["status"] == "failed"
    assert "storage refused the credentials" in result["error"], result["error"]
    assert "AWS_SESSION_TOKEN is set in the environment" in result["error"], result["error"]
    assert s3.secret not in result["error"] and files_ledger(root) == []
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    root = multi_feed_project(tmp_path / "keys", s3_lake(s3, s3.secret))
    result = run_in_process(root)
    assert result["status"] == "succeeded", result
    assert files_ledger(root)


@pytest.mark.parametrize(
    "case", ["wrong_key", "missing_container", "missing_bucket", "wrong_s3_secret"]
)
def test_storage_refusals_fail_the_run_with_feed_table_and_what_to_do(
    tmp_path: Path, case: str, request: pytest.FixtureRequest
) -> None:
    secret = ""
    if case == "wrong_s3_secret":  # a moto server that checks signatures, a real key id
        s3 = request.getfixturevalue("checking_s3")
        request.getfixturevalue("aws_env")
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.delenv("AWS_SESSION_TOKEN")
        secret = "Wrong" + s3.secret[5:]
        lake = s3_lake(s3, secret)
        url, what = f"s3://{s3.bucket}/feeds/session_log", "storage refused the credentials"
    elif case == "missing_bucket":
        endpoint = request.getfixturevalue("moto_endpoint")
        request.getfixturevalue("aws_env")
        lake = (
            '\n[storages.lake]\ntype = "s3"\nbucket = "no-such-bucket"\n'
            f'endpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
        )
        url, what = (
            "s3://no-such-bucket/feeds/session_log",
            "the bucket or container does not exist",
        )
    else:
        endpoint = request.getfixturevalue("azurite_delta_endpoint")
        container = f"lake-{uuid.uuid4().hex[:8]}"
        key = AZURITE_KEY
        if case == "wrong_key":
            key = AZURITE_KEY[:-8] + "AAAAAAA="
            with BlobServiceClient.from_connection_string(
                azurite_connection_string(endpoint)
            ) as service:
                service.create_container(container)
        conn = azurite_connection_string(endpoint, key)
        lake = (
            f'\n[storages.lake]\ntype = "azure"\ncontainer = "{container}"\n'
            f'connection_string = "{conn}"\n'
        )
        url = f"az://{container}/feeds/session_log"
        what = (
            "storage refused the credentials"
            if case == "wrong_key"
            else "the bucket or container does not exist"
        )
    root = multi_feed_project(tmp_path / "p", lake)
    result = run_in_process(root)
    assert result["status"] == "failed"
    error = result["error"]
    assert error.startswith(f"feed session_log: open Delta table {url}: {what}"), error
    assert "[storages.lake] in config/courier.toml" in error, error
    if case == "wrong_key":
        assert "AAAAAAA=" not in error and AZURITE_KEY[:20] not in error
    if case == "wrong_s3_secret":
        assert "SignatureDoesNotMatch" in error and secret not in error, error
    assert files_ledger(root) == []


def test_status_page_shows_delta_feeds_through_their_destination(tmp_path: Path) -> None:
    """The feeds page reads a Delta feed's rows, stored columns and samples from its table
    (with the project's state database open read-only, never the lake through it)."""
    from courier.ui import StatusApp, StatusReader
    from tests.ui.test_app import get

    root = project_copy(tmp_path / "p", delta=True)
    context = Context(load_project(root))
    land_day(context.storage(context.project.settings.ingest.storage), DAY)
    window = context.window(context.project.courier("web_events"), date=DAY.isoformat())
    result = context.run("web_events", window)
    loaded = result["feeds"]["order_items"]["loaded"]
    reader = StatusReader(Context(load_project(root)))
    app = StatusApp(reader)
    assert reader.refresh() is not None, reader.last_error
    html = get(app, "/feeds").text
    url = str(root / ".courier" / "lake" / "feeds" / "order_items")
    assert f"{loaded:,} row(s) · destination lake · table <code>{url}</code>" in html, html
    assert "decimal(12,2)" in html  # the column as the Delta table stores it
    assert "sample rows" in html
    assert '<h2 id="feed-profiles">profiles</h2><p>not created yet · destination lake' in html
    # the table gone from the lake: read again at each snapshot
    shutil.move(url + "/_delta_log", str(tmp_path / "moved"))
    assert reader.refresh() is not None, reader.last_error
    html = get(app, "/feeds").text
    assert '<h2 id="feed-order_items">order_items</h2><p>not created yet' in html


@pytest.mark.parametrize("store", ["s3", "azure"])
def test_a_run_killed_between_feed_commits_rolls_forward_on_object_storage(
    tmp_path: Path, store: str, request: pytest.FixtureRequest, clean_run: tuple[Path, Any]
) -> None:
    clean, _ = clean_run
    killed = multi_feed_project(tmp_path / "killed", lake_storage(store, request))
    courier_run(killed, "after_commit_1")  # the append-only log committed, the rest not
    [dead] = Context(load_project(killed)).runs("session_events")
    assert courier_run(killed)["status"] == "skipped"
    project = load_project(killed)
    location = delta_location("lake", project.settings.storages["lake"], "feeds", killed)
    for feed in MULTI_FEEDS:
        url, options = location.table_url(feed), location.options
        table = pl.read_delta(url, storage_options=options).to_arrow()
        got = table.select(sorted(c for c in table.column_names if not c.startswith("_courier")))
        assert sorted((tuple(map(str, r)) for r in got.to_pylist()), key=str) == multiset(
            clean, feed
        ), feed
        dt = DeltaTable(url, storage_options=options)
        assert [(h["version"], h.get("courier.run_id")) for h in dt.history()] == [
            (0, dead["run_id"])
        ], feed
        assert dt.transaction_version(f"courier:session_events:{feed}") == 1
    assert {r for _, r in files_ledger(killed)} == {dead["run_id"]}
    assert len(files_ledger(killed)) == len(files_ledger(clean))


def test_a_file_replaced_before_the_roll_forward_counts_as_loaded_in_its_old_version(
    tmp_path: Path,
) -> None:
    """The committed feed holds the file as it was; it cannot be read again for the others:
    recorded in that version with a warning, the unchanged file rolled forward as usual, and
    the new version loads on the next run like any changed file."""
    root = multi_feed_project(tmp_path / "p")
    courier_run(root, "after_commit_1")
    [dead] = Context(load_project(root)).runs("session_events")
    storage = Context(load_project(root)).storage("landing")
    first, second = sorted(k.key for k in storage.list("session-events/"))
    old_size = storage.stat(second).size
    storage.write_bytes(second, storage.read_bytes(second) + storage.read_bytes(second))
    result = courier_run(root)
    runs = {r["run_id"]: r for r in Context(load_project(root)).runs("session_events")}
    old = runs[dead["run_id"]]
    assert old["status"] == "succeeded", old
    [note] = [w for w in old["warnings"] if w.startswith("rolled forward")]
    assert (
        f"1 file(s) changed or vanished since and could not be read again for sessions, "
        f"session_events (first: {second})" in note
    ), note
    con = duckdb.connect(str(root / ".courier" / "feeds.duckdb"), read_only=True)
    recorded = con.execute(
        "SELECT key, run_id, size FROM courier.files ORDER BY loaded_at"
    ).fetchall()
    con.close()
    new_size = storage.stat(second).size
    assert sorted(recorded[:2]) == [
        (first, dead["run_id"], storage.stat(first).size),
        (second, dead["run_id"], old_size),  # the version the committed log holds
    ]
    assert recorded[2:] == [(second, result["run_id"], new_size)]
    # this run found the replaced file as a new version and loaded it into every feed
    assert result["status"] == "succeeded" and result["files"]["loaded"] == 1, result


REPRICED_SQL = """
SELECT e.event_id, 1 AS item_idx, e.occurred_at, e.customer.id AS customer_id,
       e.customer.email AS customer_email, 'REPRICED' AS sku, 1 AS qty, 9.99 AS price,
       e.context.page AS page, e.context AS context
FROM web_events AS e
UNION ALL
SELECT NULL, 1, NULL, NULL, NULL, 'NO-ID', 1, 1.0, NULL, NULL
"""


@pytest.mark.parametrize("loads", ["one", "two"])
def test_a_delta_feed_loaded_once_or_twice_in_a_run_equals_the_duckdb_feed(
    tmp_path: Path, loads: str
) -> None:
    """The staged rows stream from the engine's query result at the commit; a second load of
    the feed in the same run (an upsert over the first, with a rejected row) writes the first
    to the stage first. Rows and the run's counts equal the DuckDB destination's."""
    results, tables = {}, {}
    for kind in ("duckdb", "delta"):
        root = project_copy(tmp_path / kind, delta=kind == "delta")
        if loads == "two":
            (root / "queries" / "order_items_repriced.sql").write_text(REPRICED_SQL)
            toml = root / "config" / "couriers" / "web_events.toml"
            toml.write_text(
                toml.read_text().replace(
                    '[{ file = "web_events" }] }]',
                    '[{ file = "web_events" }] }, { type = "sql", sql-query = '
                    '"order_items_repriced", sql-files = [{ file = "web_events" }] }]',
                )
            )
        project = load_project(root)
        context = Context(project)
        land_day(context.storage(project.settings.ingest.storage), DAY)
        window = context.window(project.courier("web_events"), date=DAY.isoformat())
        results[kind] = context.run("web_events", window, datetime.now(UTC))
        assert results[kind]["status"] == "succeeded", results[kind]
        if kind == "duckdb":
            con = duckdb.connect(str(root / ".courier" / "feeds.duckdb"), read_only=True)
            tables[kind] = rows(con.sql("SELECT * FROM order_items").to_arrow_table())
            con.close()
        else:
            url = str(root / ".courier" / "lake" / "feeds" / "order_items")
            tables[kind] = rows(DeltaTable(url).to_pyarrow_table())
    assert tables["delta"] == tables["duckdb"]
    assert results["delta"]["feeds"] == results["duckdb"]["feeds"]
    assert results["delta"]["quarantined"] == results["duckdb"]["quarantined"]
    repriced = [r for r in tables["delta"] if "REPRICED" in r]
    assert bool(repriced) == (loads == "two")
    if loads == "two":  # the row without an event_id is quarantined, beside the bad record
        assert results["delta"]["quarantined"] == 2
