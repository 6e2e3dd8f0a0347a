"""The compiled CBOR -> JSON lines transcoder (courier/_cbor2json.c) against the cbor2 path:
the same lines (as JSON values) and the same bad records, whatever the input."""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from courier.formats import cbor as cbor_module
from courier.formats.arrow_tree import TreeReader
from courier.formats.cbor import CborReader
from courier.formats.options import TreeOptions
from courier.plan import BadRecord, InputFile
from tests.formats.helpers import cbor_seq, events, write

lines = cbor_module.transcode_lines
XML_OPTIONS: dict[str, Any] = {"record_path": "records.record", "force_list": ["record", "tender"]}


def test_the_transcoder_is_built() -> None:
    """make install compiles it (gcc and the Python headers are on every machine here)."""
    assert lines is not None


def transcoded(f: InputFile, **options: Any) -> tuple[list[Any], list[BadRecord]]:
    """Rows and bad records through CborReader.write_lines (the transcoder when it applies)."""
    out, bad = io.BytesIO(), []
    CborReader().write_lines(f, TreeOptions.parse(options), out, bad)
    return [json.loads(line) for line in out.getvalue().splitlines()], bad


def decoded(f: InputFile, **options: Any) -> tuple[list[Any], list[BadRecord]]:
    """The same through cbor2 and orjson alone (TreeReader.write_lines)."""
    out, bad = io.BytesIO(), []
    TreeReader.write_lines(CborReader(), f, TreeOptions.parse(options), out, bad)
    return [json.loads(line) for line in out.getvalue().splitlines()], bad


def call(value_bytes: bytes, max_depth: int = 100) -> tuple[bytes, int, int, bool]:
    """(json, pos, items, slow) of the items as rows (no record_path: one row an item)."""
    assert lines is not None
    json_lines, pos, items, rows, slow, keys = lines(value_bytes, 0, max_depth, (), ())
    assert rows == items
    written = {k for line in json_lines.splitlines() for k in json.loads(line)}
    assert keys >= written  # more only for a row given back to cbor2
    return json_lines, pos, items, slow


def test_the_rows_top_level_keys_are_noted_once_each() -> None:
    assert lines is not None
    rows = [{"a": 1, "b": {"x": 1}}, {"a": 2, "b": {"y": 2}}, {"b": 3, "a": 4}, {}, {"c": 5}]
    out, _, items, count, slow, keys = lines(cbor_seq(rows), 0, 100, (), ())
    assert (items, count, slow) == (5, 5, False)
    assert keys == {"a", "b", "c"}  # nested keys (x, y) are not top-level keys
    assert [json.loads(line) for line in out.splitlines()] == rows


def test_doubles_are_written_as_repr_writes_them() -> None:
    """Short decimals take a fast path (<= 6 places, 1e-4 <= |x| < 1e15); every double reads
    back as itself and is spelt as Python's repr spells it, fast path or not."""
    import random

    rng = random.Random(7)
    values = [0.0, -0.0, 3.0, -3.0, 0.1, 0.3, 0.1 + 0.2, 1e-4, 1.1e-4, 9.99e-5, 1e15, 1e15 - 1,
              999999999999999.9, 64.47, -18.32, 1 / 3, 2.0**53, 2.0**53 + 2, 123456789.123456]  # fmt: skip
    for _ in range(5000):
        values.append(
            rng.randint(-(10 ** rng.randint(1, 16)), 10 ** rng.randint(1, 16))
            / 10 ** rng.randint(0, 8)
        )
        values.append(struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0])
    values = [v for v in values if math.isfinite(v)]
    out, _, items, _ = call(b"".join(cbor2.dumps({"x": v}) for v in values))
    assert items == len(values)
    written = [line[len(b'{"x":') : -1].decode() for line in out.splitlines()]
    assert written == [repr(v) for v in values]


def test_plain_maps_become_one_line_each() -> None:
    records = [
        {"a": 1, "b": -5, "c": 'x"y\\z\n\t\u0001é日本', "d": [True, False, None], "e": {}},
        {"f": 1.5, "g": -0.0, "h": [], "i": {"j": {"k": [1, [2, [3]]]}}},
    ]
    data = cbor_seq(records)
    out, pos, items, slow = call(data)
    assert (pos, items, slow) == (len(data), 2, False)
    assert [json.loads(line) for line in out.splitlines()] == records


def test_numbers_at_the_edges() -> None:
    record = {"max": 2**64 - 1, "min": -(2**64), "neg": -(2**63) - 1, "zero": 0}
    out, _, items, slow = call(cbor2.dumps(record))
    assert items == 1 and not slow and json.loads(out) == record
    # half and single floats, NaN and infinities (null, as orjson writes them)
    half = (
        b"\xa4\x61h\xf9\x3e\x00\x61s\xfa"
        + struct.pack(">f", 0.1)
        + b"\x61n\xf9\x7e\x00\x61i\xf9\x7c\x00"
    )
    out, _, items, slow = call(half)
    assert items == 1 and not slow
    assert json.loads(out) == {
        "h": 1.5,
        "s": float(struct.unpack(">f", struct.pack(">f", 0.1))[0]),
        "n": None,
        "i": None,
    }
    assert b'"h":1.5' in out and math.isclose(json.loads(out)["s"], 0.1, rel_tol=1e-7)


@pytest.mark.parametrize(
    "item",
    [
        cbor2.dumps({"b": b"bytes"}),
        cbor2.dumps({"t": cbor2.CBORTag(4242, "x")}),
        cbor2.dumps({1: "integer key"}),
        cbor2.dumps({"big": 2**70}),
        cbor2.dumps({"s": cbor2.CBORSimpleValue(99)}),
        b"\xbf\x61a\x01\xff",  # indefinite-length map
        b"\xa1\x61a\x7f\x61x\xff",  # indefinite-length text
        b"\xa2\x61a\x01\x61a\x02",  # a key twice: cbor2 keeps the last value
        b"\xa1\x61a\x62\xc3\x28",  # invalid UTF-8
        b"\xa1\x62\xed\xa0\x01",  # a surrogate, which Python refuses
        cbor2.dumps([1, 2]),  # not a map
        cbor2.dumps({f"k{i}": i for i in range(65)}),  # more keys than the duplicate check
    ],
)
def test_what_it_leaves_to_cbor2(item: bytes) -> None:
    good = cbor2.dumps({"ok": 1})
    out, pos, items, slow = call(good + item + good)
    assert (pos, items, slow) == (len(good), 1, True)
    assert json.loads(out) == {"ok": 1}


def test_an_incomplete_item_stops_at_its_start() -> None:
    good = cbor2.dumps({"ok": 1})
    for cut in range(1, len(good)):
        out, pos, items, slow = call(good + good[:cut])
        assert (pos, items, slow) == (len(good), 1, False)


def test_depth_is_left_to_cbor2_near_the_limit() -> None:
    deep: Any = 1
    for _ in range(10):
        deep = {"d": deep}
    assert call(cbor2.dumps(deep), max_depth=20)[1:] == (len(cbor2.dumps(deep)), 1, False)
    assert call(cbor2.dumps(deep), max_depth=11)[1:] == (0, 0, True)
    for _ in range(290):  # 300 levels: past what the C walk recurses into, whatever max_depth
        deep = {"d": deep}
    assert call(cbor2.dumps(deep), max_depth=10_000)[1:] == (0, 0, True)


def test_mixed_file_matches_cbor2_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cbor_module, "CHUNK", 97)  # items cut by every chunk edge
    parts, bad_numbers = [], []
    for i, record in enumerate(events(40)):
        parts.append(cbor2.dumps(record))
        if i % 7 == 3:
            parts.append(cbor2.dumps({"b": b"\x00\xff", "n": i}))  # cbor2 decodes this one
        if i % 11 == 5:
            parts.append(cbor2.dumps("not a map"))
            bad_numbers.append(len(parts))
        if i % 13 == 8:
            parts.append(b"\xa1\x61a\x62\xc3\x28")  # invalid UTF-8
            bad_numbers.append(len(parts))
    parts.append(cbor2.dumps({"cut": "short"})[:-2])  # the file ends inside it
    bad_numbers.append(len(parts))
    f = write(tmp_path / "a.cbor", b"".join(parts))
    fast = transcoded(f)
    assert fast == decoded(f)
    rows, bad = fast
    assert len(rows) == 40 + 6 and [b.line for b in bad] == bad_numbers
    assert "truncated" in bad[-1].reason
    assert {"not a map" in b.reason or "cannot be decoded" in b.reason for b in bad[:-1]} == {True}


def test_a_top_level_array_and_record_path_take_the_cbor2_path(tmp_path: Path) -> None:
    f = write(tmp_path / "a.cbor", cbor2.dumps(events(3)))
    assert transcoded(f) == decoded(f) and len(transcoded(f)[0]) == 3
    nested = {"records": {"record": [{"a": 1}, {"a": 2}]}}
    g = write(tmp_path / "b.cbor", cbor2.dumps(nested))
    assert transcoded(g, record_path="records.record") == ([{"a": 1}, {"a": 2}], [])


json_maps = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats() | st.text()
        | st.binary(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
        max_leaves=20,
    ),
    max_size=6,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(json_maps, max_size=5))
def test_any_maps_give_the_lines_cbor2_gives(records: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = write(Path(tmp) / "a.cbor", cbor_seq(records))
        assert transcoded(f) == decoded(f)


SEQUENCE = cbor_seq(events(6))
XML_SEQUENCE = cbor_seq(
    [
        {"records": {"record": [{"id": i, "tender": {"t": "card", "amount": 1.5}}] * 2}}
        for i in range(4)
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    st.integers(0, 10_000),
)
def test_corrupt_files_give_the_same_rows_and_bad_records(
    xml: bool, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(XML_SEQUENCE if xml else SEQUENCE)
    for at, value in edits:
        data[at % len(data)] = value
    options = XML_OPTIONS if xml else {}
    with tempfile.TemporaryDirectory() as tmp:
        f = write(Path(tmp) / "a.cbor", bytes(data[: cut % (len(data) + 1)]))
        assert transcoded(f, **options) == decoded(f, **options)


@pytest.mark.parametrize(
    "item",
    [
        {"records": {"record": [{"id": 1, "tender": {"t": "card"}}, {"id": 2, "tender": []}]}},
        {"records": {"record": {"id": 3, "tender": [{"t": "cash"}, {"t": "card"}]}}},
        {"records": {"record": None}},
        {"records": None},
        {"records": [{"record": {"id": 4}}, None, {"record": [{"id": 5}, None]}]},
        {"meta": {"x": [1, 2, {"y": "z"}]}, "records": {"record": {"id": 6, "tender": None}}},
        {"records": {"other": 1}},  # no 'record': a bad record, named by the cbor2 path
        {"records": {"record": ["text", {"id": 7}]}},  # a record that is not a map
        {"records": "text"},
        {"records": {"record": {"id": 8, "raw": b"\x01"}}},  # bytes: the cbor2 path
        {"skipped": b"\x01", "records": {"record": {"id": 9}}},  # bytes off the path
    ],
)
def test_record_path_and_force_list_match_cbor2(tmp_path: Path, item: dict[str, Any]) -> None:
    f = write(tmp_path / "a.cbor", cbor_seq([{"records": {"record": {"id": 0}}}, item]))
    assert transcoded(f, **XML_OPTIONS) == decoded(f, **XML_OPTIONS)


def test_record_path_rows_come_from_the_transcoder() -> None:
    assert lines is not None
    data = cbor_seq(
        [
            {"records": {"record": [{"id": 1, "tender": {"t": "a"}}, {"id": 2}]}},
            {"records": {"record": {"id": 3}}},
        ]
    )
    out, pos, items, rows, slow, keys = lines(data, 0, 100, (b"records", b"record"), (b"tender",))
    assert (pos, items, rows, slow, keys) == (len(data), 2, 3, False, {"id", "tender"})
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": 1, "tender": [{"t": "a"}]},
        {"id": 2},
        {"id": 3},
    ]


xml_keys = st.sampled_from(["records", "record", "tender", "a", "b"])
xml_trees = st.recursive(
    st.none() | st.integers(-5, 5) | st.text(max_size=3) | st.binary(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(xml_keys, inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(xml_keys, xml_trees, max_size=4), max_size=4))
def test_any_trees_under_record_path_and_force_list_match_cbor2(
    items: list[dict[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = write(Path(tmp) / "a.cbor", cbor_seq(items))
        assert transcoded(f, **XML_OPTIONS) == decoded(f, **XML_OPTIONS)
