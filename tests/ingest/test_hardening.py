"""The ingest API against hostile clients and failing disks, on loopback (issue 13).

Every test runs a real `courier serve`; hostile clients are bounded in number and time and
talk to 127.0.0.1 only.
"""

from __future__ import annotations

import resource
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
