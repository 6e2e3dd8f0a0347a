"""CBOR reader: sequences and single arrays, chunk boundaries, bad items with their numbers."""

from __future__ import annotations

import datetime as dt
import decimal
import tempfile
from pathlib import Path

import cbor2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from courier.formats import cbor as cbor_module
from courier.formats.arrow_tree import encode_lines
from courier.formats.base import get_reader
from courier.formats.cbor import CborReader, _Incomplete, _Malformed, item_end
from courier.plan import BadRecord
from tests.formats.helpers import cbor_seq, events, read_items, read_rows, write


def good(entries: list[object]) -> list[tuple[int, object]]:
    return [e for e in entries if not isinstance(e, BadRecord)]  # type: ignore[misc]


def bad(entries: list[object]) -> list[BadRecord]:
    return [e for e in entries if isinstance(e, BadRecord)]


def test_registered_as_the_cbor_reader() -> None:
    assert isinstance(get_reader("cbor"), CborReader)


def test_sequence_items_in_order_numbered_from_one(tmp_path: Path) -> None:
    records = events(5)
    f = write(tmp_path / "a.cbor", cbor_seq(records))
    entries = read_items(CborReader(), f)
    assert entries == list(enumerate(records, start=1))


@pytest.mark.parametrize("indefinite", [False, True])
def test_a_single_top_level_array_gives_its_elements(tmp_path: Path, indefinite: bool) -> None:
    records = events(4)
    if indefinite:
        data = b"\x9f" + b"".join(cbor2.dumps(r) for r in records) + b"\xff"
    else:
        data = cbor2.dumps(records)
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", data))
    assert entries == list(enumerate(records, start=1))


def test_an_array_cut_short_reports_its_missing_end(tmp_path: Path) -> None:
    records = events(3)
    data = b"\x84" + b"".join(cbor2.dumps(r) for r in records)  # declares 4, holds 3
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", data))
    assert good(entries) == list(enumerate(records, start=1))
    [record] = bad(entries)
    assert record.line == 4 and "array" in record.reason


def test_a_truncated_array_head_is_a_bad_record(tmp_path: Path) -> None:
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", b"\x9a\x00\x01"))
    assert [(r.line, "truncated" in r.reason) for r in bad(entries)] == [(1, True)]
    assert good(entries) == []


def test_items_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Items straddling the in-memory chunk (and items larger than it) decode the same."""
    monkeypatch.setattr(cbor_module, "CHUNK", 97)
    records = events(40) + [{"big": "x" * 1000, "n": list(range(300))}] + events(3, 40)
    f = write(tmp_path / "a.cbor", cbor_seq(records))
    assert read_items(CborReader(), f) == list(enumerate(records, start=1))


def test_empty_file_has_no_items(tmp_path: Path) -> None:
    f = write(tmp_path / "a.cbor", b"")
    assert read_items(CborReader(), f) == []
    assert read_rows(CborReader(), [f]) == ([], [])


def test_truncated_last_item_is_quarantined_with_its_number(tmp_path: Path) -> None:
    records = events(3)
    data = cbor_seq(records)
    cut = data[: len(data) - 7]
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", cut))
    assert good(entries) == list(enumerate(records[:2], start=1))
    [record] = bad(entries)
    assert record.line == 3
    assert "truncated" in record.reason
    assert record.file == "landing/a.cbor"
    assert record.raw == cut[len(cbor_seq(records[:2])) :][:256].hex()


def test_truncated_item_in_a_chunked_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cbor_module, "CHUNK", 64)
    records = events(10)
    data = cbor_seq(records)[:-3]
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", data))
    assert good(entries) == list(enumerate(records[:9], start=1))
    assert [r.line for r in bad(entries)] == [10]


def test_non_map_items_are_bad_records_and_reading_goes_on(tmp_path: Path) -> None:
    items = [{"a": 1}, "text", 42, [1, 2], None, {"a": 2}]
    f = write(tmp_path / "a.cbor", cbor_seq(items))
    rows, bad_records = read_rows(CborReader(), [f])
    assert rows == [{"a": 1}, {"a": 2}]
    assert [(r.line, r.reason.split(" is ")[1]) for r in bad_records] == [
        (2, "a string, not a map"),
        (3, "an integer, not a map"),
        (4, "an array, not a map"),
        (5, "null, not a map"),
    ]
    assert bad_records[0].raw == '"text"'


def test_undecodable_item_is_skipped_by_its_structure(tmp_path: Path) -> None:
    """Invalid UTF-8 in a text string: cbor2 refuses the item, its extent is still known,
    so the items after it are read."""
    broken = b"\xa1\x61a\x62\xff\xfe"  # {"a": <2-byte text that is not UTF-8>}
    data = cbor2.dumps({"n": 1}) + broken + cbor2.dumps({"n": 3})
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", data))
    assert good(entries) == [(1, {"n": 1}), (3, {"n": 3})]
    [record] = bad(entries)
    assert record.line == 2
    assert "cannot be decoded" in record.reason and "at byte 4 " in record.reason
    assert "utf-8" in record.reason
    assert record.raw == broken.hex()


def test_too_deep_item_is_a_bad_record(tmp_path: Path) -> None:
    deep: object = 1
    for _ in range(50):
        deep = {"d": deep}
    data = cbor_seq([{"n": 1}, deep, {"n": 3}])
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", data), max_depth=20)
    assert good(entries) == [(1, {"n": 1}), (3, {"n": 3})]
    assert [r.line for r in bad(entries)] == [2]


def test_broken_structure_makes_the_rest_of_the_file_one_bad_record(tmp_path: Path) -> None:
    rest = b"\x1c" + cbor2.dumps({"n": 3})  # reserved additional information 28
    data = cbor_seq([{"n": 1}, {"n": 2}]) + rest
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", data))
    assert good(entries) == [(1, {"n": 1}), (2, {"n": 2})]
    [record] = bad(entries)
    assert record.line == 3
    assert f"({len(rest)} bytes)" in record.reason and "quarantined whole" in record.reason


def test_truncation_in_the_middle_swallows_the_rest(tmp_path: Path) -> None:
    """A string that claims more bytes than the file holds: nothing marks the next item."""
    data = cbor2.dumps({"n": 1}) + b"\xa1\x61s\x78\xff" + b"abc" + cbor2.dumps({"n": 9})
    entries = read_items(CborReader(), write(tmp_path / "a.cbor", data))
    assert good(entries) == [(1, {"n": 1})]
    assert [r.line for r in bad(entries)] == [2]


def test_force_list_and_record_path(tmp_path: Path) -> None:
    one = {"records": {"record": {"id": "r1", "tenders": {"tender": {"type": "cash"}}}}}
    two = {
        "records": {
            "record": [
                {"id": "r2", "tenders": {"tender": [{"type": "card"}, {"type": "cash"}]}},
                {"id": "r3", "tenders": None},
            ]
        }
    }
    empty = {"records": None}
    wrong = {"other": {}}
    f = write(tmp_path / "a.cbor", cbor_seq([one, two, empty, wrong]))
    rows, bad_records = read_rows(
        CborReader(), [f], record_path="records.record", force_list=["record", "tender"]
    )
    assert rows == [
        {"id": "r1", "tenders": {"tender": [{"type": "cash"}]}},
        {"id": "r2", "tenders": {"tender": [{"type": "card"}, {"type": "cash"}]}},
        {"id": "r3", "tenders": None},
    ]
    [record] = bad_records
    assert record.line == 4 and "records.record" in record.reason
    assert "options.record_path" in record.reason


def test_values_json_lacks_are_encoded_per_rfc_8949(tmp_path: Path) -> None:
    row = {
        "bytes": b"\x00\xff",
        "decimal": decimal.Decimal("12.345678901234567890"),
        "big": 2**70,
        "when": dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC),
        "tagged": cbor2.CBORTag(4242, "inner"),
        "undefined": cbor2.undefined,
        "simple": cbor2.CBORSimpleValue(99),
        "set": {1},
        1: "integer key",
    }
    f = write(tmp_path / "a.cbor", cbor2.dumps(row))
    rows, bad_records = read_rows(CborReader(), [f])
    assert bad_records == []
    out: list[BadRecord] = []
    data, count = encode_lines(rows, [1], "k", out)
    assert count == 1 and out == []
    line = data.decode()
    assert '"decimal":12.345678901234567890' in line
    assert f'"big":{2**70}' in line
    assert orjson.loads(data) == {
        "bytes": "AP8",
        "decimal": 12.345678901234567,
        "big": float(2**70),
        "when": "2026-11-22T10:00:00+00:00",
        "tagged": "inner",
        "undefined": None,
        "simple": None,
        "set": [1],
        "1": "integer key",
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text()
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_item_end_matches_the_encoded_length(value: object) -> None:
    encoded = cbor2.dumps(value)
    assert item_end(encoded + b"\x00\x01", 0) == len(encoded)
    if len(encoded) > 1:
        with pytest.raises(_Incomplete):
            item_end(encoded[:-1], 0)


def test_item_end_follows_indefinite_lengths_and_rejects_stray_breaks() -> None:
    indefinite = b"\xbf\x61a\x9f\x01\x02\xff\x61b\x7f\x61x\x61y\xff\xff"  # {_ "a": [_ 1, 2], "b": (_ "x" "y")}
    assert cbor2.loads(indefinite) == {"a": [1, 2], "b": "xy"}
    assert item_end(indefinite + b"\x00", 0) == len(indefinite)
    with pytest.raises(_Malformed):
        item_end(b"\xff", 0)
    with pytest.raises(_Malformed):
        item_end(b"\x7f\x01\xff", 0)  # an integer chunk inside a text string


SEQUENCE = cbor_seq(events(6))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(SEQUENCE) - 1), st.integers(0, 255)), max_size=4),
    st.integers(0, len(SEQUENCE)),
)
def test_corrupt_files_never_break_the_reader(edits: list[tuple[int, int]], cut: int) -> None:
    """Whatever the damage (bytes changed, the file cut anywhere), reading ends without an
    exception and every entry is a value or a bad record, numbered 1, 2, 3... in file order."""
    data = bytearray(SEQUENCE)
    for at, value in edits:
        data[at] = value
    with tempfile.TemporaryDirectory() as tmp:
        entries = read_items(CborReader(), write(Path(tmp) / "a.cbor", bytes(data[:cut])))
    numbers = [e.line if isinstance(e, BadRecord) else e[0] for e in entries]
    assert numbers == list(range(1, len(entries) + 1))
    if not edits:
        assert [v for _, v in good(entries)] == events(6)[: len(good(entries))]


@pytest.mark.parametrize("first", [0x9C, 0x9D, 0x9E])
def test_an_array_head_with_a_reserved_length_makes_the_file_one_bad_record(
    tmp_path: Path, first: int
) -> None:
    f = write(tmp_path / "a.cbor", bytes([first]) + SEQUENCE)
    [record] = read_items(CborReader(), f)
    assert isinstance(record, BadRecord) and record.line == 1
    assert "broken CBOR (reserved additional information" in record.reason
