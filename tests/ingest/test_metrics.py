"""GET /metrics of a real `courier serve` with two workers: every worker's counts, summed."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from tests.ingest.helpers import (
    headers,
    make_project,
    serving,
    wait_until,
)
from tests.ingest.test_websocket import auth_headers, open_ws, recv
from tests.metrics_text import names, scrape, value

pytestmark = pytest.mark.integration


def test_counters_move_by_exactly_the_payloads_sent_whichever_worker_took_them(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "p", streams={"events": 'payload = "json"\n'})
    with serving(root, workers=2) as server:
        pids: set[int] = set()
        wait_until(
            lambda: pids.add(server.health()["pid"]) or len(pids) == 2,
            timeout=60, what="both workers answering",
        )  # fmt: skip
        before = scrape(server.url + "/metrics")
        sent = 0
        for i in range(40):  # a fresh connection each: both workers take some
            body = orjson.dumps({"n": i, "pad": "x" * i})
            r = httpx.post(f"{server.url}/stream/v0/data/events", content=body,
                           headers=headers("events"))  # fmt: skip
            assert r.status_code == 202
            sent += len(body)
        for _ in range(3):
            r = httpx.post(f"{server.url}/stream/v0/data/events", content=b"{nope",
                           headers=headers("events"))  # fmt: skip
            assert r.status_code == 400
        for _ in range(2):
            r = httpx.post(f"{server.url}/stream/v0/data/events", content=b"{}",
                           headers={**headers("events"), "Authorization": "Bearer x"})  # fmt: skip
            assert r.status_code == 401
        r = httpx.post(f"{server.url}/stream/v0/data/made-up", content=b"{}",
                       headers=headers("events"))  # fmt: skip
        assert r.status_code == 404
        with open_ws(server, "events", headers=auth_headers("events")) as ws:
            assert recv(ws)["type"] == "ready"
            for i in range(5):  # websocket payloads count by their acks
                message = orjson.dumps({"ws": i}).decode()
                ws.send(message)
                sent += len(message)
            assert [recv(ws) for _ in range(5)] == [{"ack": i} for i in range(1, 6)]
            ws.send("{not json")
            assert recv(ws)["status"] == 400
        wait_until(
            lambda: value(scrape(server.url + "/metrics"),
                          "courier_ingest_roller_uploads_total") >= 1,
            timeout=60, what="an upload counted",
        )  # fmt: skip
        scrapes = [scrape(server.url + "/metrics") for _ in range(6)]  # any worker answers
        for after in scrapes:

            def moved(name: str, **labels: str) -> float:
                return value(after, name, **labels) - value(before, name, **labels)  # noqa: B023

            assert moved("courier_ingest_payloads_total", stream="events", code="202") == 45
            assert moved("courier_ingest_payloads_total", stream="events", code="400") == 4
            assert moved("courier_ingest_payloads_total", stream="events", code="401") == 2
            assert moved("courier_ingest_payloads_total", stream="unknown", code="404") == 1
            assert moved("courier_ingest_accepted_bytes_total", stream="events") == sent
            assert moved("courier_ingest_fsync_batch_payloads_sum") == 45
            assert moved("courier_ingest_request_seconds_count", route="data") == 46
            assert moved("courier_ingest_fsync_seconds_count") >= 1
        final = scrapes[-1]
        assert {"courier_ingest_wal_backlog_bytes", "courier_ingest_upload_backlog_segments",
                "courier_ingest_roller_upload_failures_total"} <= names(final)  # fmt: skip
        assert all(n.startswith("courier_") for n in names(final))
        text = httpx.get(server.url + "/metrics").text
        assert str(root) not in text and "made-up" not in text


def test_a_websocket_load_moves_payloads_and_bytes_by_exactly_what_was_acknowledged(
    tmp_path: Path,
) -> None:
    """Scraped while three connections (one framed) pipeline payloads into two workers: the
    counters never go back, and once every ack is in they moved by exactly the acked
    messages and their bytes (a message refused at the end counts by its status, no bytes)."""
    root = make_project(tmp_path / "p", streams={"events": 'payload = "json"\n'})
    per_connection = 300
    with serving(root, workers=2) as server:
        url = server.url + "/metrics"
        before = scrape(url)
        base = value(before, "courier_ingest_accepted_bytes_total", stream="events")
        connections = [
            open_ws(server, "events", headers=auth_headers("events")),
            open_ws(server, "events", headers=auth_headers("events")),
            open_ws(server, "events", framed=True, headers=auth_headers("events")),
        ]
        sent_bytes = 0
        seen: list[float] = []
        try:
            for ws in connections:
                assert recv(ws)["type"] == "ready"
            for i in range(per_connection):
                for c, ws in enumerate(connections):
                    payload = {"c": c, "n": i, "pad": "y" * (i % 97)}
                    doc = {"id": f"m{i}", "payload": payload} if c == 2 else payload
                    message = orjson.dumps(doc).decode()
                    ws.send(message)
                    sent_bytes += len(message)
                if i % 60 == 59:  # scrape mid-load: counts only ever grow
                    now = scrape(url)
                    seen.append(value(now, "courier_ingest_accepted_bytes_total", stream="events"))
            acks = [[recv(ws) for _ in range(per_connection)] for ws in connections]
            assert acks[0] == [{"ack": i} for i in range(1, per_connection + 1)]
            assert acks[2] == [{"ack": f"m{i}"} for i in range(per_connection)]
            connections[0].send("[1, 2")  # refused: a status, no bytes
            assert recv(connections[0])["status"] == 400
        finally:
            for ws in connections:
                ws.close()
        # each scrape may come from either worker, each reporting the sum of both
        assert seen == sorted(seen) and base <= seen[0] and seen[-1] - base <= sent_bytes
        acked = 3 * per_connection
        for after in [scrape(url) for _ in range(6)]:  # whichever worker answers: the sum

            def moved(name: str, **labels: str) -> float:
                return value(after, name, **labels) - value(before, name, **labels)  # noqa: B023

            assert moved("courier_ingest_payloads_total", stream="events", code="202") == acked
            assert moved("courier_ingest_payloads_total", stream="events", code="400") == 1
            assert moved("courier_ingest_accepted_bytes_total", stream="events") == sent_bytes
            assert moved("courier_ingest_fsync_batch_payloads_sum") == acked
