"""The status page's ASGI app against a seeded project (real runs, real DuckDB), in process."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from courier.errors import ConfigError
from courier.ui import StatusApp, StatusReader
from courier.ui.app import ui_token
from tests.projects import ProjectFactory
from tests.ui.seed import HOSTILE, ZONE, history_project

pytestmark = pytest.mark.slow

PAGES = ["/", "/runs", "/feeds", "/charts"]


def get(app: StatusApp, path: str, **kw: Any) -> httpx.Response:
    return request(app, "GET", path, **kw)


def request(app: StatusApp, method: str, path: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        base = kw.pop("base_url", "http://127.0.0.1:8070")
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            return await client.request(method, path, **kw)

    return asyncio.run(go())


def rows_of(html: str, table_index: int = 0) -> list[str]:
    tables = re.findall(r"<tbody>(.*?)</tbody>", html, re.S)
    return re.findall(r"<tr>(.*?)</tr>", tables[table_index], re.S)


def run_ids(html: str) -> list[str]:
    return re.findall(r'<a class="run" href="/runs/([^"]+)"', html)


def test_overview_has_a_row_per_courier_with_its_state_and_open_alerts_on_top(
    app: StatusApp,
) -> None:
    r = get(app, "/")
    assert r.status_code == 200
    html = r.text
    assert html.index("Open alerts (1)") < html.index("<h1>Couriers</h1>")
    couriers = rows_of(html, 1)
    states = {
        re.search(r'class="courier"[^>]*>([^<]+)<', row).group(1): re.search(  # type: ignore[union-attr]
            r"badge s-(\w+)", row
        ).group(1)  # type: ignore[union-attr]
        for row in couriers
    }
    assert states == {"clicks": "failing", "events": "ok", "idle": "never_run"}
    clicks = next(row for row in couriers if ">clicks<" in row)
    assert "hourly" in clicks  # its group, and its next run in that group
    assert "(hourly)" in clicks
    assert "1 file(s)" in clicks  # the failed hour's file is landed but not loaded


def test_status_json_has_the_pinned_shape(app: StatusApp) -> None:
    r = get(app, "/api/status.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = orjson.loads(r.content)
    assert set(doc) == {"version", "generated_at", "time_zone", "snapshot", "counts", "alerts",
                        "couriers"}  # fmt: skip
    assert doc["version"] == 1 and doc["time_zone"] == "Europe/Berlin"
    assert set(doc["snapshot"]) == {"taken_at", "age_s", "stale", "error"}
    assert doc["snapshot"]["stale"] is False
    assert doc["counts"] == {"failing": 1, "late": 0, "never_run": 1, "running": 0, "ok": 1}
    (alert,) = doc["alerts"]
    assert set(alert) == {"alert_id", "kind", "courier", "group", "run_id", "message",
                          "created_at"}  # fmt: skip
    assert alert["courier"] == "clicks" and HOSTILE in alert["message"]
    by_name = {c["courier"]: c for c in doc["couriers"]}
    assert list(by_name) == ["clicks", "events", "idle"]
    for row in doc["couriers"]:
        assert set(row) == {"courier", "groups", "status", "last_success", "last_run",
                            "newest_partition", "backlog", "next_run"}  # fmt: skip
    clicks = by_name["clicks"]
    assert clicks["groups"] == ["hourly"] and clicks["status"] == "failing"
    assert set(clicks["last_run"]) == {"run_id", "status", "started_at", "finished_at", "error"}
    assert (
        clicks["last_run"]["status"] == "failed"
        and "max_bad_records" in clicks["last_run"]["error"]
    )
    assert clicks["backlog"]["files"] == 1 and clicks["backlog"]["bytes"] > 0
    assert set(clicks["backlog"]) == {"since", "files", "bytes", "oldest"}
    assert clicks["next_run"]["group"] == "hourly" and clicks["next_run"]["at"].endswith("Z")
    assert by_name["idle"]["last_run"] is None and by_name["idle"]["next_run"] is None
    assert by_name["events"]["newest_partition"].endswith("Z")


def test_hostile_text_renders_as_text_everywhere(app: StatusApp, seeded: ProjectFactory) -> None:
    pages = [*PAGES, *(f"/runs/{i}" for i in run_ids(get(app, "/runs").text))]
    escaped = 0
    for path in pages:
        html = get(app, path).text
        assert "<script" not in html.lower(), path
        escaped += html.count("&lt;script&gt;")
    assert escaped >= 4  # the alert, the error text, the quarantined raw lines
    # a name from a foreign writer (another courier version, a hand edit) is escaped too
    with seeded.context().workspace() as ws:
        ws.connection.execute(
            "INSERT INTO courier.runs (run_id, courier, status, started_at, error) "
            "VALUES (?, ?, 'failed', now(), ?)",
            [f"r1{HOSTILE}", f"c{HOSTILE}", f"e{HOSTILE}"],
        )
    try:
        fresh = StatusApp(StatusReader(seeded.context()))
        html = get(fresh, "/runs").text
        assert "<script" not in html and "c&lt;script&gt;alert(&#x27;x&#x27;)" in html
        (rid,) = [i for i in run_ids(html) if "script" in i]
        assert "&lt;script&gt;" in rid or "%3C" in rid
    finally:
        with seeded.context().workspace() as ws:
            ws.connection.execute("DELETE FROM courier.runs WHERE run_id = ?", [f"r1{HOSTILE}"])


def test_every_answer_has_a_strict_content_security_policy(app: StatusApp) -> None:
    for path in [*PAGES, "/api/status.json", "/static/ui.css", "/favicon.ico", "/nope"]:
        r = get(app, path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, path
        assert "unsafe-inline" not in csp and r.headers["x-content-type-options"] == "nosniff"
    assert get(app, "/nope").status_code == 404
    assert request(app, "POST", "/runs").status_code == 405
    assert get(app, "/favicon.ico").headers["content-type"] == "image/svg+xml"


def test_failed_run_page_shows_error_window_files_quarantine_and_duration(app: StatusApp) -> None:
    doc = orjson.loads(get(app, "/api/status.json").content)
    failed = next(c for c in doc["couriers"] if c["courier"] == "clicks")["last_run"]["run_id"]
    html = get(app, f"/runs/{failed}").text
    assert 'class="error"' in html and "max_bad_records = 1" in html
    assert "Europe/Berlin" in html and "→" in html  # the window on the project's clock
    assert "duration" in html and re.search(r"\d+\.\d s", html)
    assert "Quarantine (3)" in html
    raw = re.findall(r'<pre class="raw">(.*?)</pre>', html, re.S)
    assert "{bad" in raw and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in raw
    assert "malformed JSON" in html
    assert "Files (0)" in html  # a failed run records no loaded files


def test_succeeded_run_page_shows_feed_counts_files_with_sizes_and_quarantine(
    app: StatusApp,
) -> None:
    runs = get(app, "/runs?courier=events&status=succeeded").text
    (rid,) = run_ids(runs)
    html = get(app, f"/runs/{rid}").text
    feeds = rows_of(html, 0)
    assert len(feeds) == 1 and "order_items" in feeds[0]
    assert [c for c in re.findall(r'<td class="num">([^<]*)</td>', feeds[0])] == ["2", "2", "0"]
    files = rows_of(html, 1)
    assert len(files) == 1 and "part-test-000000.ndjson" in files[0] and " B<" in files[0]
    assert "Quarantine (2)" in html


def test_runs_filters_by_courier_status_and_dates(app: StatusApp) -> None:
    assert len(run_ids(get(app, "/runs").text)) == 4
    assert len(run_ids(get(app, "/runs?courier=events").text)) == 2
    assert len(run_ids(get(app, "/runs?status=failed").text)) == 1
    assert len(run_ids(get(app, "/runs?group=hourly").text)) == 0  # ran by hand, not by group
    assert len(run_ids(get(app, "/runs?from=2000-01-01&to=2000-01-02").text)) == 0
    assert len(run_ids(get(app, "/runs?from=2000-01-01").text)) == 4
    bad = get(app, "/runs?from=yesterday")
    assert bad.status_code == 400 and "expected a date" in bad.text


def test_runs_page_pages_through_history(tmp_path: Path) -> None:
    p = history_project(tmp_path / "p", couriers=6, runs=120)
    app = StatusApp(StatusReader(p.context()))
    first = get(app, "/runs").text
    assert len(run_ids(first)) == 50 and "page 1 of 3 · 120 run(s)" in first
    assert "older →" in first and "newer" not in first
    third = get(app, "/runs?page=3").text
    assert len(run_ids(third)) == 20 and "← newer" in third and "older" not in third
    seen = set(run_ids(first)) | set(run_ids(get(app, "/runs?page=2").text)) | set(run_ids(third))
    assert len(seen) == 120
    one = get(app, "/runs?courier=courier_001&status=failed").text
    assert run_ids(one) and all("courier_001" in i for i in run_ids(one))
    assert 'href="/runs?courier=courier_001&amp;status=failed&amp;page=2"' not in one


def test_feeds_page_shows_rows_columns_key_destination_and_samples(app: StatusApp) -> None:
    html = get(app, "/feeds").text
    assert '<h2 id="feed-order_items">order_items</h2>' in html
    assert "2 row(s) · destination duckdb" in html  # e1, e2 (one item each)
    assert "event_id, item_idx" in html  # the primary key
    assert "decimal(12,2)" in html and "DECIMAL(12,2)" in html  # declared, stored
    assert "sample rows" in html and ">e1<" in html
    assert "4 row(s)" in html  # clicks: the good hour


def test_charts_have_points_and_time_axes(app: StatusApp) -> None:
    html = get(app, "/charts").text
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 4
    hourly, daily, durations, landed = (s.count('class="point"') for s in svgs)
    assert hourly >= 2 and daily >= 1 and durations == 4 and landed == 1
    assert "time (Europe/Berlin)" in svgs[0]
    assert re.search(r">(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d:00<", svgs[0])
    assert "web: 3 payloads" in svgs[3]
    one = get(app, "/charts?courier=events").text
    assert "clicks:" not in one and "events:" in one


def test_pages_serve_the_last_snapshot_while_another_process_holds_the_database(
    app: StatusApp, seeded: ProjectFactory
) -> None:
    reader = app.reader
    db = seeded.root / ".courier" / "feeds.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute('BEGIN'); "
         "print('held', flush=True); sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = reader.current
        assert reader.refresh() is before  # busy: the old snapshot stays
        html = get(app, "/").text
        assert 'class="fresh stale"' in html and "holds the feed database" in html
        assert len(rows_of(html, 1)) == 3  # still the whole overview
        doc = orjson.loads(get(app, "/api/status.json").content)
        assert doc["snapshot"]["stale"] is True and "holds the feed database" in doc[
            "snapshot"]["error"]  # fmt: skip
        assert len(doc["couriers"]) == 3
        rid = run_ids(get(app, "/runs?status=skipped").text)[0]
        run = get(app, f"/runs/{rid}")
        assert run.status_code == 200 and "file list and quarantine unavailable" in run.text
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    assert reader.refresh() is not before and reader.last_error is None
    assert 'class="fresh"' in get(app, "/").text


def test_off_loopback_it_needs_a_token_as_bearer_or_login(seeded: ProjectFactory) -> None:
    project = seeded.load()
    assert ui_token(project, "127.0.0.1") is None
    with pytest.raises(ConfigError, match=r"\[ui\] token"):
        ui_token(project, "0.0.0.0")  # noqa: S104
    app = StatusApp(StatusReader(seeded.context()), token="s3cret-token")
    base = "http://10.1.2.3:8070"
    assert get(app, "/", base_url=base).status_code == 303
    assert get(app, "/", base_url=base).headers["location"] == "/login"
    assert get(app, "/api/status.json", base_url=base).status_code == 401
    assert get(app, "/static/ui.css", base_url=base).status_code == 200
    assert get(app, "/metrics", base_url=base).status_code == 200
    bearer = {"authorization": "Bearer s3cret-token"}
    assert get(app, "/api/status.json", base_url=base, headers=bearer).status_code == 200
    wrong = {"authorization": "Bearer nope"}
    assert get(app, "/api/status.json", base_url=base, headers=wrong).status_code == 401
    login = get(app, "/login", base_url=base)
    assert login.status_code == 200 and 'type="password"' in login.text
    bad = request(app, "POST", "/login", base_url=base, data={"token": "nope"})
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    ok = request(app, "POST", "/login", base_url=base, data={"token": "s3cret-token"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
    session = {"cookie": cookie.split(";")[0]}
    assert get(app, "/", base_url=base, headers=session).status_code == 200


def test_without_a_token_only_loopback_host_names_are_answered(app: StatusApp) -> None:
    assert get(app, "/", base_url="http://localhost:8070").status_code == 200
    assert get(app, "/", base_url="http://[::1]:8070").status_code == 200
    rebound = get(app, "/", base_url="http://attacker.example:8070")
    assert rebound.status_code == 403


def test_ui_metrics_count_requests_and_snapshots(app: StatusApp) -> None:
    get(app, "/")
    text = get(app, "/metrics").text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert names and all(n.startswith("courier_") for n in names)
    assert re.search(r'courier_ui_requests_total\{code="200",page="overview"\} [1-9]', text)
    assert re.search(r'courier_ui_snapshots_total\{outcome="ok"\} [1-9]', text)
    assert re.search(r"courier_ui_database_hold_seconds_count [1-9]", text)
    assert "/tmp" not in text and ".courier" not in text


def test_cli_refuses_a_public_host_without_a_token(seeded: ProjectFactory) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(seeded.root), "ui", "--host",
         "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "[ui] token" in out.stderr


def test_runs_started_while_the_page_keeps_reading_never_fail(
    app: StatusApp, seeded: ProjectFactory
) -> None:
    """The page's visits hold the database read-only for milliseconds; a run that starts
    during one waits it out ([feeds] lock_timeout) instead of failing."""
    import os
    import threading

    stop = threading.Event()
    visits = [0]

    def keep_reading() -> None:
        while not stop.is_set():
            app.reader.refresh()
            visits[0] += 1

    ((start,),) = seeded.sql("SELECT min(window_start) FROM courier.runs WHERE courier = 'events'")
    day = start.astimezone(ZONE).date().isoformat()  # loaded already: each run is skipped
    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, "-m", "courier", "--project", str(seeded.root), "run", "events",
                 "--date", day, "--json"],
                capture_output=True, text=True, timeout=120, env=os.environ.copy(),
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
            assert orjson.loads(out.stdout)["status"] == "skipped"
    finally:
        stop.set()
        reader.join(60)
    assert visits[0] >= 3
