"""The DuckDB state store against the state contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courier.engines.duckdb import connect
from courier.state.duckdb import DuckDBStateStore
from tests.state.contract import StateContract


class TestDuckDBState(StateContract):
    @pytest.fixture
    def state(self, tmp_path: Path) -> Iterator[DuckDBStateStore]:
        con = connect(tmp_path / "feeds.duckdb")
        yield DuckDBStateStore(con)
        con.close()
