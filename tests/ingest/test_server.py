"""Every status code of the ingest API, from real clients against `courier serve` on loopback."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import httpx
import jwt
import pytest
import xmltodict

from tests.ingest.helpers import (
    ADMIN,
    ADMIN_HEADERS,
    SECRET,
    Server,
    headers,
    landed_cbor,
    landed_json,
    make_project,
    rsa_key,
    token,
    unsigned_token,
    wait_until,
)
from tests.ingest.test_payloads import BILLION_LAUGHS, EXTERNAL_DTD, EXTERNAL_ENTITY, POS

pytestmark = pytest.mark.integration

LIMIT = 254 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_project(tmp_path_factory.mktemp("ingest") / "project")
    srv = Server(root).start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0  # graceful: exit code 0


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def post(
    client: httpx.Client,
    stream: str,
    body: bytes,
    content_type: str = "application/json",
    **kw: object,
) -> httpx.Response:
    return client.post(
        f"/stream/v0/data/{stream}", content=body, headers=headers(stream, content_type, **kw)
    )  # type: ignore[arg-type]


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"])


def ids(root: Path, stream: str) -> list[str]:
    return [r.get("id") for r in landed_json(root, stream)]


# -- 202 ---------------------------------------------------------------------------------------


def test_202_json_lands_as_one_compact_line(server: Server, client: httpx.Client) -> None:
    body = (
        b'{\n  "id": "j1",\n  "nested": {"a": [1, 2]},\n  "big": 123456789012345678901234567890\n}'
    )
    r = post(client, "events", body)
    # 202 as Amperity answers, with an id the producer can log: this writer and a count
    assert r.status_code == 202 and r.headers["content-type"] == "application/json"
    answer = r.json()
    assert answer["status"] == "accepted" and re.fullmatch(r"\S+-\d+", answer["id"])
    wait_until(lambda: "j1" in ids(server.root, "events"), what="j1 to land")
    (part,) = [p for p in (server.root / ".courier/landing/events").rglob("part-*")]
    assert f"part-{answer['id'].rsplit('-', 1)[0]}-" in part.name
    assert (
        part.read_bytes()
        == b'{"id":"j1","nested":{"a":[1,2]},"big":123456789012345678901234567890}\n'
    )
    hour = datetime.now(UTC).strftime("%Y/%m/%d/%H")
    assert part.parent.relative_to(server.root / ".courier/landing").as_posix() in (
        f"events/{hour}",
        f"events/{(datetime.now(UTC) - timedelta(minutes=1)).strftime('%Y/%m/%d/%H')}",
    )


def test_202_xml_lands_as_a_cbor_item(server: Server, client: httpx.Client) -> None:
    for content_type in ("application/xml", "text/xml; charset=utf-8"):
        assert post(client, "pos", POS, content_type).status_code == 202
    wait_until(lambda: len(landed_cbor(server.root, "pos")) == 2, what="2 CBOR items")
    assert landed_cbor(server.root, "pos") == [xmltodict.parse(POS)] * 2
    assert all(p.suffix == ".cbor" for p in (server.root / ".courier/landing/pos").rglob("part-*"))


def test_202_batch_arrays_all_or_none(server: Server, client: httpx.Client) -> None:
    assert post(client, "batch", b'[{"id": "b1"}, {"id": "b2"}, {"id": "b3"}]').status_code == 202
    assert "element 1" in error(post(client, "batch", b'[{"id": "b4"}, 5, {"id": "b6"}]'), 400)
    wait_until(lambda: len(ids(server.root, "batch")) == 3, what="3 batch records")
    time.sleep(0.5)
    assert sorted(ids(server.root, "batch")) == ["b1", "b2", "b3"]


def test_202_rs256_stream(client: httpx.Client) -> None:
    tok = jwt.encode(
        {"tenant": "acme", "stream": "signed", "exp": datetime.now(UTC) + timedelta(hours=1)},
        rsa_key(),
        algorithm="RS256",
    )
    h = {
        "Authorization": f"Bearer {tok}",
        "X-Amperity-Tenant": "acme",
        "Content-Type": "application/json",
    }
    assert (
        client.post("/stream/v0/data/signed", content=b'{"id": "s1"}', headers=h).status_code == 202
    )
    forged = token("signed")  # HS256 with the shared secret: not this stream's algorithm
    h["Authorization"] = f"Bearer {forged}"
    assert "not allowed" in error(
        client.post("/stream/v0/data/signed", content=b"{}", headers=h), 401
    )


# -- 400 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "body", "content_type", "needle"),
    [
        ("events", b'{"id": ', "application/json", "invalid JSON"),
        ("events", b'{"id": "n1"}\n{"id": "n2"}\n', "application/json", "more than one JSON value"),
        ("events", b'{"id": "n1"}\n{"id": "n2"}\n', "application/x-ndjson", "wrong payload type"),
        ("events", b'[{"id": "a1"}]', "application/json", "JSON array"),
        ("events", b'"just a string"', "application/json", "got a string"),
        ("events", b'{"id": "\xff\xfe"}', "application/json", "UTF-8"),
        ("events", b'{"id": "x"}', "application/json; charset=latin-1", "UTF-8"),
        ("events", POS, "application/xml", "wrong payload type"),
        ("events", b"", "application/json", "empty body"),
        ("pos", b'{"id": "j"}', "application/json", "wrong payload type"),
        ("pos", b"<records><record></records>", "application/xml", "not well formed"),
        ("pos", b"<a>\xff\xfe</a>", "application/xml", "not well formed"),
        ("pos", BILLION_LAUGHS, "application/xml", "DOCTYPE"),
        ("pos", EXTERNAL_ENTITY, "application/xml", "DOCTYPE"),
        ("pos", EXTERNAL_DTD, "application/xml", "DOCTYPE"),
        ("pos", b"<a>" * 100 + b"</a>" * 100, "application/xml", "deeper than"),
    ],
)
def test_400(
    client: httpx.Client, stream: str, body: bytes, content_type: str, needle: str
) -> None:
    assert needle in error(post(client, stream, body, content_type), 400)


def test_400_missing_content_type(client: httpx.Client) -> None:
    h = headers("events")
    del h["Content-Type"]
    assert "missing Content-Type" in error(
        client.post("/stream/v0/data/events", content=b"{}", headers=h), 400
    )


def test_nothing_refused_ever_landed(server: Server, client: httpx.Client) -> None:
    assert post(client, "events", b'{"id": "marker"}').status_code == 202
    wait_until(lambda: "marker" in ids(server.root, "events"), what="marker")
    landed = ids(server.root, "events")
    assert not {"n1", "n2", "a1", "x"} & set(landed)
    assert landed_cbor(server.root, "pos") == [xmltodict.parse(POS)] * 2 or not landed_cbor(
        server.root, "pos"
    )


# -- 401 ---------------------------------------------------------------------------------------


def test_401(client: httpx.Client) -> None:
    url = "/stream/v0/data/events"
    good = headers("events")

    def with_(**changes: str | None) -> dict[str, str]:
        h = dict(good)
        for k, v in changes.items():
            k = k.replace("_", "-")
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        return h

    cases = {
        "no token": with_(Authorization=None),
        "not bearer": with_(Authorization=f"Basic {SECRET}"),
        "garbage": with_(Authorization="Bearer not.a.jwt"),
        "alg none": with_(Authorization=f"Bearer {unsigned_token('events')}"),
        "expired": with_(Authorization=f"Bearer {token('events', days=-1)}"),
        "other stream": with_(Authorization=f"Bearer {token('batch')}"),
        "other tenant claim": with_(Authorization=f"Bearer {token('events', tenant='globex')}"),
        "wrong secret": with_(Authorization=f"Bearer {token('events', secret='y' * 40)}"),
        "no tenant header": {k: v for k, v in good.items() if k != "X-Amperity-Tenant"},
        "other tenant header": with_(X_Amperity_Tenant="globex"),
    }
    for case, h in cases.items():
        r = client.post(url, content=b'{"id": "never"}', headers=h)
        assert r.status_code == 401, case
        assert r.headers["www-authenticate"].startswith("Bearer"), case
        assert "error" in r.json(), case
    # a stream of another tenant: its own tenant in token and header works, ours does not
    assert post(client, "globex", b'{"id": "g1"}', tenant="globex").status_code == 202
    assert error(post(client, "globex", b'{"id": "g2"}'), 401)


# -- 404 / 405 ---------------------------------------------------------------------------------


def test_404_and_405(client: httpx.Client) -> None:
    assert "unknown stream" in error(post(client, "nope", b"{}"), 404)
    assert error(client.get("/nothing-here"), 404)
    r = client.get("/stream/v0/data/events")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


# -- 413 ---------------------------------------------------------------------------------------


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(head + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(hdrs.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), hdrs, rest[:length]


def head_for(stream: str, length: int | None, extra: str = "") -> bytes:
    h = headers(stream)
    text = f"POST /stream/v0/data/{stream} HTTP/1.1\r\nHost: x\r\n"
    text += "".join(f"{k}: {v}\r\n" for k, v in h.items())
    if length is not None:
        text += f"Content-Length: {length}\r\n"
    return (text + extra + "\r\n").encode()


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_413_from_content_length_before_reading_a_10mb_body(server: Server) -> None:
    ten_mb = 10 * 1024 * 1024
    started = time.monotonic()
    sock = raw_request(server.port, head_for("events", ten_mb), b"x" * 65536)  # 64 KB of 10 MB
    status, hdrs, body = read_response(sock)
    assert status == 413 and b"limit" in body
    assert hdrs.get("connection") == "close" and closed(sock)
    assert time.monotonic() - started < 5
    sock.close()


def test_413_while_streaming_a_chunked_body(server: Server) -> None:
    sock = raw_request(server.port, head_for("events", None, "Transfer-Encoding: chunked\r\n"))
    chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
    sent = 0
    sock.settimeout(0.01)
    status = None
    while sent < 10 * 1024 * 1024:
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 16384
        try:
            if sock.recv(1, socket.MSG_PEEK):
                break
        except TimeoutError:
            continue
    sock.settimeout(10)
    status, hdrs, body = read_response(sock)
    assert status == 413
    assert sent < 2 * 1024 * 1024  # refused soon after the limit, long before 10 MB
    sock.close()


def test_413_httpx_client(client: httpx.Client) -> None:
    body = b'{"pad": "' + b"x" * (LIMIT + 10) + b'"}'
    try:
        r = post(client, "events", body)
    except httpx.TransportError:
        return  # the server closed before the client finished sending: also a refusal
    assert r.status_code == 413


# -- a body that lies about its length, a slow body ---------------------------------------------


def test_content_length_too_short(server: Server, client: httpx.Client) -> None:
    # Only 10 bytes are the body ('{"id": "li': not JSON); the rest is not an HTTP request.
    # Whichever 400 comes first (ours or the HTTP parser's), nothing lands.
    real = b'{"id": "liar-short", "pad": "xxxxxxxxxxxxxxxx"}'
    sock = raw_request(server.port, head_for("events", 10), real)
    status, _, _ = read_response(sock)
    assert status == 400
    sock.close()
    assert post(client, "events", b'{"id": "after-liar"}').status_code == 202
    wait_until(lambda: "after-liar" in ids(server.root, "events"), what="after-liar")
    assert not any(i and i.startswith("li") for i in ids(server.root, "events"))


def test_content_length_too_long_times_out_408(server: Server, client: httpx.Client) -> None:
    sock = raw_request(server.port, head_for("events", 500), b'{"id": "liar-long"}')
    started = time.monotonic()
    fast = post(client, "events", b'{"id": "meanwhile"}')  # others are served meanwhile
    assert fast.status_code == 202 and time.monotonic() - started < 1.5
    status, hdrs, _ = read_response(sock)
    assert status == 408 and hdrs.get("connection") == "close"
    assert 1.5 <= time.monotonic() - started < 6  # body_timeout = 2 in the test project
    assert closed(sock)
    sock.close()


def test_client_that_hangs_up_mid_body(server: Server, client: httpx.Client) -> None:
    sock = raw_request(server.port, head_for("events", 500), b'{"id": "hangup"')
    sock.close()
    assert post(client, "events", b'{"id": "after-hangup"}').status_code == 202
    wait_until(lambda: "after-hangup" in ids(server.root, "events"), what="after-hangup")
    assert "hangup" not in ids(server.root, "events")


def test_slow_body_within_the_timeout_is_accepted(server: Server, client: httpx.Client) -> None:
    body = b'{"id": "slow", "pad": "' + b"s" * 200 + b'"}'
    sock = raw_request(server.port, head_for("events", len(body)))
    timings: list[float] = []

    def others() -> None:
        for i in range(5):
            t = time.monotonic()
            assert post(client, "events", b'{"id": "quick-%d"}' % i).status_code == 202
            timings.append(time.monotonic() - t)

    thread = threading.Thread(target=others)
    thread.start()
    for i in range(0, len(body), 50):
        sock.sendall(body[i : i + 50])
        time.sleep(0.2)  # ~1 s in all, under body_timeout
    status, _, _ = read_response(sock)
    thread.join()
    assert status == 202
    assert max(timings) < 1.0  # the slow client held nobody up
    wait_until(lambda: "slow" in ids(server.root, "events"), what="the slow payload")
    sock.close()


# -- 429 ---------------------------------------------------------------------------------------


def test_429_with_retry_after(client: httpx.Client) -> None:
    statuses = [post(client, "limited", b'{"id": "r%d"}' % i) for i in range(6)]
    codes = [r.status_code for r in statuses]
    assert codes[:2] == [202, 202] and 429 in codes
    limited = next(r for r in statuses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert "rate limit" in limited.json()["error"]
    time.sleep(1.1)
    assert post(client, "limited", b'{"id": "later"}').status_code == 202


# -- healthz, admin ----------------------------------------------------------------------------


def test_healthz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "problems": []}
    r = client.get("/healthz", headers=ADMIN_HEADERS)  # the detail is for the admin
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "ok" and doc["wal"]["max_bytes"] == 1 << 30
    assert SECRET not in r.text


def test_admin_token_refresh(client: httpx.Client) -> None:
    url = "/api/v0/admin/api-keys/events/tokens"
    expires = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    body = {"expires-at": expires.isoformat().replace("+00:00", "Z")}
    assert error(client.post(url, json=body), 401)
    assert error(client.post(url, json=body, headers={"Authorization": "Bearer wrong"}), 401)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = client.post(url, json=body, headers=admin)
    assert r.status_code == 201, r.text
    doc = r.json()
    claims = jwt.decode(doc["token"], SECRET, algorithms=["HS256"])
    assert claims["stream"] == "events" and claims["tenant"] == "acme"
    assert claims["exp"] == int(expires.timestamp()) and doc["expires-at"] == body["expires-at"]
    h = {
        "Authorization": f"Bearer {doc['token']}",
        "X-Amperity-Tenant": "acme",
        "Content-Type": "application/json",
    }
    assert (
        client.post("/stream/v0/data/events", content=b'{"id": "refreshed"}', headers=h).status_code
        == 202
    )
    assert "unknown" in error(
        client.post("/api/v0/admin/api-keys/nope/tokens", json=body, headers=admin), 404
    )
    past = {"expires-at": "2020-01-01T00:00:00Z"}
    assert "not in the future" in error(client.post(url, json=past, headers=admin), 400)
    assert "ISO 8601" in error(client.post(url, json={"expires-at": "soon"}, headers=admin), 400)
    assert "missing" in error(client.post(url, json={}, headers=admin), 400)
    far = {"expires-at": (datetime.now(UTC) + timedelta(days=400)).isoformat()}
    assert "366 days" in error(client.post(url, json=far, headers=admin), 400)
    # RS256 with a private key configured can be refreshed too
    r = client.post("/api/v0/admin/api-keys/signed/tokens", json=body, headers=admin)
    assert r.status_code == 201
    jwt.decode(r.json()["token"], rsa_key().public_key(), algorithms=["RS256"])


def test_xml_cbor_round_trip_of_many(server: Server, client: httpx.Client) -> None:
    docs = [b"<order n='%d'><line sku='a'/><line sku='b'/></order>" % i for i in range(20)]
    for d in docs:
        assert post(client, "pos", d, "application/xml").status_code == 202
    wait_until(lambda: len(landed_cbor(server.root, "pos")) >= 22, what="22 CBOR items")
    items = landed_cbor(server.root, "pos")
    orders = sorted(int(i["order"]["@n"]) for i in items if "order" in i)
    assert orders == list(range(20))
    assert all(isinstance(i, dict) for i in items)
    assert cbor2.dumps(items[-1])  # plain CBOR, nothing exotic
