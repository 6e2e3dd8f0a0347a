"""JSON document reader: one object per file or a top-level array of records."""

from __future__ import annotations

from pathlib import Path

import orjson

from courier.formats.base import get_reader
from courier.formats.json_doc import JsonDocumentReader
from tests.formats.helpers import events, read_items, read_rows, write


def test_registered_as_the_json_reader() -> None:
    assert isinstance(get_reader("json"), JsonDocumentReader)


def test_one_document_is_one_record(tmp_path: Path) -> None:
    [record] = events(1)
    f = write(tmp_path / "a.json", orjson.dumps(record, option=orjson.OPT_INDENT_2))
    assert read_items(JsonDocumentReader(), f) == [(1, record)]


def test_a_top_level_array_gives_one_record_per_element(tmp_path: Path) -> None:
    records = events(4)
    f = write(tmp_path / "a.json", orjson.dumps(records))
    assert read_items(JsonDocumentReader(), f) == list(enumerate(records, start=1))


def test_elements_that_are_not_objects_are_bad_records(tmp_path: Path) -> None:
    f = write(tmp_path / "a.json", b'[{"a": 1}, 2, "x", {"a": 4}, [5]]')
    rows, bad = read_rows(JsonDocumentReader(), [f])
    assert rows == [{"a": 1}, {"a": 4}]
    assert [(r.line, r.file) for r in bad] == [
        (2, "landing/a.json"),
        (3, "landing/a.json"),
        (5, "landing/a.json"),
    ]
    assert "an integer, not a map" in bad[0].reason
    assert bad[1].raw == '"x"'


def test_malformed_document_is_one_bad_record_with_its_line(tmp_path: Path) -> None:
    f = write(tmp_path / "a.json", b'[\n{"a": 1},\n{"a": \n]')
    rows, bad = read_rows(JsonDocumentReader(), [f])
    assert rows == []
    [record] = bad
    assert record.line == 4 and "malformed JSON at line 4" in record.reason
    assert record.raw.startswith('[\n{"a": 1}')


def test_invalid_utf8_is_named(tmp_path: Path) -> None:
    f = write(tmp_path / "a.json", b'{"a": "\xff"}')
    _, [record] = read_rows(JsonDocumentReader(), [f])
    assert "not UTF-8" in record.reason


def test_empty_and_blank_files_hold_no_records(tmp_path: Path) -> None:
    files = [write(tmp_path / "e.json", b""), write(tmp_path / "b.json", b" \n\t")]
    assert read_rows(JsonDocumentReader(), files) == ([], [])
    assert read_rows(JsonDocumentReader(), [write(tmp_path / "x.json", b"[]")]) == ([], [])


def test_record_path_and_force_list(tmp_path: Path) -> None:
    doc = {"page": 1, "data": {"events": [{"id": 1, "tags": {"tag": "a"}}, {"id": 2}]}}
    f = write(tmp_path / "a.json", orjson.dumps(doc))
    rows, bad = read_rows(JsonDocumentReader(), [f], record_path="data.events", force_list=["tag"])
    assert bad == []
    assert rows == [{"id": 1, "tags": {"tag": ["a"]}}, {"id": 2}]


def test_documents_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "a.json", orjson.dumps(events(50)))
    rows, [record] = read_rows(JsonDocumentReader(), [f], max_document_bytes=100)
    assert rows == [] and "NDJSON" in record.reason
