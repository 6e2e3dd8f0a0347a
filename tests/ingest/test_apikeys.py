"""API keys against `courier serve` on loopback: the CLI creates/lists/revokes them in its own
process while the server runs; token exchange, header-key auth, client ids and envelopes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.ingest.helpers import (
    SECRET,
    Server,
    environment,
    headers,
    landed_json,
    make_project,
    wait_until,
)

pytestmark = pytest.mark.integration

STREAMS = {
    "activity": 'payload = "json"\nenvelope = true\n',
    "plain": 'payload = "json"\n',
    "custom": 'payload = "json"\nenvelope = true\n[api_keys]\nid_header = "X-Key"\n'
    'secret_header = "X-Key-Secret"\nclient_header = "X-Shop"\n',
}


def courier(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(root), *args],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )


def create(root: Path, name: str, *streams: str) -> dict[str, Any]:
    args = [a for s in streams for a in ("--stream", s)]
    done = courier(root, "apikey", "create", name, *args, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_project(tmp_path_factory.mktemp("apikeys") / "project", streams=STREAMS)
    srv = Server(root).start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def by_payload_id(root: Path, stream: str) -> dict[str, dict[str, Any]]:
    return {r["payload"]["id"]: r for r in landed_json(root, stream) if "payload" in r}


def test_create_prints_secret_once_and_stores_only_a_salted_hash(server: Server) -> None:
    done = courier(server.root, "apikey", "create", "shop", "--stream", "activity")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.strip().splitlines())
    key_id, secret = lines["key id"], lines["secret"]
    assert key_id.startswith("ck_") and len(secret) >= 40
    stored = (server.root / ".courier" / "apikeys.json").read_text()
    assert secret not in stored and key_id in stored
    doc = json.loads(stored)["keys"][0]
    assert doc["kdf"] == "scrypt" and len(bytes.fromhex(doc["salt"])) == 16
    again = courier(server.root, "apikey", "create", "shop", "--stream", "activity")
    assert again.returncode == 1 and "already exists" in again.stderr
    unknown = courier(server.root, "apikey", "create", "x", "--stream", "nope")
    assert unknown.returncode == 1 and "no stream named 'nope'" in unknown.stderr
    listed = courier(server.root, "apikey", "list")
    assert listed.returncode == 0 and "shop" in listed.stdout and key_id in listed.stdout
    assert secret not in listed.stdout


def test_token_exchange_and_bearer_ingest(server: Server, client: httpx.Client) -> None:
    key = create(server.root, "exchange", "activity", "plain")
    response = client.get("/api/token", auth=(key["id"], key["secret"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert claims["key"] == key["id"] and claims["streams"] == ["activity", "plain"]
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    for stream in ("activity", "plain"):
        r = client.post(
            f"/stream/v0/data/{stream}?client_id=tenant-7",
            json={"id": f"tok-{stream}"},
            headers=bearer,
        )
        assert r.status_code == 202, r.text
    # not scoped to `custom`
    r = client.post("/stream/v0/data/custom", json={"id": "no"}, headers=bearer)
    assert r.status_code == 401 and "not scoped" in r.json()["error"]
    # ?stream= narrows the token to one stream
    narrow = client.get("/api/token?stream=plain", auth=(key["id"], key["secret"])).json()
    r = client.post(
        "/stream/v0/data/activity",
        json={"id": "no"},
        headers={"Authorization": f"Bearer {narrow['access_token']}"},
    )
    assert r.status_code == 401
    wait_until(lambda: "tok-activity" in by_payload_id(server.root, "activity"), what="landing")
    landed = by_payload_id(server.root, "activity")["tok-activity"]
    assert landed["client_id"] == "tenant-7" and landed["source"] == "apikey:exchange"
    wait_until(lambda: any(r.get("id") == "tok-plain" for r in landed_json(server.root, "plain")))
    assert {"id": "tok-plain"} in landed_json(server.root, "plain")  # no envelope: bare payload


def test_wrong_secret_unknown_key_and_bad_basic_are_401(
    server: Server, client: httpx.Client
) -> None:
    key = create(server.root, "basic", "plain")
    r = client.get("/api/token", auth=(key["id"], key["secret"] + "x"))
    assert r.status_code == 401 and "wrong secret" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Basic")
    assert key["secret"] not in r.text
    r = client.get("/api/token", auth=("ck_unknown", key["secret"]))
    assert r.status_code == 401 and "unknown API key" in r.json()["error"]
    r = client.get("/api/token")
    assert r.status_code == 401 and "Basic" in r.json()["error"]
    r = client.get("/api/token", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401
    r = client.post("/api/token")
    assert r.status_code == 405
    log = server.log.read_text()
    assert key["secret"] not in log


def test_header_key_auth_with_client_id_lands_the_envelope(
    server: Server, client: httpx.Client
) -> None:
    key = create(server.root, "headers", "activity", "custom")
    sent = {"id": "hk-1", "actor": {"id": "u1"}, "action": "click", "context": {"page": "/"}}
    r = client.post(
        "/stream/v0/data/activity",
        json=sent,
        headers={
            "X-App-Id": key["id"],
            "X-App-Secret": key["secret"],
            "X-Client-Instance": "pos-3",
        },
    )
    assert r.status_code == 202, r.text
    r = client.post(
        "/stream/v0/data/custom",
        json={"id": "hk-2"},
        headers={"X-Key": key["id"], "X-Key-Secret": key["secret"], "X-Shop": "berlin"},
    )
    assert r.status_code == 202, r.text
    # default header names do not apply to the stream that renamed them
    r = client.post(
        "/stream/v0/data/custom",
        json={"id": "hk-3"},
        headers={"X-App-Id": key["id"], "X-App-Secret": key["secret"]},
    )
    assert r.status_code == 401
    # wrong secret, secret missing, stream out of scope: 401 and nothing landed
    for extra, stream in (
        ({"X-App-Id": key["id"], "X-App-Secret": "wrong"}, "activity"),
        ({"X-App-Id": key["id"]}, "activity"),
        ({"X-App-Id": key["id"], "X-App-Secret": key["secret"]}, "plain"),
    ):
        r = client.post(f"/stream/v0/data/{stream}", json={"id": "hk-bad"}, headers=extra)
        assert r.status_code == 401, r.text
    wait_until(lambda: "hk-1" in by_payload_id(server.root, "activity"), what="landing")
    wait_until(lambda: "hk-2" in by_payload_id(server.root, "custom"), what="landing")
    landed = by_payload_id(server.root, "activity")["hk-1"]
    assert set(landed) == {"received_at", "client_id", "source", "payload"}
    assert landed["payload"] == sent and landed["client_id"] == "pos-3"
    assert landed["source"] == "apikey:headers"
    received = datetime.fromisoformat(landed["received_at"].replace("Z", "+00:00"))
    assert received.tzinfo is not None
    assert by_payload_id(server.root, "custom")["hk-2"]["client_id"] == "berlin"
    everything = [r for s in ("activity", "custom", "plain") for r in landed_json(server.root, s)]
    assert not [r for r in everything if "hk-bad" in json.dumps(r) or "hk-3" in json.dumps(r)]


def test_stream_tokens_still_work_on_envelope_streams(server: Server, client: httpx.Client) -> None:
    r = client.post(
        "/stream/v0/data/activity?client_id=c9", json={"id": "amp-1"}, headers=headers("activity")
    )
    assert r.status_code == 202, r.text
    wait_until(lambda: "amp-1" in by_payload_id(server.root, "activity"), what="landing")
    landed = by_payload_id(server.root, "activity")["amp-1"]
    assert landed["source"] == "api" and landed["client_id"] == "c9"
    r = client.post("/stream/v0/data/activity", json={"id": "no"})
    assert r.status_code == 401 and "missing credentials" in r.json()["error"]


def test_revoked_key_answers_401_at_once(server: Server, client: httpx.Client) -> None:
    key = create(server.root, "doomed", "activity")
    token = client.get("/api/token", auth=(key["id"], key["secret"])).json()["access_token"]
    by_header = {"X-App-Id": key["id"], "X-App-Secret": key["secret"]}
    by_token = {"Authorization": f"Bearer {token}"}
    for h in (by_header, by_token):
        assert (
            client.post("/stream/v0/data/activity", json={"id": "ok"}, headers=h).status_code == 202
        )
    done = courier(server.root, "apikey", "revoke", "doomed")
    assert done.returncode == 0 and "revoked doomed" in done.stdout
    for h in (by_header, by_token):
        r = client.post("/stream/v0/data/activity", json={"id": "revoked"}, headers=h)
        assert r.status_code == 401 and "revoked" in r.json()["error"], r.text
    r = client.get("/api/token", auth=(key["id"], key["secret"]))
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    listed = json.loads(courier(server.root, "apikey", "list", "--json").stdout)
    assert {k["name"]: k["status"] for k in listed}["doomed"] == "revoked"
    missing = courier(server.root, "apikey", "revoke", "nobody")
    assert missing.returncode == 1 and "no API key named 'nobody'" in missing.stderr
    again = courier(server.root, "apikey", "create", "doomed", "--stream", "activity")
    assert again.returncode == 1 and "apikey delete doomed" in again.stderr
    assert courier(server.root, "apikey", "delete", "doomed").returncode == 0
    r = client.post("/stream/v0/data/activity", json={"id": "deleted"}, headers=by_header)
    assert r.status_code == 401, r.text  # a deleted key is unknown
    assert "doomed" not in {k["name"] for k in json.loads(
        courier(server.root, "apikey", "list", "--json").stdout
    )}  # fmt: skip
    fresh = create(server.root, "doomed", "activity")  # the name is free again
    assert fresh["id"] != key["id"]


def test_open_websockets_of_a_revoked_key_are_closed(server: Server, client: httpx.Client) -> None:
    """Websockets authenticated with a key (in the upgrade's headers, or with a token
    exchanged for it) are closed with 1008 and the reason once the key is revoked."""
    key = create(server.root, "ws-doomed", "activity")
    token = client.get("/api/token", auth=(key["id"], key["secret"])).json()["access_token"]
    url = f"ws://127.0.0.1:{server.port}/stream/v0/ws/activity"
    by_header = {"X-App-Id": key["id"], "X-App-Secret": key["secret"]}
    by_token = {"Authorization": f"Bearer {token}"}
    sockets = [connect(url, additional_headers=h, open_timeout=10) for h in (by_header, by_token)]
    try:
        for ws in sockets:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(json.dumps({"id": "before-revoke"}))
            assert json.loads(ws.recv(timeout=10)) == {"ack": 1}
        done = courier(server.root, "apikey", "revoke", "ws-doomed")
        assert done.returncode == 0, done.stderr
        for ws in sockets:
            error = json.loads(ws.recv(timeout=30))
            assert error["status"] == 401 and "revoked" in error["error"], error
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        for ws in sockets:
            ws.close()


def test_a_key_store_broken_while_serving_answers_500_and_the_log_says_what_to_do(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "p", streams={"activity": 'payload = "json"\n'})
    server = Server(root).start()
    try:
        key = create(root, "shop", "activity")
        by_key = {"X-App-Id": key["id"], "X-App-Secret": key["secret"]}
        url = server.url + "/stream/v0/data/activity"
        assert httpx.post(url, json={"id": "s-1"}, headers=by_key).status_code == 202
        store = root / ".courier" / "apikeys.json"
        good = store.read_text()
        store.write_text("{ not json")
        r = httpx.post(url, json={"id": "s-2"}, headers=by_key)
        assert r.status_code == 500
        assert r.json() == {"error": "internal error; see the server log"}  # no paths, no keys
        # the websocket route says the same, then closes 1011
        ws_url = f"ws://127.0.0.1:{server.port}/stream/v0/ws/activity"
        with connect(ws_url, additional_headers=by_key, open_timeout=10) as ws:
            error = json.loads(ws.recv(timeout=10))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert error == {"error": "internal error; see the server log", "status": 500}
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert server.health()["status"] == "ok"  # the server keeps serving
        store.write_text(good)
        assert httpx.post(url, json={"id": "s-3"}, headers=by_key).status_code == 202
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert "the API key store is unreadable" in log and "courier apikey create" in log
    assert "Traceback" not in log  # a known problem is one line, not a stack
    assert [r["id"] for r in landed_json(root, "activity")] == ["s-1", "s-3"]
