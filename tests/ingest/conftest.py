"""A server a failing test left running is killed when the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ingest.helpers import RUNNING


@pytest.fixture(autouse=True)
def _no_leftover_servers() -> Iterator[None]:
    before = set(map(id, RUNNING))
    yield
    for server in [s for s in RUNNING if id(s) not in before]:
        server.kill()
        RUNNING.remove(server)
