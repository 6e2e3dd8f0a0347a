"""courier.processes: `courier serve` started, waited for and stopped for real on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from courier.processes import ChildProcess, ProcessError, start_serve
from tests.ingest.helpers import environment, headers, landed_json, make_project

pytestmark = pytest.mark.integration


def test_start_serve_answers_then_sigterm_lands_what_it_accepted(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", streams={"events": 'payload = "json"\n'})
    server = start_serve(root, tmp_path / "serve.log", environment())
    try:
        r = httpx.post(
            server.url + "/stream/v0/data/events",
            content=b'{"id": "p-1"}',
            headers=headers("events"),
        )
        assert r.status_code == 202, r.text
    finally:
        code = server.stop()
    assert code == 0
    assert landed_json(root, "events") == [{"id": "p-1"}]


def test_a_child_that_exits_while_starting_is_named_with_its_log(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('no such config'); sys.exit(3)"]
    child = ChildProcess("the failing child", cmd, tmp_path / "child.log", {})
    with pytest.raises(ProcessError) as err:
        child.wait_http("http://127.0.0.1:9/healthz", timeout=30)
    assert "the failing child exited with 3 while starting" in str(err.value)
    assert "no such config" in str(err.value)


def test_a_child_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    child = ChildProcess("the silent child", cmd, tmp_path / "child.log", {})
    with pytest.raises(ProcessError, match="did not answer .* within 1s"):
        child.wait_http("http://127.0.0.1:9/healthz", timeout=1)
    assert child.stop(timeout=5) != 0  # SIGTERM ends it
