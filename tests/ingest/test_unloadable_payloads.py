"""Payloads the load path could not read (formats/limits.py) are refused by `courier serve`
with a 400 that says why, never a 500, and nothing of them lands."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.ingest.helpers import Server, headers, landed_json, make_project, wait_until

pytestmark = pytest.mark.integration


def deep(levels: int, digits: bool = False) -> bytes:
    """A JSON object holding arrays nested `levels` deep in all."""
    inner = b"123456789012345678901234567890" if digits else b"1"
    return b'{"id": "d", "d": ' + b"[" * (levels - 1) + inner + b"]" * (levels - 1) + b"}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(make_project(tmp_path_factory.mktemp("ingest") / "project")).start()
    try:
        yield srv
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize(
    ("stream", "body", "content_type", "needle"),
    [
        ("events", deep(129), "application/json", "nested deeper than 127"),
        ("events", deep(1000), "application/json", "nested deeper than 127"),
        ("events", deep(1000, digits=True), "application/json", "nested deeper than 127"),
        (
            "events",
            b'{"id": 1, "c": {"id": 1, "ID": 2}}',
            "application/json",
            "differ only in case",
        ),
        ("events", b'{"id": 1, "Id": 2}', "application/json", "differ only in case"),
        ("events", b'{"": 1}', "application/json", "empty key"),
        ("events", b'{"id": 1, "_courier_file": "x"}', "application/json", "reserved"),
        ("batch", b'[{"id": 1}, {"id": 2, "c": {"a": 1, "A": 2}}]', "application/json", "case"),
        (
            "pos",
            b"<r><customer><id>1</id><ID>2</ID></customer></r>",
            "application/xml",
            "differ only in case",
        ),
    ],
    ids=["129", "1000", "1000-bigint", "case", "case-top", "empty", "reserved", "batch", "xml"],
)
def test_an_unloadable_payload_is_a_400_saying_why(
    server: Server, stream: str, body: bytes, content_type: str, needle: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(
            f"/stream/v0/data/{stream}", content=body, headers=headers(stream, content_type)
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert needle in error and "cannot be loaded" in error, error
        # the stream still takes good payloads, and only they land
        ok = client.post(
            "/stream/v0/data/events", content=b'{"id": "after"}', headers=headers("events")
        )
        assert ok.status_code == 202, ok.text
    wait_until(lambda: any(r.get("id") == "after" for r in landed_json(server.root, "events")))
    assert all(r.get("id") in ("after",) for r in landed_json(server.root, "events"))


def test_the_deepest_loadable_payload_is_accepted(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(
            "/stream/v0/data/batch", content=b"[" + deep(127) + b"]", headers=headers("batch")
        )
    assert response.status_code == 202, response.text
