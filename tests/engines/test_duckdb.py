"""The DuckDB engine against the engine contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courier.engines.duckdb import DuckDBEngine, connect
from tests.engines.contract import EngineContract


class TestDuckDBEngine(EngineContract):
    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[DuckDBEngine]:
        con = connect(":memory:")
        engine = DuckDBEngine(con, tmp_path / "scratch")
        yield engine
        engine.close()
        con.close()
        assert not any((tmp_path / "scratch").glob("*/*"))  # staged files are gone
