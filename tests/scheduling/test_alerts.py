"""Alert sinks against real endpoints: a webhook server on loopback and real commands."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from courier.alerts import Alert, Alerter, CommandSink, LogSink, WebhookSink
from courier.scheduling.runner import GroupRunner
from courier.windows import Window
from tests.projects import EVENTS_QUERY, ProjectFactory, event
from tests.scheduling.conftest import group
from tests.servers import free_port


class Hook:
    def __init__(self, status: int = 204):
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []


@pytest.fixture
def webhook() -> Iterator[tuple[str, Hook]]:
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append(json.loads(body))
            hook.headers.append(dict(self.headers))
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/secret-token-123", hook
    finally:
        server.shutdown()
        server.server_close()


def sample() -> Alert:
    window = Window(datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    return Alert("failed", "courier events failed: boom", courier="events", group="daily",
                 run_id="r1", window=window)  # fmt: skip


def test_webhook_posts_json_and_failures_are_recorded_not_raised(
    webhook: tuple[str, Hook], caplog: pytest.LogCaptureFixture
) -> None:
    url, hook = webhook
    alerter = Alerter([WebhookSink(url, {"X-Team": "data"}), LogSink()])
    alert = alerter.fire(sample())
    assert alert.deliveries == {"webhook 127.0.0.1": "ok", "log": "ok"}
    assert hook.received[0]["kind"] == "failed" and hook.received[0]["courier"] == "events"
    assert hook.received[0]["window"] == {
        "start": "2026-11-22T00:00:00Z",
        "end": "2026-11-23T00:00:00Z",
    }
    assert hook.headers[0]["X-Team"] == "data"
    hook.status = 500
    dead = f"http://127.0.0.1:{free_port()}/hooks/secret-token-123"
    with caplog.at_level(logging.INFO):
        failed = Alerter([WebhookSink(url), WebhookSink(dead, timeout=2)]).fire(sample())
    results = list(failed.deliveries.values())
    assert "HTTP 500" in results[0] and results[1].startswith("error: webhook 127.0.0.1")
    assert "secret-token-123" not in caplog.text + json.dumps(failed.deliveries)


def test_command_gets_the_alert_on_stdin_and_in_env(tmp_path: Path) -> None:
    out = tmp_path / "got"
    script = f'cat > {out}.json; echo "$COURIER_ALERT_KIND $COURIER_ALERT_COURIER" > {out}.env'
    alert = Alerter([CommandSink(["/bin/sh", "-c", script])]).fire(sample())
    assert alert.deliveries == {"command sh": "ok"}
    assert json.loads(Path(f"{out}.json").read_text())["message"] == "courier events failed: boom"
    assert Path(f"{out}.env").read_text().strip() == "failed events"
    bad = Alerter([CommandSink(["/bin/sh", "-c", "echo nope >&2; exit 3"])]).fire(sample())
    assert bad.deliveries["command sh"] == "error: command sh exited with 3: nope"
    missing = Alerter([CommandSink([str(tmp_path / "no-such-command")])]).fire(sample())
    assert missing.deliveries["command no-such-command"].startswith("error:")


@pytest.mark.slow
def test_overlong_run_alerts_while_running(
    make_project: ProjectFactory, webhook: tuple[str, Hook]
) -> None:
    url, hook = webhook
    p = make_project.events_project()
    slow = EVENTS_QUERY + "WHERE (SELECT sum(r) FROM range(2500000000) t(r)) > 0\n"
    p.query("order_items", slow)
    p.write("config/courier.toml", f'[alerts]\nsinks = [{{ type = "webhook", url = "{url}" }}]\n')
    group(
        p,
        "daily",
        'schedule = "0 6 * * *"\n[[couriers]]\nname = "events"\noffset = "24h"\n'
        'alert_after = "1s"\n',
    )
    p.land_hour(datetime(2026, 11, 22).date(), 5, [event(i) for i in range(10)])
    result = GroupRunner(p.context()).run("daily", datetime(2026, 11, 23, 6, tzinfo=UTC))
    assert result["status"] == "succeeded"
    run = result["couriers"][0]
    assert run["duration_s"] > 1
    assert [a["kind"] for a in hook.received] == ["overlong"]
    sent = hook.received[0]
    assert sent["courier"] == "events" and sent["details"]["alert_after_s"] == 1
    assert 1 <= sent["details"]["running_s"] < run["duration_s"] + 0.5
    recorded = p.sql("SELECT kind, run_id FROM courier.alerts")
    assert recorded == [("overlong", run["run_id"])]  # run id filled in once known
