"""The ingest API against hostile clients and failing disks, on loopback (issue 13).

Every test runs a real `courier serve`; hostile clients are bounded in number and time and
talk to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import hmac
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ingest.helpers import (
    ADMIN_HEADERS,
    ADMIN_SETTING,
    Server,
    headers,
    landed_json,
    make_project,
    serving,
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


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_project(
        tmp_path_factory.mktemp("hardening") / "project",
        "[ingest]\nroll_seconds = 0.3\nbody_timeout = 2\n" + ADMIN_SETTING,
        HARD_STREAMS,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T_GITHUB_SECRET", GITHUB_SECRET)
        server = Server(root).start()
    try:
        yield server
    finally:
        assert server.stop() == 0


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
