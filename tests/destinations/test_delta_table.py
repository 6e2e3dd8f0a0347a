"""Delta feed tables (courier/destinations/delta_table.py) on a local folder, a moto S3 server
and Azurite: typed schema, append / merge / overwrite, the run's application transaction,
schema evolution and refusals, concurrent writers, and storage errors that name the table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import duckdb
import polars as pl
import pyarrow as pa
import pytest
from azure.storage.blob import BlobServiceClient

from courier.config.models import (
    AzureStorageConfig,
    FeedConfig,
    LocalStorageConfig,
    S3StorageConfig,
)
from courier.destinations.delta_table import (
    DeltaFeedTable,
    DeltaLocation,
    TransientLoadError,
    app_id,
    delta_location,
    feed_arrow_schema,
)
from courier.errors import LoadError
from tests.servers import AZURITE_KEY, azurite_connection_string

FEED = FeedConfig(
    id="orders",
    fields={
        "order_id": "bigint",
        "amount": "decimal(10,2)",
        "placed_at": "timestamp",
        "attrs": "json",
        "note": "string",
    },
    primary_key=["order_id"],
)
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def rows(ids: list[int], note: str, run_id: str = "r1", feed: FeedConfig = FEED) -> pa.Table:
    n = len(ids)
    data = {
        "order_id": ids,
        "amount": [Decimal("1.25") * i for i in ids],
        "placed_at": [T0] * n,
        "attrs": ['{"k": 1}'] * n,
        "note": [note] * n,
        "_courier_run_id": [run_id] * n,
        "_courier_loaded_at": [T0] * n,
    }
    for extra in feed.fields:
        data.setdefault(extra, [None] * n)
    return pa.table(data).select(feed_arrow_schema(feed).names).cast(feed_arrow_schema(feed))


@pytest.fixture(params=["local", "s3", "azure"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> DeltaLocation:
    if request.param == "local":
        return delta_location("lake", LocalStorageConfig(path=str(tmp_path)), "feeds", tmp_path)
    return request.getfixturevalue(f"{request.param}_location")  # type: ignore[no-any-return]


@pytest.fixture
def s3_location(moto_endpoint: str, aws_env: None) -> DeltaLocation:
    bucket = f"delta-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    config = S3StorageConfig(
        type="s3", bucket=bucket, prefix="lake", endpoint_url=moto_endpoint, region="us-east-1"
    )
    return delta_location("lake", config, "feeds", Path("."))


@pytest.fixture
def azure_location(azurite_delta_endpoint: str) -> Iterator[DeltaLocation]:
    conn = azurite_connection_string(azurite_delta_endpoint)
    container = f"delta-{uuid.uuid4().hex[:12]}"
    service = BlobServiceClient.from_connection_string(conn)
    service.create_container(container)
    yield delta_location(
        "lake",
        AzureStorageConfig(type="azure", container=container, connection_string=conn),
        "feeds",
        Path("."),
    )
    service.close()


def read(table: DeltaFeedTable) -> list[dict[str, Any]]:
    return sorted(table.to_arrow().to_pylist(), key=lambda r: r["order_id"])


@pytest.mark.integration
def test_merge_append_overwrite_with_the_runs_transaction(location: DeltaLocation) -> None:
    table = DeltaFeedTable(FEED, location)
    assert table.open() is None and table.row_count() is None
    assert table.plan_schema().changes("orders") == ["created feed table orders"]
    assert table.write(rows([1, 2, 3], "a", "r1"), "merge", courier="c", run_id="r1", sequence=1)
    # the same run again: skipped; a lower version, or this one from another run: refused,
    # nothing written (delta-rs itself would accept both)
    assert not table.write(rows([1], "again", "r1"), "merge", courier="c", run_id="r1", sequence=1)
    for run_id, seq in (("r0", 0), ("x1", 1)):
        with pytest.raises(
            LoadError,
            match=r"feed orders: the Delta table .*orders already "
            r"holds application transaction courier:c:orders version 1, and "
            rf"this run \({run_id}\) is number {seq} of courier c",
        ):
            table.write(rows([9], "old", run_id), "merge", courier="c", run_id=run_id, sequence=seq)
    assert table.open(refresh=True).version() == 0  # type: ignore[union-attr]
    assert table.write(rows([3, 4], "b", "r2"), "merge", courier="c", run_id="r2", sequence=2)
    got = read(table)
    assert [(r["order_id"], r["note"], r["_courier_run_id"]) for r in got] == [
        (1, "a", "r1"),
        (2, "a", "r1"),
        (3, "b", "r2"),
        (4, "b", "r2"),
    ]
    assert got[0]["amount"] == Decimal("1.25") and got[0]["placed_at"] == T0
    assert table.committed_version(app_id("c", "orders")) == 2
    # another courier keeps its own sequence
    assert table.write(rows([5], "x", "q1"), "merge", courier="other", run_id="q1", sequence=1)
    # an empty source commits only the transaction
    assert table.write(rows([], "-", "r3"), "merge", courier="c", run_id="r3", sequence=3)
    assert table.row_count() == 5
    assert table.write(rows([7], "t", "r4"), "overwrite", courier="c", run_id="r4", sequence=4)
    assert [r["order_id"] for r in read(table)] == [7]
    history = table.history()
    assert [h["run_id"] for h in history[:5]] == ["r4", "r3", "q1", "r2", "r1"]
    assert history[0]["operation"] == "WRITE" and history[2]["courier"] == "other"
    # readable by polars and by DuckDB through a pyarrow dataset
    from deltalake import DeltaTable

    dt = DeltaTable(table.url, storage_options=location.options)
    assert pl.read_delta(table.url, storage_options=location.options)["order_id"].to_list() == [7]
    con = duckdb.connect()
    con.register("feed", dt.to_pyarrow_dataset())
    assert con.execute("SELECT order_id, note FROM feed").fetchall() == [(7, "t")]


@pytest.mark.integration
def test_append_without_primary_key_and_optimize(tmp_path: Path) -> None:
    feed = FeedConfig(id="events", fields={"order_id": "bigint", "note": "string"})
    location = delta_location("lake", LocalStorageConfig(path=str(tmp_path)), "feeds", tmp_path)
    table = DeltaFeedTable(feed, location)
    for seq in range(1, 6):
        table.write(
            rows([1, 2], f"n{seq}", f"r{seq}", feed),
            "append",
            courier="c",
            run_id=f"r{seq}",
            sequence=seq,
        )
    assert table.row_count() == 10
    result = table.optimize(vacuum_hours=0)
    assert result["compacted"]["numFilesRemoved"] == 5 and result["vacuumed_files"] == 5
    assert table.row_count() == 10
    assert table.sample(3) and len(table.sample(3)) == 3


@pytest.mark.integration
def test_new_columns_evolve_and_refusals_write_nothing(tmp_path: Path) -> None:
    location = delta_location("lake", LocalStorageConfig(path=str(tmp_path)), "feeds", tmp_path)
    table = DeltaFeedTable(FEED, location)
    table.write(rows([1], "a"), "merge", courier="c", run_id="r1", sequence=1)
    wider = FEED.model_copy(update={"fields": {**FEED.fields, "channel": "string"}})
    t2 = DeltaFeedTable(wider, location)
    assert t2.plan_schema().changes("orders") == ["added column orders.channel string"]
    assert t2.write(rows([1, 2], "b", "r2", wider), "merge", courier="c", run_id="r2", sequence=2)
    assert "channel" in t2.to_arrow().schema.names and t2.row_count() == 2
    version = t2.open(refresh=True).version()  # type: ignore[union-attr]

    changed = FEED.model_copy(update={"fields": {**FEED.fields, "note": "bigint"}})
    with pytest.raises(
        LoadError,
        match=r"feed orders: column note is string in the Delta table .*"
        r"feeds/orders\.toml.*Change the type back",
    ):
        DeltaFeedTable(changed, location).plan_schema()
    rekeyed = FEED.model_copy(update={"primary_key": ["note"]})
    with pytest.raises(LoadError, match=r"primary key \(order_id\).*says \(note\)") as err:
        DeltaFeedTable(rekeyed, location).plan_schema()
    assert str(tmp_path / "feeds" / "orders") in str(err.value)
    # another table at the feed's path
    from deltalake import write_deltalake

    other = FeedConfig(id="orders", fields={"x": "string"})
    write_deltalake(str(tmp_path / "feeds" / "foreign"), pa.table({"x": ["1"]}))
    foreign = delta_location("lake", LocalStorageConfig(path=str(tmp_path)), "feeds", tmp_path)
    alien = DeltaFeedTable(other.model_copy(update={"id": "foreign"}), foreign)
    with pytest.raises(LoadError, match=r"feed foreign: the Delta table at .*foreign is not this"):
        alien.plan_schema()
    assert t2.open(refresh=True).version() == version  # type: ignore[union-attr]


@pytest.mark.integration
@pytest.mark.parametrize("store", ["local", "s3", "azure"])
def test_concurrent_couriers_both_land(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store == "local":
        location = delta_location("lake", LocalStorageConfig(path=str(tmp_path)), "feeds", tmp_path)
    else:
        location = request.getfixturevalue(f"{store}_location")
    DeltaFeedTable(FEED, location).write(
        rows([0], "seed"), "merge", courier="seed", run_id="s", sequence=1
    )

    def load(courier: str) -> int:
        table = DeltaFeedTable(FEED, location)
        base = 1000 if courier == "a" else 2000
        for seq in range(1, 5):
            ids = [base + seq * 10 + i for i in range(3)]
            table.write(
                rows(ids, courier, f"{courier}{seq}"),
                "merge",
                courier=courier,
                run_id=f"{courier}{seq}",
                sequence=seq,
            )
        return seq

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(load, ["a", "b"])) == [4, 4]
    table = DeltaFeedTable(FEED, location)
    assert table.row_count() == 1 + 2 * 4 * 3
    assert table.committed_version(app_id("a", "orders")) == 4
    assert table.committed_version(app_id("b", "orders")) == 4


@pytest.mark.integration
def test_missing_bucket_names_feed_and_table(moto_endpoint: str, aws_env: None) -> None:
    config = S3StorageConfig(
        type="s3", bucket="no-such-bucket-here", endpoint_url=moto_endpoint, region="us-east-1"
    )
    table = DeltaFeedTable(FEED, delta_location("lake", config, "feeds", Path(".")))
    with pytest.raises(
        LoadError,
        match=r"feed orders: open Delta table s3://no-such-bucket-here/"
        r"feeds/orders: the bucket or container does not exist.*NoSuchBucket",
    ):
        table.plan_schema()


@pytest.mark.integration
def test_wrong_azure_key_names_feed_and_table(azurite_endpoint: str) -> None:
    good = azurite_connection_string(azurite_endpoint)
    BlobServiceClient.from_connection_string(good).create_container("wrongkey")
    bad_key = AZURITE_KEY[:-8] + "AAAAAAA="
    config = AzureStorageConfig(
        type="azure",
        container="wrongkey",
        connection_string=azurite_connection_string(azurite_endpoint, bad_key),
    )
    table = DeltaFeedTable(FEED, delta_location("lake", config, "feeds", Path(".")))
    with pytest.raises(
        LoadError,
        match=r"feed orders: .*az://wrongkey/feeds/orders: storage "
        r"refused the credentials",
    ) as err:
        table.plan_schema()
    assert bad_key not in str(err.value)
    assert not isinstance(err.value, TransientLoadError)


def test_storage_options_come_from_the_storage_entry(tmp_path: Path) -> None:
    s3 = delta_location(
        "lake",
        S3StorageConfig(
            type="s3",
            bucket="b",
            prefix="p/",
            region="eu-west-1",
            endpoint_url="http://127.0.0.1:9",
            access_key_id="AK",
            secret_access_key="SK",
        ),
        "feeds",
        tmp_path,
    )
    assert s3.table_url("orders") == "s3://b/p/feeds/orders"
    assert s3.options == {
        "conditional_put": "etag",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
    }
    assert sorted(s3.secrets()) == ["AK", "SK"]
    az = delta_location(
        "lake",
        AzureStorageConfig(
            type="azure",
            container="c",
            account_url="https://acct.blob.core.windows.net",
            credential="KEY==",
        ),
        "x/y",
        tmp_path,
    )
    assert az.table_url("f") == "az://c/x/y/f"
    assert az.options == {
        "AZURE_STORAGE_ACCOUNT_NAME": "acct",
        "AZURE_STORAGE_ACCOUNT_KEY": "KEY==",
    }
    local = delta_location("lake", LocalStorageConfig(path="data"), "feeds", tmp_path)
    assert local.table_url("f") == str(tmp_path / "data" / "feeds" / "f")


def table_rows(location: DeltaLocation) -> dict[int, tuple[Any, ...]]:
    from deltalake import DeltaTable

    url = location.table_url("orders")
    t = DeltaTable(url, storage_options=location.options).to_pyarrow_table().to_pylist()
    assert len({r["order_id"] for r in t}) == len(t), "a key held twice"
    return {r["order_id"]: (r["note"], r.get("channel")) for r in t}


def test_upsert_rewrites_only_the_files_holding_its_keys(location: DeltaLocation) -> None:
    """Copy-on-write upsert (delta_merge.py): a file partly replaced is rewritten without
    the replaced rows, a file wholly replaced is only removed, an untouched file stays (same
    path); files written before a column was added read it as null; one commit."""
    from deltalake import DeltaTable

    table = DeltaFeedTable(FEED, location)
    for seq, ids in enumerate(([1, 2, 3, 4], [5, 6, 7, 8], [9, 10]), start=1):
        table.write(rows(ids, "old", f"r{seq}"), "append", courier="c", run_id=f"r{seq}",
                    sequence=seq)  # fmt: skip
    url = location.table_url("orders")
    before = set(DeltaTable(url, storage_options=location.options).file_uris())
    wider = FEED.model_copy(update={"fields": {**FEED.fields, "channel": "string"}})
    source = rows([2, 5, 6, 7, 8, 11], "new", "r4", wider).set_column(
        5, "channel", pa.array(["web"] * 6)
    )
    assert source.column_names[5] == "channel"
    wide = DeltaFeedTable(wider, location)
    assert wide.write(source, "merge", courier="c", run_id="r4", sequence=4)
    assert wide.replaced == 5
    got = table_rows(location)
    assert got == {
        **{i: ("old", None) for i in (1, 3, 4, 9, 10)},
        **{i: ("new", "web") for i in (2, 5, 6, 7, 8, 11)},
    }
    dt = DeltaTable(url, storage_options=location.options)
    after = set(dt.file_uris())
    assert len(before & after) == 1  # the file of 9 and 10, untouched
    assert len(after - before) == 2  # the kept rows of 1-4, and the source
    [commit] = dt.history(1)
    assert commit["courier.run_id"] == "r4" and commit["courier.load"] == "upsert"
    assert dt.transaction_version(app_id("c", "orders")) == 4
    assert dt.count() == 11  # numRecords of the added files


def test_upsert_that_loses_to_a_concurrent_insert_of_its_key_is_redone(
    tmp_path: Path,
) -> None:
    """Another writer commits the same new key between the upsert's read of the table and
    its commit: the commit lands only at the version it read after, so it fails, and the
    retry (from a fresh snapshot) replaces that row: the key is held once."""
    from deltalake import write_deltalake

    location = delta_location("lake", LocalStorageConfig(path=str(tmp_path)), "feeds", tmp_path)
    table = DeltaFeedTable(FEED, location)
    table.write(rows([1, 2], "old", "r1"), "merge", courier="c", run_id="r1", sequence=1)
    url = location.table_url("orders")
    attempts = []

    def source() -> pa.RecordBatchReader:
        data = rows([2, 3], "ours", "r2")

        def batches() -> Iterator[pa.RecordBatch]:
            if not attempts:  # the table is read already: another writer inserts key 3
                write_deltalake(url, rows([3], "theirs", "x"), mode="append")
            attempts.append(1)
            yield from data.to_batches()

        return pa.RecordBatchReader.from_batches(data.schema, batches())

    assert table.write(source, "merge", courier="c", run_id="r2", sequence=2)
    assert len(attempts) == 2
    assert table_rows(location) == {1: ("old", None), 2: ("ours", None), 3: ("ours", None)}
