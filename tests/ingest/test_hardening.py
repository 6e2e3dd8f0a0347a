"""The ingest API against hostile clients and failing disks, on loopback (issue 13).

Every test runs a real `courier serve`; hostile clients are bounded in number and time and
talk to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from courier.ingest.apikeys import FAILURES, MAX_DERIVING
from tests.ingest.helpers import (
    ADMIN_HEADERS,
    ADMIN_SETTING,
    Server,
    headers,
    landed_json,
    make_project,
    serving,
    token,
    wait_until,
)

pytestmark = pytest.mark.integration


def _post(client: httpx.Client, stream: str, body: bytes) -> httpx.Response:
    return client.post(f"/stream/v0/data/{stream}", content=body, headers=headers(stream))


# -- /healthz ---------------------------------------------------------------------------------


def test_healthz_shows_no_paths_or_pids_without_the_admin_token(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    with serving(root) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        anonymous = client.get("/healthz")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "ok", "problems": []}
        assert str(tmp_path) not in anonymous.text and "pid" not in anonymous.text
        wrong = client.get("/healthz", headers={"Authorization": "Bearer not-the-admin-token"})
        assert wrong.json() == {"status": "ok", "problems": []}
        admin = client.get("/healthz", headers=ADMIN_HEADERS).json()
        assert admin["status"] == "ok" and admin["pid"] == server.proc.pid  # type: ignore[union-attr]
        assert admin["wal"]["dir"].startswith(str(tmp_path))


def test_healthz_says_unavailable_while_the_disk_refuses_writes_and_ok_once_it_takes_them(
    tmp_path: Path,
) -> None:
    """A disk that refuses writes (here: the server's file size limit, a real kernel refusal
    of every write past 128 KB) makes /healthz 503 with the reason; once the disk takes
    writes again /healthz says ok by itself (no payload needed to find out) and POSTs land."""
    root = make_project(tmp_path, "[ingest]\nroll_seconds = 0.3\n" + ADMIN_SETTING)
    limit = 128 << 10
    server = Server(root, limits={resource.RLIMIT_FSIZE: (limit, resource.RLIM_INFINITY)})
    with httpx.Client(base_url=server.start().url, timeout=10) as client:
        try:
            big = b'{"id": "big", "pad": "' + b"x" * (200 << 10) + b'"}'
            refused = _post(client, "events", big)
            assert refused.status_code == 503, refused.text
            assert "retry-after" in refused.headers
            health = client.get("/healthz")
            assert health.status_code == 503, health.text
            assert health.json()["status"] == "unavailable"
            assert any("disk" in p for p in health.json()["problems"])
            assert str(tmp_path) not in health.text
            # the disk is fixed
            resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (-1, -1))  # type: ignore[union-attr]
            wait_until(lambda: client.get("/healthz").status_code == 200, 20, "healthz to recover")
            assert client.get("/healthz", headers=ADMIN_HEADERS).json()["fault"] is None
            assert _post(client, "events", big).status_code == 202
            wait_until(lambda: landed_json(root, "events"), 20, "the payload to land")
            assert [r["id"] for r in landed_json(root, "events")] == ["big"]
        finally:
            assert server.stop() == 0


def test_healthz_upload_status_is_never_half_updated(tmp_path: Path) -> None:
    """failing_since and last_error change together (one snapshot): polled through an outage
    and its end, a reader never sees one without the other."""
    root = make_project(tmp_path, "[ingest]\nroll_seconds = 0.1\n" + ADMIN_SETTING)
    blocker = root / ".courier" / "landing"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the landing folder belongs: storage is down")
    seen: list[tuple[bool, bool]] = []
    with serving(root) as server, httpx.Client(base_url=server.url, timeout=10) as client:

        def uploads() -> dict[str, object]:
            doc = client.get("/healthz", headers=ADMIN_HEADERS).json()["uploads"]
            seen.append((doc["failing_since"] is None, doc["last_error"] is None))
            return doc

        for i in range(5):
            assert _post(client, "events", b'{"id": %d}' % i).status_code == 202
        wait_until(lambda: uploads()["failing_since"], 20, "the outage to show")
        blocker.unlink()
        wait_until(lambda: uploads()["backlog"] == 0, 40, "the backlog to land")
        assert uploads()["failing_since"] is None
    assert all(a == b for a, b in seen), f"half-updated upload status seen: {seen}"
    assert sorted(r["id"] for r in landed_json(root, "events")) == list(range(5))


# -- credentials before the rate limit, NumericDate -------------------------------------------

GITHUB_SECRET = "gh-secret-for-hardening-tests"
HARD_STREAMS = {
    "events": 'payload = "json"\n',
    "limited": 'payload = "json"\nrate_limit = 2\n',
    "hooks": 'payload = "json"\nrate_limit = 2\n[webhook]\npreset = "github"\n'
    'secret = "${T_GITHUB_SECRET}"\n',
}


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _serve_hard_streams(root: Path, settings: str) -> Iterator[Server]:
    """A server of HARD_STREAMS (the webhook secret in its environment) for a module."""
    make_project(root, settings, HARD_STREAMS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T_GITHUB_SECRET", GITHUB_SECRET)
        server = Server(root).start()
    try:
        yield server
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve_hard_streams(
        tmp_path_factory.mktemp("hardening") / "project",
        "[ingest]\nroll_seconds = 0.3\nbody_timeout = 2\n" + ADMIN_SETTING,
    )


def test_forged_webhooks_do_not_spend_the_rate_limit(hard: Server) -> None:
    """20 deliveries with wrong signatures on a stream limited to 2 payloads/s, then 2 signed
    ones: both signed deliveries are accepted (a sender that does not retry loses nothing)."""
    with httpx.Client(base_url=hard.url, timeout=10) as client:
        for i in range(20):
            body = b'{"id": "forged-%d"}' % i
            r = client.post(
                "/webhook/v0/hooks",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": github_signature(body, "not-the-secret"),
                },
            )
            assert r.status_code == 401, r.text
        for i in range(2):
            body = b'{"id": "signed-%d"}' % i
            r = client.post(
                "/webhook/v0/hooks",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": github_signature(body),
                },
            )
            assert r.status_code == 202, r.text


def test_bad_tokens_do_not_spend_the_rate_limit(hard: Server) -> None:
    with httpx.Client(base_url=hard.url, timeout=10) as client:
        for i in range(20):
            r = client.post(
                "/stream/v0/data/limited",
                content=b'{"id": %d}' % i,
                headers=headers("limited", secret="another-secret-0123456789abcdef-xx"),
            )
            assert r.status_code == 401, r.text
        for i in range(2):
            assert _post(client, "limited", b'{"id": %d}' % i).status_code == 202


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_token_times_must_be_numbers_not_strings(hard: Server, claim: str) -> None:
    """RFC 7519 NumericDate: "exp": "9999999999" (a string) is refused, as is true."""
    later = str(int(time.time()) + 86400)
    now = str(int(time.time()) - 10)
    value = later if claim == "exp" else now
    with httpx.Client(base_url=hard.url, timeout=10) as client:
        for bad in (value, True):
            r = client.post(
                "/stream/v0/data/events",
                content=b'{"id": "string-time"}',
                headers=headers("events", **{claim: bad}),
            )
            assert r.status_code == 401, r.text
            if bad == value:  # (exp = true is also read as 1970: expired)
                assert claim in r.json()["error"] and "number" in r.json()["error"]
        r = client.post(
            "/stream/v0/data/events",
            content=b'{"id": "number-time"}',
            headers=headers("events", **{claim: int(value)}),
        )
        assert r.status_code == 202, r.text


# -- API-key secrets --------------------------------------------------------------------------


def _client(server: Server, source: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from `source` (any 127/8 address is loopback)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, timeout=30, transport=transport)


def _key_post(client: httpx.Client, key_id: str, secret: str) -> httpx.Response:
    return client.post(
        "/stream/v0/data/events",
        content=b'{"id": "by-key"}',
        headers={"Content-Type": "application/json", "X-App-Id": key_id, "X-App-Secret": secret},
    )


def test_wrong_api_key_secrets_are_throttled_per_key_and_per_address(hard: Server) -> None:
    from tests.ingest.test_apikeys import create

    key = create(hard.root, "target", "events")
    with _client(hard, "127.0.0.3") as attacker, _client(hard, "127.0.0.4") as other:
        for _ in range(5):
            assert _key_post(attacker, key["id"], "wrong").status_code == 401
        throttled = _key_post(attacker, key["id"], "wrong")
        assert throttled.status_code == 429, throttled.text
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert "API key" in throttled.json()["error"]
        # the key is throttled from every address; the secret is never echoed
        r = _key_post(other, key["id"], "wrong-again")
        assert r.status_code == 429 and "wrong-again" not in r.text
    others = [create(hard.root, f"spare-{i}", "events") for i in range(6)]
    with _client(hard, "127.0.0.5") as sprayer, _client(hard, "127.0.0.6") as honest:
        for spare in others[:5]:  # one wrong secret each for five keys: the address is counted
            assert _key_post(sprayer, spare["id"], "wrong").status_code == 401
        r = _key_post(sprayer, others[5]["id"], "wrong")
        assert r.status_code == 429 and "client address" in r.json()["error"]
        # another address with the right secret of an untouched key is served
        assert _key_post(honest, others[5]["id"], others[5]["secret"]).status_code == 202


def test_wrong_api_key_secrets_do_not_stall_the_event_loop(hard: Server) -> None:
    """16 clients hammer a known key id with wrong secrets (each a ~150 ms scrypt) while a
    stream-token client posts: its requests stay fast (scrypt runs off the event loop, and
    the key is throttled after a few failures)."""
    from tests.ingest.test_apikeys import create

    key = create(hard.root, "hammered", "events")
    stop = threading.Event()
    statuses: list[int] = []

    def attack(n: int) -> None:
        with _client(hard, f"127.0.1.{n}") as client:
            for _ in range(10):
                if stop.is_set():
                    return
                statuses.append(_key_post(client, key["id"], f"wrong-{n}").status_code)

    attackers = [threading.Thread(target=attack, args=(n,)) for n in range(1, 17)]
    for t in attackers:
        t.start()
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=hard.url, timeout=30) as client:
            for i in range(30):
                started = time.monotonic()
                r = _post(client, "events", b'{"id": "honest-%d"}' % i)
                latencies.append(time.monotonic() - started)
                assert r.status_code == 202, r.text
    finally:
        stop.set()
        for t in attackers:
            t.join(60)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5, latencies
    # 401s are the secrets actually derived: a few before the key is throttled (429), more
    # only while earlier ones were still running (at most MAX_DERIVING); the rest 429 or 503
    assert set(statuses) <= {401, 429, 503}, statuses
    assert statuses.count(401) <= FAILURES + MAX_DERIVING, statuses


# -- connections: idle, slow, oversized, too many ---------------------------------------------

CONN_SETTINGS = (
    "[ingest]\nroll_seconds = 0.3\nbody_timeout = 2\nheader_timeout = 1\n"
    "keepalive_timeout = 1\n" + ADMIN_SETTING
)


def _open(server: Server, n: int, source: str = "127.0.0.1") -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(
            ("127.0.0.1", server.port), timeout=10, source_address=(source, 0)
        )
        socks.append(s)
    return socks


def _answer(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends before it closes the connection (b"" if it only closes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {timeout} s") from None
    except ConnectionResetError:
        pass
    return data


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve_hard_streams(
        tmp_path_factory.mktemp("connections") / "project", CONN_SETTINGS
    )


def test_idle_and_slowloris_connections_are_cut_with_408(guarded: Server) -> None:
    """200 connections that send nothing (from 4 addresses, under the per-address limit) and
    20 that drip their headers a byte at a time are answered 408 and closed once
    header_timeout (1 s) has passed."""
    idle = [s for n in range(1, 5) for s in _open(guarded, 50, f"127.0.5.{n}")]
    drip = _open(guarded, 20)
    try:
        started = time.monotonic()
        request = b"POST /stream/v0/data/events HTTP/1.1\r\nHost: x\r\nX-Slow: "
        for s in drip:
            s.sendall(request)
        for _ in range(3):  # a byte each, 0.3 s apart: never a complete header
            time.sleep(0.3)
            for s in drip:
                with contextlib.suppress(OSError):
                    s.sendall(b"a")
        for s in idle + drip:
            assert _status(_answer(s, 15)) == 408
        assert time.monotonic() - started < 15
    finally:
        for s in idle + drip:
            s.close()


def test_header_size_and_count_are_bounded_with_431(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        big = client.post(
            "/stream/v0/data/events",
            content=b'{"id": 1}',
            headers={**headers("events"), "X-Big": "b" * (20 << 10)},
        )
        assert big.status_code == 431, big.text
        many = client.post(
            "/stream/v0/data/events",
            content=b'{"id": 1}',
            headers={**headers("events"), **{f"X-H{i}": "v" for i in range(150)}},
        )
        assert many.status_code == 431, many.text
        assert _post(client, "events", b'{"id": "after-431"}').status_code == 202
    # one header that never ends, sent in pieces: cut at the limit, not buffered forever
    [s] = _open(guarded, 1)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        with contextlib.suppress(OSError):
            for _ in range(64):
                s.sendall(b"e" * 1024)
        assert _status(_answer(s, 10)) == 431
    finally:
        s.close()


def test_idle_keep_alive_connections_close_after_keepalive_timeout(guarded: Server) -> None:
    [s] = _open(guarded, 1)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        first = s.recv(65536)
        while not first.endswith(b"}"):  # the body may come in a second write
            first += s.recv(65536)
        assert _status(first) == 200
        started = time.monotonic()
        assert _answer(s, 10) == b""  # closed without a word
        assert time.monotonic() - started < 4  # keepalive_timeout = 1 (uvicorn's default: 5)
    finally:
        s.close()


def test_honest_clients_are_served_during_idle_slow_and_forged_floods(guarded: Server) -> None:
    """300 idle connections, 20 drip-feeding ones and 4 threads of forged webhooks against a
    rate-limited stream: a signed sender and a token client still get their 202s, each
    within 2 s."""
    idle = _open(guarded, 300, "127.0.3.1")
    stop = threading.Event()

    def forge(n: int) -> None:
        with _client(guarded, f"127.0.4.{n}") as client:
            while not stop.is_set():
                body = b'{"id": "forged"}'
                client.post(
                    "/webhook/v0/hooks",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": github_signature(body, "wrong"),
                    },
                )

    forgers = [threading.Thread(target=forge, args=(n,)) for n in range(1, 5)]
    for t in forgers:
        t.start()
    slowest = 0.0
    try:
        with httpx.Client(base_url=guarded.url, timeout=30) as client:
            for i in range(6):
                for stream in ("hooks", "events"):
                    body = b'{"id": "honest-%d"}' % i
                    hdrs = (
                        {
                            "Content-Type": "application/json",
                            "X-Hub-Signature-256": github_signature(body),
                        }
                        if stream == "hooks"
                        else headers("events")
                    )
                    path = "/webhook/v0/hooks" if stream == "hooks" else "/stream/v0/data/events"
                    started = time.monotonic()
                    r = client.post(path, content=body, headers=hdrs)
                    slowest = max(slowest, time.monotonic() - started)
                    assert r.status_code == 202, r.text
                time.sleep(0.5)  # within the hooks stream's 2 payloads/s
    finally:
        stop.set()
        for t in forgers:
            t.join(30)
        for s in idle:
            s.close()
    assert slowest < 2.0, slowest


def test_one_address_cannot_take_every_connection_slot(tmp_path: Path) -> None:
    """max_connections = 40, max_connections_per_client = 10: an address holding 10 idle
    connections gets 503 at once for an 11th (a websocket counts too), while other addresses
    are still served; once its connections close, it is served again."""
    root = make_project(
        tmp_path,
        CONN_SETTINGS.replace("header_timeout = 1", "header_timeout = 60")
        + "max_connections = 40\nmax_connections_per_client = 10\n",
        {"events": 'payload = "json"\n'},
    )
    server = Server(root).start()
    hog: list[socket.socket] = []
    try:
        hog = _open(server, 10, "127.0.6.1")
        wait_until(lambda: _healthz_ok(server), 30, "/healthz with 10 idle connections")
        [extra] = _open(server, 1, "127.0.6.1")
        answer = _answer(extra, 15)
        extra.close()
        assert _status(answer) == 503 and b"127.0.6.1" in answer, answer
        # other addresses: served while the hog keeps its 10 (header_timeout is 60 s)
        for n in range(2, 5):
            with _client(server, f"127.0.6.{n}") as client:
                assert client.get("/healthz").status_code == 200
                assert _post(client, "events", b'{"id": %d}' % n).status_code == 202
        # a websocket holds a slot as well: 9 idle + 1 websocket, then one more is refused
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        hog.pop().close()
        url = f"ws://127.0.0.1:{server.port}/stream/v0/ws/events"
        auth = {"Authorization": f"Bearer {token('events')}", "X-Amperity-Tenant": "acme"}

        opened: list[Any] = []

        def ws_from_hog() -> bool:
            """A websocket from 127.0.6.1 (refused 503 while the freed slot is still taken
            by a connection the server has not seen close yet)."""
            sock = socket.create_connection(
                ("127.0.0.1", server.port), timeout=10, source_address=("127.0.6.1", 0)
            )
            try:
                opened.append(connect(url, sock=sock, additional_headers=auth, open_timeout=10))
            except InvalidStatus as exc:
                sock.close()
                assert exc.response.status_code == 503
                return False
            return True

        wait_until(ws_from_hog, 30, "a websocket in the freed slot of 127.0.6.1")
        with opened[0] as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            [extra] = _open(server, 1, "127.0.6.1")
            assert _status(_answer(extra, 15)) == 503
            extra.close()
        for s in hog:
            s.close()
        hog = []
        wait_until(lambda: _from_hog_served(server), 30, "127.0.6.1 to be served again")
    finally:
        for s in hog:
            s.close()
        assert server.stop() == 0


def _from_hog_served(server: Server) -> bool:
    """One request from 127.0.6.1 on a connection of its own is served (not 503)."""
    with _client(server, "127.0.6.1") as client:
        try:
            return client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False


def test_more_connections_than_file_descriptors_keep_healthz_reachable(tmp_path: Path) -> None:
    """With a file limit of 256, 300 idle connections: the ones over the connection limit get
    503 at once, the rest 408 after header_timeout, and /healthz answers within seconds."""
    root = make_project(tmp_path, CONN_SETTINGS, {"events": 'payload = "json"\n'})
    server = Server(root, limits={resource.RLIMIT_NOFILE: (256, 256)}).start()
    idle: list[socket.socket] = []
    try:
        idle = _open(server, 300)
        started = time.monotonic()
        wait_until(lambda: _healthz_ok(server), 15, "/healthz to answer with 300 idle connections")
        assert time.monotonic() - started < 15
        statuses = {_status(_answer(s, 15)) for s in idle}
        assert statuses <= {408, 503} and 503 in statuses, statuses
    finally:
        for s in idle:
            s.close()
        assert server.stop() == 0


def _healthz_ok(server: Server) -> bool:
    try:
        return httpx.get(server.url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- revoking stream tokens -------------------------------------------------------------------


def test_a_revoked_stream_token_is_refused_at_once_and_others_still_work(hard: Server) -> None:
    from tests.ingest.test_apikeys import courier

    made = [courier(hard.root, "token", "create", "--stream", "events") for _ in range(2)]
    leaked, kept = (m.stdout.strip() for m in made)
    auth = {"X-Amperity-Tenant": "acme", "Content-Type": "application/json"}

    def post(tok: str) -> httpx.Response:
        return httpx.post(
            hard.url + "/stream/v0/data/events",
            content=b'{"id": "rev"}',
            headers={**auth, "Authorization": f"Bearer {tok}"},
            timeout=10,
        )

    assert post(leaked).status_code == 202 and post(kept).status_code == 202  # both cached
    done = courier(hard.root, "token", "revoke", leaked)
    assert done.returncode == 0, done.stderr
    refused = post(leaked)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert post(kept).status_code == 202
    # by id, for a token no longer at hand
    jti = jwt.decode(kept, options={"verify_signature": False})["jti"]
    done = courier(hard.root, "token", "revoke", "--stream", "events", "--jti", jti)
    assert done.returncode == 0, done.stderr
    assert post(kept).status_code == 401
    # a token without a jti cannot be revoked alone: the message says what to do instead
    bare = courier(hard.root, "token", "revoke", token("events"))
    assert bare.returncode == 1 and "rotate" in bare.stderr


def test_an_open_websocket_of_a_revoked_stream_token_is_closed(hard: Server) -> None:
    """A websocket authenticated with a token that is then revoked gets the 401's reason and
    close code 1008 (after the acks of what it sent before), without sending anything more;
    a connection with another token of the same stream keeps working."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.ingest.test_apikeys import courier

    made = [courier(hard.root, "token", "create", "--stream", "events") for _ in range(2)]
    leaked, kept = (m.stdout.strip() for m in made)
    url = f"ws://127.0.0.1:{hard.port}/stream/v0/ws/events"

    def open_ws(tok: str) -> Any:
        auth = {"Authorization": f"Bearer {tok}", "X-Amperity-Tenant": "acme"}
        ws = connect(url, additional_headers=auth, open_timeout=10)
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        return ws

    with open_ws(leaked) as bad, open_ws(kept) as good:
        for ws in (bad, good):
            ws.send(b'{"id": "ws-before-revoke"}'.decode())
            assert json.loads(ws.recv(timeout=10)) == {"ack": 1}
        done = courier(hard.root, "token", "revoke", leaked)
        assert done.returncode == 0, done.stderr
        # the revoked one is closed by the server within a few seconds, unprompted
        error = json.loads(bad.recv(timeout=30))
        assert error["status"] == 401 and "revoked" in error["error"], error
        with pytest.raises(ConnectionClosed) as closed:
            bad.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        good.send(b'{"id": "ws-after-revoke"}'.decode())
        assert json.loads(good.recv(timeout=10)) == {"ack": 2}


# -- webhook deliveries -----------------------------------------------------------------------


def test_a_replayed_github_delivery_lands_once_even_across_a_crash(tmp_path: Path) -> None:
    """GitHub's X-GitHub-Delivery: a captured, correctly signed delivery replayed (before and
    after a kill -9 of the server) answers 200 duplicate and lands nothing more; a forged one
    with the same id does not block the real one."""
    root = make_project(
        tmp_path,
        "[ingest]\nroll_seconds = 0.3\n" + ADMIN_SETTING,
        {"gh": 'payload = "json"\n[webhook]\npreset = "github"\nsecret = "${T_GITHUB_SECRET}"\n'},
    )

    def deliver(
        client: httpx.Client, body: bytes, delivery: str | None, secret: str = GITHUB_SECRET
    ) -> httpx.Response:
        hdrs = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": github_signature(body, secret),
        }
        if delivery is not None:
            hdrs["X-GitHub-Delivery"] = delivery
        return client.post("/webhook/v0/gh", content=body, headers=hdrs)

    first = b'{"id": "push-1"}'
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T_GITHUB_SECRET", GITHUB_SECRET)
        server = Server(root).start()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            forged = deliver(client, first, "d-1", secret="wrong")
            assert forged.status_code == 401
            assert deliver(client, first, "d-1").status_code == 202
            for _ in range(3):
                replay = deliver(client, first, "d-1")
                assert replay.status_code == 200, replay.text
                assert replay.json() == {"status": "duplicate", "delivery": "d-1"}
            assert deliver(client, b'{"id": "push-2"}', "d-2").status_code == 202
            # no delivery id: nothing to deduplicate by, both land
            assert deliver(client, b'{"id": "plain"}', None).status_code == 202
            assert deliver(client, b'{"id": "plain"}', None).status_code == 202
        server.kill()  # kill -9: the delivery ids must have been on disk before the 202
        server = Server(root, port=server.port).start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                assert deliver(client, first, "d-1").status_code == 200
                assert deliver(client, b'{"id": "push-3"}', "d-3").status_code == 202
        finally:
            assert server.stop() == 0
    ids = sorted(r["id"] for r in landed_json(root, "gh"))
    assert ids == ["plain", "plain", "push-1", "push-2", "push-3"]


def test_api_key_token_times_must_be_numbers_too(hard: Server) -> None:
    from tests.ingest.helpers import SECRET
    from tests.ingest.test_apikeys import create

    key = create(hard.root, "times", "events")
    later = int(time.time()) + 3600
    with httpx.Client(base_url=hard.url, timeout=10) as client:
        for exp, status in ((str(later), 401), (later, 202)):
            tok = jwt.encode({"key": key["id"], "streams": ["events"], "exp": exp}, SECRET)
            r = client.post(
                "/stream/v0/data/events",
                content=b'{"id": "key-time"}',
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {tok}"},
            )
            assert r.status_code == status, r.text
