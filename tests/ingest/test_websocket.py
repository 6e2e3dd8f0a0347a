"""Websocket ingest against `courier serve` on loopback: acks only after the log, in order,
with the client's ids; credentials in the upgrade or the first message; fatal errors close
with a reason after the earlier acks; nothing of a refused message lands."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.ingest.helpers import (
    SECRET,
    STREAMS,
    Server,
    environment,
    landed_cbor,
    landed_json,
    make_project,
    serving,
    token,
    wait_until,
)

pytestmark = pytest.mark.integration

WS_STREAMS = {
    **STREAMS,
    "keyed": 'payload = "json"\nenvelope = true\n',
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(
        make_project(tmp_path_factory.mktemp("ws") / "project", streams=WS_STREAMS)
    ) as srv:
        yield srv


def ws_url(server: Server, stream: str) -> str:
    return f"ws://127.0.0.1:{server.port}/stream/v0/ws/{stream}"


def auth_headers(stream: str, **kw: Any) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token(stream, **kw)}",
        "X-Amperity-Tenant": kw.get("tenant", "acme"),
    }


def open_ws(server: Server, stream: str, framed: bool = False, **kw: Any) -> ClientConnection:
    return connect(
        ws_url(server, stream),
        additional_headers=kw.pop("headers", None),
        subprotocols=["courier.v0"] if framed else None,  # type: ignore[list-item]
        open_timeout=10,
        max_size=2**22,
        **kw,
    )


def recv(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=10)))


def until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every message up to the close, and the close code."""
    messages = []
    try:
        while True:
            messages.append(recv(ws))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd else None


def test_pipelined_payloads_acked_in_order_and_landed_once(server: Server) -> None:
    with open_ws(server, "events", headers=auth_headers("events")) as ws:
        ready = recv(ws)
        assert ready == {"type": "ready", "stream": "events", "max_message_bytes": 254 * 1024}
        for i in range(200):  # sent without waiting for acks
            ws.send(json.dumps({"event_id": f"ws-{i}", "n": i}))
        acks = [recv(ws) for _ in range(200)]
    assert acks == [{"ack": i} for i in range(1, 201)]
    root = server.root

    def landed() -> list[str]:
        return [r["event_id"] for r in landed_json(root, "events") if r["event_id"][:3] == "ws-"]

    wait_until(lambda: len(landed()) >= 200, what="200 websocket payloads in storage")
    assert sorted(landed()) == sorted(f"ws-{i}" for i in range(200))


def test_framed_messages_carry_client_ids_arrays_and_xml(server: Server) -> None:
    with open_ws(server, "batch", framed=True, headers=auth_headers("batch")) as ws:
        assert ws.subprotocol == "courier.v0"
        recv(ws)
        ws.send(json.dumps({"id": "m-1", "payload": [{"event_id": "fa"}, {"event_id": "fb"}]}))
        ws.send(json.dumps({"id": 42, "payload": {"event_id": "fc"}}))
        assert [recv(ws), recv(ws)] == [{"ack": "m-1"}, {"ack": 42}]
    wait_until(
        lambda: {"fa", "fb", "fc"} <= {r["event_id"] for r in landed_json(server.root, "batch")},
        what="framed records",
    )
    with open_ws(server, "pos", framed=True, headers=auth_headers("pos")) as ws:
        recv(ws)
        ws.send(json.dumps({"id": "x1", "payload": "<sale><id>ws-7</id><total>3.5</total></sale>"}))
        assert recv(ws) == {"ack": "x1"}
    wait_until(
        lambda: (
            {"id": "ws-7", "total": "3.5"}
            in [d.get("sale") for d in landed_cbor(server.root, "pos")]
        ),
        what="the XML payload as CBOR",
    )


def test_token_in_the_first_message(server: Server) -> None:
    with open_ws(server, "events") as ws:
        ws.send(json.dumps({"token": token("events"), "tenant": "acme"}))
        assert recv(ws)["type"] == "ready"
        ws.send(json.dumps({"event_id": "first-msg-auth"}))
        assert recv(ws) == {"ack": 1}


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ("not json", "missing credentials"),
        ({"token": "garbage", "tenant": "acme"}, "invalid token"),
        ({"token": token("events", days=-1), "tenant": "acme"}, "expired"),
        ({"token": token("globex", tenant="acme"), "tenant": "acme"}, "stream"),
        ({"token": token("events"), "tenant": "globex"}, "tenant"),
        ({"token": token("events", secret=SECRET[::-1]), "tenant": "acme"}, "invalid token"),
    ],
)
def test_bad_credentials_are_refused_with_a_reason(server: Server, first: Any, reason: str) -> None:
    with open_ws(server, "events") as ws:
        ws.send(first if isinstance(first, str) else json.dumps(first))
        messages, code = until_closed(ws)
    assert code == 1008
    assert [m["status"] for m in messages] == [401]
    assert reason in messages[0]["error"]


def test_bad_credentials_in_the_upgrade(server: Server) -> None:
    with open_ws(server, "events", headers=auth_headers("events", days=-1)) as ws:
        messages, code = until_closed(ws)
    assert code == 1008 and messages[0]["status"] == 401 and "expired" in messages[0]["error"]


def test_unknown_stream(server: Server) -> None:
    with open_ws(server, "nope", headers=auth_headers("events")) as ws:
        messages, code = until_closed(ws)
    assert code == 1008
    assert messages == [{"error": "unknown stream 'nope'", "status": 404}]


def _events_landed(root: Path, prefix: str) -> list[str]:
    return [r["event_id"] for r in landed_json(root, "events") if r["event_id"].startswith(prefix)]


def test_invalid_payload_closes_after_earlier_acks_and_lands_nothing_of_it(server: Server) -> None:
    with open_ws(server, "events", headers=auth_headers("events")) as ws:
        recv(ws)
        ws.send(json.dumps({"event_id": "good-1"}))
        ws.send(json.dumps({"event_id": "good-2"}))
        ws.send("{not json")
        ws.send(json.dumps({"event_id": "after-bad"}))  # never read
        messages, code = until_closed(ws)
    assert code == 1007
    assert messages[:2] == [{"ack": 1}, {"ack": 2}]
    assert messages[2]["id"] == 3 and messages[2]["status"] == 400
    assert "invalid JSON" in messages[2]["error"]
    assert len(messages) == 3
    wait_until(lambda: len(_events_landed(server.root, "good-")) == 2, what="the good payloads")
    assert _events_landed(server.root, "after-bad") == []


@pytest.mark.parametrize(
    ("message", "what"),
    [
        (json.dumps([{"event_id": "arr"}]), "a JSON array where one object is expected"),
        (json.dumps("just a string"), "expected a JSON object"),
        (b"\xff\xfe{}", "not valid UTF-8"),
    ],
)
def test_payload_problems_are_named(server: Server, message: Any, what: str) -> None:
    with open_ws(server, "events", headers=auth_headers("events")) as ws:
        recv(ws)
        ws.send(message)
        messages, code = until_closed(ws)
    assert code == 1007 and what in messages[0]["error"]


def test_message_over_254_kb_is_refused(server: Server) -> None:
    big = json.dumps({"event_id": "big", "blob": "x" * (300 * 1024)})
    with open_ws(server, "events", headers=auth_headers("events")) as ws:
        recv(ws)
        ws.send(big)
        messages, code = until_closed(ws)
    assert code == 1009
    assert messages[0]["status"] == 413 and "limit is 260096 bytes" in messages[0]["error"]
    assert _events_landed(server.root, "big") == []


def test_framed_message_without_payload(server: Server) -> None:
    with open_ws(server, "events", framed=True, headers=auth_headers("events")) as ws:
        recv(ws)
        ws.send(json.dumps({"id": "a", "event_id": "oops"}))
        messages, code = until_closed(ws)
    assert code == 1007 and '"payload"' in messages[0]["error"]


def test_over_the_rate_limit_nacks_and_stays_open(server: Server) -> None:
    with open_ws(server, "limited", headers=auth_headers("limited")) as ws:
        recv(ws)
        for i in range(6):
            ws.send(json.dumps({"event_id": f"lim-{i}"}))
        answers = [recv(ws) for _ in range(6)]
        nacks = [a for a in answers if "nack" in a]
        assert nacks and all(a["status"] == 429 and a["retry_after"] >= 1 for a in nacks)
        acked = [a["ack"] for a in answers if "ack" in a]
        assert acked and sorted(acked + [a["nack"] for a in nacks]) == list(range(1, 7))
        ws.ping().wait(5)  # still open


def test_api_key_in_the_first_message_lands_an_envelope(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(server.root), "apikey", "create",
         "wsclient", "--stream", "keyed", "--json"],
        capture_output=True, text=True, env=environment(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    key = json.loads(done.stdout)
    with open_ws(server, "keyed") as ws:
        ws.send(
            json.dumps({"app_id": key["id"], "app_secret": key["secret"], "client_id": "shop-9"})
        )
        assert recv(ws)["type"] == "ready"
        ws.send(json.dumps({"event_id": "keyed-1"}))
        assert recv(ws) == {"ack": 1}
    with open_ws(server, "keyed") as ws:
        ws.send(json.dumps({"app_id": key["id"], "app_secret": "wrong"}))
        messages, code = until_closed(ws)
    assert code == 1008 and "wrong secret" in messages[0]["error"]
    wait_until(lambda: landed_json(server.root, "keyed"), what="the keyed payload")
    (record,) = landed_json(server.root, "keyed")
    assert record["payload"] == {"event_id": "keyed-1"}
    assert record["client_id"] == "shop-9"
    assert record["source"] == "apikey:wsclient"


def test_every_acked_message_survives_kill_9(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    first = Server(root).start()
    acked: list[int] = []
    try:
        with open_ws(first, "events", headers=auth_headers("events")) as ws:
            recv(ws)
            for i in range(1, 501):
                ws.send(json.dumps({"event_id": f"k-{i}"}))
                if i % 50 == 0:  # keep some in flight while the server dies
                    while len(acked) < i - 25:
                        acked.append(recv(ws)["ack"])
            first.kill()
            try:
                while True:
                    acked.append(recv(ws)["ack"])
            except ConnectionClosed:
                pass
    finally:
        first.kill()
    assert acked == list(range(1, len(acked) + 1)) and len(acked) >= 450
    with_restart = Server(root).start()  # adopts the dead writer's log
    try:
        wait_until(
            lambda: len({r["event_id"] for r in landed_json(root, "events")}) >= len(acked),
            what="every acked payload after the restart",
        )
    finally:
        with_restart.stop(timeout=30)
    landed = [r["event_id"] for r in landed_json(root, "events")]
    assert len(landed) == len(set(landed)), "a payload landed twice"
    assert {f"k-{i}" for i in acked} <= set(landed)
    assert set(landed) <= {f"k-{i}" for i in range(1, 501)}
