"""The DuckDB destination against the destination contract (rows arriving as Arrow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courier.destinations.duckdb import DuckDBDestination
from courier.engines.duckdb import connect
from tests.destinations.contract import DestinationContract, Open


class TestDuckDBDestination(DestinationContract):
    @pytest.fixture
    def destination(self, tmp_path: Path) -> Iterator[Open]:
        con = connect(tmp_path / "feeds.duckdb")
        yield lambda: DuckDBDestination(con)
        con.close()
