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


def test_staged_rows_of_the_engine_stream_at_the_commit_and_a_half_read_stream_is_let_go() -> None:
    """Rows on the stage's own connection are not copied: the load holds them and `arrow`
    streams the cast and dedupe. A writer that stops half way (a failed Delta write) leaves
    no open result behind: abort() closes it and the connection takes statements again.
    While a writer streams, DuckDB keeps half its memory limit; the limit comes back."""
    from courier.destinations.duckdb import StagingDestination, limit_bytes
    from courier.engines.duckdb import DuckDBRows
    from tests.destinations.contract import EVENTS, ctx

    con = connect(":memory:", "1GB")
    con.execute(
        "CREATE TEMP TABLE q AS SELECT 'e' || (i % 300000) AS name, i AS n FROM range(400000) t(i)"
    )
    rows = DuckDBRows(con, "q", {"name": "VARCHAR", "n": "BIGINT"}, 400_000)
    stage = StagingDestination(con, owns_connection=False, memory_limit="1GB")
    stage.begin(ctx("r1"))
    stage.ensure_table(EVENTS)
    result = stage.load(EVENTS, rows)
    assert result.holds_rows and result.counts.loaded == 400_000
    assert stage.row_count("events") == 0  # nothing copied into the stage table

    def limit() -> str:
        return str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])  # type: ignore[index]

    with stage.writing():
        assert limit_bytes(limit()) == pytest.approx(0.5e9, rel=0.01)
        reader = stage.arrow("events")
        first = reader.read_next_batch()
        assert 0 < first.num_rows < 400_000  # a stream, read half way
    assert limit() == "953.6 MiB"
    streamed = stage.arrow("events").read_all()  # the earlier stream let go of: a new one
    assert streamed.num_rows == 400_000
    assert streamed.column_names == ["name", "n", "_courier_run_id", "_courier_loaded_at"]
    stage.arrow("events").read_next_batch()
    stage.abort()
    assert con.execute("SELECT count(*) FROM q").fetchone() == (400_000,)
    assert limit_bytes("953.6 MiB") == int(953.6 * 2**20) and limit_bytes("80%") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1GB", 10**9), ("512 mb", 512 * 10**6), ("1.5GiB", int(1.5 * 2**30)), ("100", 100)],
)
def test_memory_limits_in_bytes(text: str, expected: int) -> None:
    from courier.destinations.duckdb import limit_bytes

    assert limit_bytes(text) == expected
