"""Steady state (issue 16): a courier with a pinned schema checks new files against a small
sample of each instead of the full detection sample, and finds keys first seen late by one pass
over every record; whatever the fast path skips, the guarantees hold."""

from __future__ import annotations

from typing import Any

import pytest

from courier.engines import duckdb as engine
from tests.projects import ProjectFactory
from tests.test_run import wide_project

FILES = 24  # like a day of hourly files
PER_FILE = 300  # more than the steady sample of each file


def spy_detection(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(files, records per file) of every schema detection the runs ask DuckDB for."""
    calls: list[tuple[int, int]] = []
    real = engine.DuckDBEngine._detect

    def detect(self: Any, paths: list[str], per_file: int) -> dict[str, str]:
        calls.append((len(paths), per_file))
        return real(self, paths, per_file)

    monkeypatch.setattr(engine.DuckDBEngine, "_detect", detect)
    return calls


def land_day(p: ProjectFactory, day: str, last: list[dict[str, Any]] | None = None) -> None:
    for n in range(FILES):
        first = (1_000_000 if day.endswith("23") else 0) + n * PER_FILE
        records = [{"id": first + i, "amount": i} for i in range(PER_FILE)]
        if n == FILES - 1 and last is not None:
            records = last
        p.land(f"wide/{day.replace('-', '/')}/part-{n:02d}.ndjson", records)


@pytest.mark.parametrize("query", [None, "SELECT * FROM wide"], ids=["held", "streamed"])
def test_a_key_in_one_record_of_the_last_file_is_loaded(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, query: str | None
) -> None:
    p = wide_project(make_project, query, id="bigint", amount="bigint", coupon="string")
    land_day(p, "2026-11-22")
    assert p.run("wide")["status"] == "succeeded"  # pins {id, amount}
    last = [{"id": 10_000 + i, "amount": i} for i in range(PER_FILE)]
    last[PER_FILE // 2]["coupon"] = "WINTER26"  # past the steady sample of the file
    land_day(p, "2026-11-23", last)
    calls = spy_detection(monkeypatch)
    result = p.run("wide", day="2026-11-23")
    assert result["status"] == "succeeded", result["error"]
    assert result["schema_changes"] == ["new field coupon (VARCHAR)"]
    assert p.sql("SELECT id, coupon FROM wide WHERE coupon IS NOT NULL") == [
        (10_000 + PER_FILE // 2, "WINTER26")
    ]
    assert p.sql("SELECT count(*) FROM wide")[0][0] == 2 * FILES * PER_FILE
    # the fast path: the pinned schema checked on a small sample of each file, and the new
    # key's type detected over the one file holding it
    assert calls[0] == (FILES, engine.STEADY_SAMPLE_PER_FILE)
    if query is not None:  # the streamed tag knows which file holds it
        assert calls[1:] == [(1, -1)]


@pytest.mark.parametrize("query", [None, "SELECT * FROM wide"], ids=["held", "streamed"])
def test_a_new_file_contradicting_the_pinned_schema_widens_it(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, query: str | None
) -> None:
    p = wide_project(make_project, query, id="bigint", amount="string")
    land_day(p, "2026-11-22")
    assert p.run("wide")["status"] == "succeeded"  # pins amount BIGINT
    # one new file holds fractional amounts: rounding them into the pinned BIGINT would lose
    # data, so the file's shape must widen the schema (BIGINT -> DOUBLE), not be read as pinned
    last = [{"id": 10_000 + i, "amount": i + 0.5} for i in range(PER_FILE)]
    land_day(p, "2026-11-23", last)
    calls = spy_detection(monkeypatch)
    result = p.run("wide", day="2026-11-23")
    assert result["status"] == "succeeded", result["error"]
    assert result["schema_changes"] == ["field amount changed type BIGINT -> DOUBLE"]
    assert p.sql("SELECT amount FROM wide WHERE id = 10007") == [("7.5",)]
    # the other files of the day, and the earlier day, keep their values (read as DOUBLE now)
    assert p.sql("SELECT amount FROM wide WHERE id IN (7, 1000007) ORDER BY id") == [
        ("7",),
        ("7.0",),
    ]
    assert calls[0] == (FILES, engine.STEADY_SAMPLE_PER_FILE)  # disagreed: the full sample
    assert calls[1][1] > engine.STEADY_SAMPLE_PER_FILE
