"""The query-engine contract: every QueryEngine passes these tests.

Subclass `EngineContract` in a `Test*` class and provide an `engine` fixture that yields a
fresh engine (closed afterwards). Files come from a local storage, and from the same storage
seen as remote (no local paths), which the engine must stage or read itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from courier.engines.base import LINE_COLUMN, RANK_COLUMN, QueryEngine, WindowFile
from courier.errors import QueryError
from courier.project import SavedQuery
from courier.storage.local import LocalStorage


class RemoteLooking(LocalStorage):
    """A local folder that hands out no local paths, as S3 or Azure would."""

    def local_path(self, key: str) -> Path | None:
        return None

    def uri(self, key: str) -> str:
        return f"mem://{self.name}/{key}"


def ndjson(*records: Any) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def window(storage: LocalStorage, files: dict[str, bytes]) -> list[WindowFile]:
    out = []
    for rank, (key, data) in enumerate(files.items()):
        storage.write_bytes(key, data)
        out.append(WindowFile(storage.uri(key), key, len(data), rank))
    return out


def query(name: str, sql: str, **dialects: str) -> SavedQuery:
    return SavedQuery(name, Path(f"queries/{name}.sql"), sql, dialects)


class EngineContract:
    @pytest.fixture(params=["local", "remote"])
    def storage(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalStorage]:
        cls = LocalStorage if request.param == "local" else RemoteLooking
        s = cls("landing", tmp_path / "landing")
        yield s
        s.close()

    def test_a_tag_is_read_in_record_order_with_rank_and_line(
        self, engine: QueryEngine, storage: LocalStorage
    ) -> None:
        files = window(
            storage,
            {
                "a/0.ndjson": ndjson({"id": 1, "v": "x"}, {"id": 2, "v": "y"}),
                "a/1.ndjson": ndjson({"id": 3, "v": "z"}),
            },
        )
        rows, summary = engine.read_input("events", files, storage, "ndjson", {}, None)
        assert summary.records == 3 and rows.count == 3 and not summary.bad
        assert set(summary.schema) == {"id", "v"}
        assert set(rows.schema.names) == {"id", "v"}
        table = rows.to_arrow().read_all()
        got = list(zip(table["id"].to_pylist(), table[RANK_COLUMN].to_pylist(),
                       table[LINE_COLUMN].to_pylist(), strict=True))  # fmt: skip
        assert got == [(1, 0, 1), (2, 0, 2), (3, 1, 1)]
        assert [f.key for f in rows.files or []] == ["a/0.ndjson", "a/1.ndjson"]

    def test_a_bad_line_is_reported_with_its_file_and_line(
        self, engine: QueryEngine, storage: LocalStorage
    ) -> None:
        files = window(storage, {"b/0.ndjson": ndjson({"id": 1}) + b"{oops\n" + ndjson({"id": 2})})
        rows, summary = engine.read_input("events", files, storage, "ndjson", {}, None)
        assert summary.records == 2 and rows.count == 2
        assert [(b.file, b.line) for b in summary.bad] == [("b/0.ndjson", 2)]

    def test_a_saved_query_selects_the_tag_by_name_in_its_order(
        self, engine: QueryEngine, storage: LocalStorage
    ) -> None:
        files = window(storage, {"c/0.ndjson": ndjson(*({"id": i} for i in range(5)))})
        engine.read_input("events", files, storage, "ndjson", {}, None)
        sql = "SELECT id * 10 AS tens FROM events ORDER BY id DESC"
        rows = engine.run_query(query("tens", sql, spark=sql), ["events"])
        table = rows.to_arrow().read_all()
        assert table["tens"].to_pylist() == [40, 30, 20, 10, 0]
        assert table[LINE_COLUMN].to_pylist() == [1, 2, 3, 4, 5]
        engine.drop(rows)
        engine.drop(rows)  # idempotent

    def test_a_failing_query_names_its_file(
        self, engine: QueryEngine, storage: LocalStorage
    ) -> None:
        files = window(storage, {"d/0.ndjson": ndjson({"id": 1})})
        engine.read_input("events", files, storage, "ndjson", {}, None)
        bad = "SELECT nope FROM events"
        with pytest.raises(QueryError, match="broken"):
            engine.run_query(query("broken", bad, spark=bad), ["events"])

    def test_an_empty_window_reads_no_rows(
        self, engine: QueryEngine, storage: LocalStorage
    ) -> None:
        rows, summary = engine.read_input("events", [], storage, "ndjson", {}, None)
        assert summary.records == 0 and rows.count == 0
