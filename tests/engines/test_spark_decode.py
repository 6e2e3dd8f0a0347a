"""The cluster-side decoder (engines/spark_decode.py) without a cluster: what mapInArrow gets."""

from __future__ import annotations

import cbor2
import pyarrow as pa
import pytest

from courier.engines import spark_decode
from courier.formats.base import get_reader
from courier.formats.options import TreeOptions


def rows(batches: list[pa.RecordBatch]) -> list[tuple[str, int, int, int]]:
    table = pa.Table.from_batches(batches)
    names = ["value", spark_decode.LINE, spark_decode.RANK, spark_decode.PIECE]
    return list(zip(*(table.column(n).to_pylist() for n in names), strict=True))


def test_a_file_becomes_batches_of_numbered_lines_with_its_bad_items_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [{"id": 1}, "not a map", {"id": 2}, {"id": 3}]
    data = b"".join(cbor2.dumps(i) for i in items)
    monkeypatch.setattr(spark_decode, "BATCH_LINES", 2)  # batches split inside the file
    batches = list(spark_decode.decode_file(get_reader("cbor"), TreeOptions(), data, "k", 7))
    assert [b.num_rows for b in batches] == [2, 2]
    assert all(b.schema.field("value").type == pa.string() for b in batches)
    got = rows(batches)
    assert [r[:1] for r in got[:3]] == [('{"id":1}',), ('{"id":2}',), ('{"id":3}',)]
    assert [(r[1], r[2], r[3]) for r in got] == [(1, 7, 1), (2, 7, 0), (3, 7, 0), (2, 7, 0)]
    assert spark_decode.bad_record(got[3][0]) == ("item 2 is a string, not a map", '"not a map"')
    assert spark_decode.bad_record(got[0][0]) is None


def test_an_empty_file_gives_no_batch() -> None:
    assert list(spark_decode.decode_file(get_reader("cbor"), TreeOptions(), b"", "k", 0)) == []


def test_decode_batches_reads_each_file_of_a_batch_with_its_rank() -> None:
    contents = [cbor2.dumps({"id": 1}), cbor2.dumps({"id": 2}) + cbor2.dumps({"id": 3})]
    batch = pa.RecordBatch.from_pydict(
        {
            spark_decode.CONTENT: pa.array(contents, pa.binary()),
            spark_decode.RANK: pa.array([4, 9], pa.int32()),
            spark_decode.KEY: ["a.cbor", "b.cbor"],
        }
    )
    got = rows(list(spark_decode.decode_batches(iter([batch]), "cbor", {})))
    assert got == [('{"id":1}', 1, 4, 1), ('{"id":2}', 1, 9, 1), ('{"id":3}', 2, 9, 0)]
