"""The tree formats through the DuckDB engine: nested data reaches queries as STRUCTs and LISTs
exactly as with NDJSON, the file column names each row's file, batches of differing shapes
are unified in record order."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from courier.formats import arrow_tree
from courier.formats.cbor import CborReader
from courier.formats.options import TreeOptions
from courier.formats.worker import run_workers
from courier.formats.xml import parse_xml
from tests.formats.helpers import NESTED_QUERY, Engine, cbor_seq, events, ndjson, write


@pytest.fixture
def engine() -> Iterator[Engine]:
    e = Engine()
    yield e
    e.close()


def test_nested_records_query_the_same_from_every_format(engine: Engine, tmp_path: Path) -> None:
    first, second = events(30), events(20, start=30)
    engine.read("nd", [write(tmp_path / "a.ndjson", ndjson(first)),
                       write(tmp_path / "b.ndjson", ndjson(second))], "ndjson")  # fmt: skip
    engine.read("cb", [write(tmp_path / "a.cbor", cbor_seq(first)),
                       write(tmp_path / "b.cbor", cbor_seq(second))], "cbor")  # fmt: skip
    engine.read("js", [write(tmp_path / "a.json", orjson.dumps(first)),
                       write(tmp_path / "b.json", orjson.dumps(second))], "json")  # fmt: skip
    engine.read("ar", [write(tmp_path / "c.cbor", cbor_seq(first + second))], "cbor",
                decode="arrow")  # fmt: skip
    expected = engine.rows(NESTED_QUERY.format(tag="nd"))
    assert len(expected) == sum(len(e["items"]) for e in first + second)
    assert engine.rows(NESTED_QUERY.format(tag="cb")) == expected
    assert engine.rows(NESTED_QUERY.format(tag="js")) == expected
    # Arrow keeps strings as strings: the timestamp text is not detected as on the JSON path.
    arrow = engine.rows(NESTED_QUERY.format(tag="ar"))
    assert [r[:1] + r[2:] for r in arrow] == [r[:1] + r[2:] for r in expected]
    types = engine.types("nd")
    assert types["customer"] == "STRUCT(id BIGINT, email VARCHAR)"
    assert types["items"] == "STRUCT(sku VARCHAR, qty BIGINT, price DOUBLE)[]"
    assert engine.types("cb") == types
    assert engine.types("js") == types


@pytest.mark.parametrize("fmt", ["ndjson", "cbor"])
def test_a_tag_read_once_streams_from_its_files_until_close(
    engine: Engine, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    encode = ndjson if fmt == "ndjson" else cbor_seq
    records = events(40)
    files = [write(tmp_path / f"a.{fmt}", encode(records[:25])),
             write(tmp_path / f"b.{fmt}", encode(records[25:]))]  # fmt: skip
    held = engine.read("held", files, fmt)
    streamed = engine.read("streamed", files, fmt, read_once=True)
    assert streamed.records == held.records == 40
    assert streamed.schema == held.schema
    assert engine.rows(NESTED_QUERY.format(tag="streamed")) == engine.rows(
        NESTED_QUERY.format(tag="held")
    )
    kinds = dict(engine.rows("SELECT table_name, table_type FROM information_schema.tables"))
    base = engine.engine.tags["streamed"].name
    assert kinds[base] == "VIEW" and kinds[engine.engine.tags["held"].name] == "LOCAL TEMPORARY"
    transcoded = list(scratch.iterdir())
    assert len(transcoded) == (1 if fmt == "cbor" else 0)  # the held tag's are gone already
    engine.engine.close()
    assert list(scratch.iterdir()) == []


def test_file_column_names_each_rows_storage_key(engine: Engine, tmp_path: Path) -> None:
    for route in ("json", "arrow"):
        files = [
            write(tmp_path / route / "a.cbor", cbor_seq(events(3))),
            write(tmp_path / route / "b.cbor", cbor_seq(events(2, start=3))),
        ]
        engine.read(f"t_{route}", files, "cbor", decode=route)
        table = engine.engine.tags[f"t_{route}"].name
        rows = engine.rows(
            f'SELECT n.key, count(*) FROM "{table}" t JOIN _courier_file_names n '
            "ON n.path = t._courier_file GROUP BY n.key ORDER BY n.key"
        )
        assert rows == [("landing/a.cbor", 3), ("landing/b.cbor", 2)], route


def test_xml_trees_landed_as_cbor_query_like_the_xml_files(engine: Engine, tmp_path: Path) -> None:
    pos = (Path(__file__).resolve().parents[2] / "samples" / "pos-records.xml").read_bytes()
    options = {"record_path": "records.record", "force_list": ["record", "tender"]}
    engine.read("x", [write(tmp_path / "p.xml", pos)], "xml", **options)
    engine.read("c", [write(tmp_path / "p.cbor", cbor_seq([parse_xml(pos)]))], "cbor", **options)
    query = "SELECT r.id, unnest(r.tenders.tender).type, r.ts FROM {tag} r ORDER BY ALL"
    expected = engine.rows(query.format(tag="x"))
    assert [row[:2] for row in expected] == [
        ("pos-0001", "card"), ("pos-0001", "cash"), ("pos-0002", "card"),
    ]  # fmt: skip
    assert engine.rows(query.format(tag="c")) == expected


def test_arrow_batches_of_different_shapes_are_unified_in_order(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arrow_tree, "BATCH_ROWS", 2)
    records = [
        {"n": 1, "s": {"x": 1}},
        {"n": 2, "s": {"x": 2}},
        {"n": 3.5, "s": {"y": "a"}, "extra": "e"},  # double, another struct field, a new column
        {"n": 4, "s": {"x": 4}},  # the first shape again
        {"n": 5, "s": {"x": 5}},
        {"n": 6, "mixed": 1},  # a column whose values cannot share a type: JSON text
        {"n": 7, "mixed": {"k": 1}},
    ]
    summary = engine.read("t", [write(tmp_path / "a.cbor", cbor_seq(records))], "cbor",
                          decode="arrow")  # fmt: skip
    assert summary.records == 7 and summary.bad == []
    assert engine.types("t")["s"] == "STRUCT(x BIGINT, y VARCHAR)"
    assert engine.rows("SELECT n, s.x, s.y, extra, mixed FROM t") == [
        (1.0, 1, None, None, None),
        (2.0, 2, None, None, None),
        (3.5, None, "a", "e", None),
        (4.0, 4, None, None, None),
        (5.0, 5, None, None, None),
        (6.0, None, None, None, "1"),
        (7.0, None, None, None, '{"k":1}'),
    ]


def test_bad_items_reach_the_summary_with_item_numbers(engine: Engine, tmp_path: Path) -> None:
    data = cbor_seq([{"a": 1}, "not a map", {"a": 3}]) + cbor_seq([{"a": 4}])[:-1]
    summary = engine.read("t", [write(tmp_path / "a.cbor", data)], "cbor")
    assert summary.records == 2
    assert [(b.file, b.line) for b in summary.bad] == [("landing/a.cbor", 2), ("landing/a.cbor", 4)]
    assert engine.rows("SELECT a FROM t") == [(1,), (3,)]


@pytest.mark.parametrize("fmt", ["cbor", "json", "xml"])
def test_files_without_records_give_an_empty_tag(engine: Engine, tmp_path: Path, fmt: str) -> None:
    f = write(tmp_path / f"a.{fmt}", b"\n")
    summary = engine.read("t", [f], fmt)
    assert summary.records == 0 and engine.rows("SELECT count(*) FROM t") == [(0,)]


@pytest.mark.slow
def test_decode_workers_give_the_same_rows_and_bad_records(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large window is decoded by spawned worker processes: same rows, same order, same
    bad records (with their files and item numbers) as decoding in-process."""
    monkeypatch.setattr(arrow_tree, "PARALLEL_MIN_BYTES", 0)
    files = []
    for n in range(4):
        data = cbor_seq(events(50, start=50 * n)) + cbor_seq(["bad"]) + cbor_seq(events(5))[:-2]
        files.append(write(tmp_path / f"p{n}.cbor", data))
    files.append(write(tmp_path / "empty.cbor", cbor_seq([1, 2])))
    one = engine.read("one", files, "cbor", decode_workers=1)
    two = engine.read("two", files, "cbor", decode_workers=2)
    assert two.records == one.records == 4 * 54
    assert two.bad == one.bad
    assert [(b.file, b.line) for b in two.bad][:2] == [
        ("landing/p0.cbor", 51),
        ("landing/p0.cbor", 56),
    ]
    query = "SELECT event_id, customer, items, n.key FROM {t} t JOIN _courier_file_names n ON n.path = t._courier_file"
    table_one, table_two = engine.engine.tags["one"].name, engine.engine.tags["two"].name
    assert engine.rows(query.format(t=f'"{table_two}"')) == engine.rows(
        query.format(t=f'"{table_one}"')
    )


class _MissingFormatReader(CborReader):
    format = "no-such-format"  # a helper cannot build this reader and exits 1


@pytest.mark.slow
def test_a_failing_decode_helper_leaves_its_files_to_the_courier(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = [write(tmp_path / f"p{n}.cbor", cbor_seq(events(20, start=20 * n))) for n in range(6)]
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level(logging.WARNING, logger="courier.formats"):
        results = list(run_workers(_MissingFormatReader(), files, TreeOptions(), out, 2))
    assert "decode helper failed" in caplog.text
    assert [r[0].key if r[0] else None for r in results] == [f.key for f in files]
    lines = [
        orjson.loads(line) for r in results if r[0] for line in r[0].path.read_bytes().splitlines()
    ]
    assert lines == orjson.loads(orjson.dumps(events(120)))


@pytest.mark.slow
def test_decode_helpers_work_from_a_script_without_a_main_guard(tmp_path: Path) -> None:
    """Helpers are plain subprocesses: a script that calls courier at top level (no
    `if __name__ == "__main__"`) is not re-run, as a spawned multiprocessing child would."""
    for n in range(4):
        write(tmp_path / f"p{n}.cbor", cbor_seq(events(10, start=10 * n)))
    script = tmp_path / "script.py"
    script.write_text(
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from courier.formats import arrow_tree\n"
        "from courier.formats.cbor import CborReader\n"
        "from courier.plan import InputFile\n"
        "arrow_tree.PARALLEL_MIN_BYTES = 0\n"
        f"files = sorted(Path({str(tmp_path)!r}).glob('*.cbor'))\n"
        "inputs = [InputFile(p.name, p, p.stat().st_size) for p in files]\n"
        "out = Path(tempfile.mkdtemp())\n"
        "results = list(CborReader().json_lines(inputs, {'decode_workers': 3}, out))\n"
        "print('RUN', sum(len(r[0].path.read_bytes().splitlines()) for r in results))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["RUN", "40"]


def test_files_claimed_by_a_helper_that_died_are_transcoded_here(tmp_path: Path) -> None:
    files = [write(tmp_path / f"p{n}.cbor", cbor_seq(events(5, start=5 * n))) for n in range(5)]
    out = tmp_path / "out"
    (out / "claims").mkdir(parents=True)
    for index in (3, 4):  # claimed, never finished
        (out / "claims" / str(index)).touch()
    results = list(run_workers(CborReader(), files, TreeOptions(), out, 1))
    lines = [orjson.loads(x) for r in results if r[0] for x in r[0].path.read_bytes().splitlines()]
    assert lines == orjson.loads(orjson.dumps(events(25)))


@pytest.mark.parametrize(
    ("body", "streams", "records", "bad_lines"),
    [
        # CRLF throughout, a value holding the text \x01 and an escaped U+0001: streamed
        (b'{"a":1,"s":"C:\\\\x01"}\r\n{"a":2,"s":"\\u0001"}\r\n', True, 2, []),
        # a line that is not an object, a blank line, an empty object: the careful path
        (b'{"a":1}\n[1,2]\n{"a":3}\n', False, 2, [2]),
        (b'{"a":1}\n\n{"a":3}\n', False, 2, []),
        (b'{"a":1}\n{}\n', False, 2, []),
        # mixed line ends and a malformed line: the careful path
        (b'{"a":1}\n{"a":2}\r\n{"a":3}\n', False, 3, []),
        (b'{"a":1}\n{"a":\n{"a":3}\n', False, 2, [2]),
    ],
)
def test_the_streamed_key_pass_reads_lines_as_text_and_leaves_odd_files_to_the_careful_path(
    engine: Engine, tmp_path: Path, body: bytes, streams: bool, records: int, bad_lines: list[int]
) -> None:
    summary = engine.read("t", [write(tmp_path / "a.ndjson", body)], "ndjson", read_once=True)
    assert summary.records == records
    assert [b.line for b in summary.bad] == bad_lines
    assert ("t" in engine.engine.streamed) is streams
    kinds = dict(engine.rows("SELECT table_name, table_type FROM information_schema.tables"))
    assert kinds[engine.engine.tags["t"].name] == ("VIEW" if streams else "LOCAL TEMPORARY")


@pytest.mark.parametrize("workers", [1, 2])
def test_transcoded_files_carry_their_keys_so_the_key_pass_is_skipped(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """CBOR transcoded to NDJSON: the transcoder (and its helper processes) counted the lines
    and noted their top-level keys; a key only the last file's last record has is loaded."""
    from courier.engines.duckdb import DuckDBEngine
    from courier.formats import arrow_tree

    def no_pass(*_: Any) -> None:
        raise AssertionError("the key pass ran over transcoded files")

    monkeypatch.setattr(DuckDBEngine, "_key_pass", no_pass)
    monkeypatch.setattr(arrow_tree, "PARALLEL_MIN_BYTES", 0)
    records = events(30)
    records[-1] = {**records[-1], "coupon": "late-1"}
    files = [
        write(tmp_path / f"{n}.cbor", cbor_seq(records[n * 10 : n * 10 + 10])) for n in range(3)
    ]
    summary = engine.read("t", files, "cbor", read_once=True, decode_workers=workers)
    assert "t" in engine.engine.streamed and summary.records == 30
    assert summary.schema["coupon"] == "VARCHAR"
    assert engine.rows("SELECT count(coupon), max(coupon) FROM t") == [(1, "late-1")]
