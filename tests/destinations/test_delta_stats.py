"""The statistics courier's copy-on-write upsert writes for its new files
(courier/destinations/delta_merge.py): readers skip files by them, so every bound must hold
for every row of its file, and be exact where Delta can say the value exactly."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from courier.destinations.delta_merge import STATS_PREFIX, write_files

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("score", pa.float64()),
        ("name", pa.string()),
        ("day", pa.date32()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("amount", pa.decimal128(10, 2)),
        ("flag", pa.bool_()),
        ("empty", pa.int32()),
    ]
)
T0 = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
LONG = "x" * (STATS_PREFIX - 1) + "m" + "tail"


def batch(ids: list[int], scores: list[float | None], names: list[str]) -> pa.RecordBatch:
    n = len(ids)
    return pa.RecordBatch.from_pydict(
        {
            "id": ids,
            "score": scores,
            "name": names,
            "day": [date(2026, 11, 1) + timedelta(days=i) for i in ids],
            "at": [T0 + timedelta(microseconds=7 * i) for i in ids],
            "amount": [Decimal("0.10") * i for i in ids],
            "flag": [i % 2 == 0 for i in ids],
            "empty": [None] * n,
        },
        schema=SCHEMA,
    )


def written(tmp_path: Path, batches: list[pa.RecordBatch]) -> list[tuple[dict, pa.Table]]:
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    reader = pa.RecordBatchReader.from_batches(SCHEMA, iter(batches))
    return [
        (json.loads(a.stats), pq.read_table(tmp_path / a.path))
        for a in write_files(fs, reader, SCHEMA)
    ]


def test_bounds_hold_for_every_row_and_are_exact_where_delta_can_say_them(
    tmp_path: Path,
) -> None:
    [(stats, table)] = written(
        tmp_path,
        [batch([3, 1, 2], [0.5, None, -2.25], ["b", LONG, "a"]), batch([9], [4.0], ["c"])],
    )
    low, high = stats["minValues"], stats["maxValues"]
    assert stats["numRecords"] == table.num_rows == 4
    assert (low["id"], high["id"]) == (1, 9)
    assert (low["score"], high["score"]) == (-2.25, 4.0)
    assert (low["day"], high["day"]) == ("2026-11-02", "2026-11-10")
    # microseconds widened to whole milliseconds, outward
    assert low["at"] == "2026-11-22T10:00:00.123Z" and high["at"] == "2026-11-22T10:00:00.124Z"
    first, last = pc.min_max(table.column("at")).values()
    assert _utc(low["at"]) <= first.as_py() and last.as_py() <= _utc(high["at"])
    # a string past the prefix: the minimum cut, the maximum cut and raised above every value
    assert low["name"] == "a"
    assert high["name"] == "x" * (STATS_PREFIX - 1) + "n"
    assert all(v <= high["name"] for v in table.column("name").to_pylist())
    assert len(high["name"]) == STATS_PREFIX
    assert (low["amount"], high["amount"]) == (0.1, 0.9)  # 0.10 and 0.90, spelt exactly
    assert (low["flag"], high["flag"]) == (False, True)
    assert "empty" not in low and "empty" not in high  # nulls only: nullCount says so
    assert stats["nullCount"] == {
        "id": 0, "score": 1, "name": 0, "day": 0, "at": 0, "amount": 0, "flag": 0, "empty": 4,
    }  # fmt: skip


def test_a_decimal_no_double_spells_is_bounded_by_the_next_double_outward(
    tmp_path: Path,
) -> None:
    from courier.destinations.delta_merge import _double_outward

    value = Decimal("0.123456789012345678")
    low, high = _double_outward(value, -math.inf), _double_outward(value, math.inf)
    assert Decimal(low) < value < Decimal(high)
    assert _double_outward(Decimal("89.99"), math.inf) == 89.99


@pytest.mark.parametrize(
    "names, scores",
    [
        (["a", "b"], [1.0, math.nan]),  # Parquet's bounds leave NaN out; Spark's order does not
        (["y" * (STATS_PREFIX - 1) + "\U0010ffff" + "z", "a"], [1.0, 2.0]),  # cannot be raised
        (["y" * (STATS_PREFIX - 1) + "\ud7ff" + "z", "a"], [1.0, 2.0]),  # raised: a surrogate
    ],
)
def test_a_file_with_one_column_it_cannot_bound_states_no_bounds(
    tmp_path: Path, names: list[str], scores: list[float]
) -> None:
    """All or none: delta-rs' reader takes a column missing from minValues as a bound of null
    and skips the file for every filter on that column."""
    [(stats, _)] = written(tmp_path, [batch([1, 2], scores, names)])
    assert "minValues" not in stats and "maxValues" not in stats
    assert stats["numRecords"] == 2 and stats["nullCount"]["id"] == 0


def test_filters_on_every_column_of_an_upserted_table_find_the_same_rows(
    tmp_path: Path,
) -> None:
    """delta-rs' pyarrow dataset prunes files by these statistics: each filter finds what the
    table's rows hold, before and after a copy-on-write upsert."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    from courier.config.models import LocalStorageConfig
    from courier.destinations.delta_table import DeltaFeedTable, delta_location
    from tests.destinations.test_delta_table import FEED, T0, rows

    location = delta_location("lake", LocalStorageConfig(path=str(tmp_path)), "feeds", tmp_path)
    table = DeltaFeedTable(FEED, location)
    table.write(rows([1, 2, 3, 4], "old", "r1"), "append", courier="c", run_id="r1", sequence=1)
    table.write(rows([2, 5, 6], "new", "r2"), "merge", courier="c", run_id="r2", sequence=2)
    dt = DeltaTable(location.table_url("orders"))
    assert len(dt.file_uris()) == 2  # the kept rows of 1-4 and the source: both ours
    every = dt.to_pyarrow_table()
    amount = pa.scalar(Decimal("3.75"), pa.decimal128(10, 2))
    filters = [
        ds.field("order_id") >= 5, ds.field("amount") > amount, ds.field("amount") == amount,
        ds.field("placed_at") == pa.scalar(T0), ds.field("note") == "old",
        ds.field("attrs") == '{"k": 1}', ds.field("_courier_run_id") == "r2",
        ds.field("_courier_loaded_at") <= pa.scalar(T0),
    ]  # fmt: skip
    for f in filters:
        expected = sorted(every.filter(f).column("order_id").to_pylist())
        assert expected, f
        got = dt.to_pyarrow_dataset().to_table(filter=f).column("order_id").to_pylist()
        assert sorted(got) == expected, f


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
