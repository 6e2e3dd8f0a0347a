"""The Spark engine's record work on a real cluster (Sail): files read per file with their rank
and line numbers (Sail has no input_file_name), bad lines rejected with reason and line and
counted, the last record per key winning by (rank, line) without QUALIFY, the rows written by
the cluster into a Delta table (create, MERGE, overwrite), and a committed run recognised by its
run id in the table (Sail writes no txn action)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from courier.engines import spark, spark_run
from courier.engines.spark import connect

FIRST = '{"id": 1, "v": "a"}\n{"id": 2, "v": "b"}\nnot json\n\n{"id": 1, "v": "c"}\n'
SECOND = '{"id": 2, "v": "z"}\n{"id": "x", "v": "q"}\n{"id": 3, "v": null}\n'
COLUMNS = {"id": "BIGINT", "v": "VARCHAR"}

pytestmark = pytest.mark.integration


def write_delta(
    session: Any, df: Any, path: str, key: list[str], mode: str, run_id: str, rewrite: bool = False
) -> None:
    """The engine's own writer, given rows as `SparkRunner.prepare` hands them over: without
    rank and line, each row carrying its run id; an upsert rewrites the table when `rewrite`
    (told its row count, the share of the table it is) and MERGEs otherwise."""
    from pyspark.sql import functions as F

    rows = df.drop(spark.RANK, spark.LINE).withColumn(spark.RUN_ID, F.lit(run_id))
    spark_run._write(session, rows, path, key, mode, rows.count() if rewrite else None)


@pytest.fixture(scope="module")
def sail(sail_remote: str) -> Iterator[Any]:
    session = connect("sail", sail_remote)
    yield session
    session.stop()


@pytest.fixture(params=["sail", "jvm"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Sail, and Apache Spark's own JVM server (the reject reasons hold on both)."""
    if request.param == "sail":
        yield request.getfixturevalue("sail")
        return
    session = connect("spark", request.getfixturevalue("spark_jvm_remote"))
    yield session
    session.stop()


@pytest.fixture
def files(tmp_path: Path) -> list[tuple[str, int]]:
    out = []
    for rank, text in enumerate([FIRST, SECOND]):
        path = tmp_path / f"part-{rank}.ndjson"
        path.write_text(text, encoding="utf-8")
        out.append((str(path), rank))
    return out


def test_lines_keep_file_rank_and_number_and_bad_lines_are_named(
    cluster: Any, files: list[tuple[str, int]]
) -> None:
    df = spark.read_ndjson(cluster, files, COLUMNS)
    count, bad = spark.bad_records(df, 10)
    assert count == 2
    assert bad == [
        (0, 3, "not a JSON record", "not json"),
        (1, 2, "field id: not readable as BIGINT", '{"id": "x", "v": "q"}'),
    ]
    assert spark.bad_records(df, 1)[0] == 2  # counted in full, returned bounded
    rows = spark.records(df).orderBy(spark.RANK, spark.LINE).collect()
    assert [(r[spark.RANK], r[spark.LINE], r["id"], r["v"]) for r in rows] == [
        (0, 1, 1, "a"),
        (0, 2, 2, "b"),
        (0, 5, 1, "c"),  # line 4 is blank: skipped, still counted
        (1, 1, 2, "z"),
        (1, 3, 3, None),
    ]
    # each file's first lines (the schema sample): blank lines count, as in the whole read
    first = spark.read_lines(cluster, files, 4).orderBy(spark.RANK, spark.LINE).collect()
    assert [(r[spark.RANK], r[spark.LINE]) for r in first] == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 1),
        (1, 2),
        (1, 3),
    ]


def test_lines_of_a_file_the_cluster_reads_in_parts_keep_their_numbers(
    cluster: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A file read in parts (3 MB: Sail splits it in two on two cores; Apache Spark here in 1 MB
    splits) has every line numbered by its place, read after read. Sail handed the second part
    of a file the first part's row ids in about one read of four, so it reads each file whole;
    Apache Spark numbers the parts by their offsets. Windows line ends are lines too, and a
    last line without a newline is read."""
    from pyspark.sql import functions as F

    total = 40_000
    lines = [f'{{"id": {i}, "pad": "{"x" * 60}"}}' for i in range(total)]
    path = tmp_path / "big.ndjson"
    path.write_bytes(("\r\n".join(lines[:10]) + "\r\n" + "\n".join(lines[10:])).encode())
    apache = request.node.callspec.params["cluster"] == "jvm"
    assert spark.reads_file_offsets(cluster, str(path)) == apache
    if apache:
        cluster.conf.set("spark.sql.files.maxPartitionBytes", "1000000")
    try:
        ids = F.get_json_object("value", "$.id").cast("bigint")
        for _ in range(6 if not apache else 2):
            read = spark.read_lines(cluster, [(str(path), 0)])
            misplaced = F.count(F.when(F.col(spark.LINE) != ids + 1, 1))
            assert tuple(read.agg(F.count(F.lit(1)), misplaced).collect()[0]) == (total, 0)
        if apache:  # the file was read in parts
            starts = cluster.read.text(str(path)).select("_metadata.file_block_start").distinct()
            assert starts.count() > 1
        head = spark.read_lines(cluster, [(str(path), 0)], 12).orderBy(spark.LINE).collect()
        assert [r["value"] for r in head] == lines[:12]  # no carriage return left on a line
    finally:
        if apache:
            cluster.conf.unset("spark.sql.files.maxPartitionBytes")


def test_a_file_too_big_for_one_value_is_refused_by_name_where_files_are_read_whole(
    cluster: Any, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sail reads each file whole, in one value (2 GiB at most: a 2.4 GB file failed there with
    "offset overflow" after 30 s); a bigger file is refused by name before any job. Apache Spark
    reads a file in parts, so it has no such limit. The limit is lowered to stand in for 2 GiB."""
    from courier.engines.base import WindowFile
    from courier.engines.spark_run import SparkRunner
    from courier.errors import EngineError

    path = tmp_path / "hour.ndjson"
    path.write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    size = path.stat().st_size
    files = [WindowFile(str(path), "things/2026/11/22/01/hour.ndjson", size, 0)]
    monkeypatch.setattr(spark, "WHOLE_FILE_LIMIT", size - 1)
    runner = SparkRunner("lake", "sc://cluster.example:15002", cluster)
    if request.node.callspec.params["cluster"] == "jvm":
        _, summary, _ = runner.read("things", files, [str(path)], {"id": "BIGINT"})
        assert summary.records == 2
        return
    with pytest.raises(EngineError) as refused:
        runner.read("things", files, [str(path)], {"id": "BIGINT"})
    assert str(refused.value).startswith(
        f"file things/2026/11/22/01/hour.ndjson is {size:,} bytes, and engine 'lake' "
        "(sc://cluster.example:15002) reads each file whole, in one value of at most "
        f"{size - 1:,} bytes"
    )
    assert "land the stream in smaller parts (the stream's roll_bytes)" in str(refused.value)
    monkeypatch.undo()  # under the limit the same file is read
    assert runner.read("things", files, [str(path)], {"id": "BIGINT"})[1].records == 2


def test_a_cbor_file_too_big_for_one_value_is_refused_on_every_cluster(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoded format's file is one binary value on every server (Apache Spark too)."""
    import cbor2

    from courier.engines.base import WindowFile
    from courier.engines.spark_run import SparkRunner
    from courier.errors import EngineError

    path = tmp_path / "hour.cbor"
    path.write_bytes(cbor2.dumps({"id": 1}) + cbor2.dumps({"id": 2}))
    size = path.stat().st_size
    files = [WindowFile(str(path), "things/2026/11/22/01/hour.cbor", size, 0)]
    monkeypatch.setattr(spark, "WHOLE_FILE_LIMIT", size - 1)
    runner = SparkRunner("lake", "sc://cluster.example:15002", cluster)
    with pytest.raises(EngineError) as refused:
        runner.read("things", files, [str(path)], {"id": "BIGINT"}, "cbor", {})
    assert str(refused.value).startswith(
        f"file things/2026/11/22/01/hour.cbor is {size:,} bytes, and engine 'lake'"
    )
    assert "a decoded format's file is decoded in one piece" in str(refused.value)
    monkeypatch.undo()
    assert runner.read("things", files, [str(path)], {"id": "BIGINT"}, "cbor", {})[1].records == 2


def test_cbor_files_are_decoded_on_the_cluster_into_numbered_lines(
    cluster: Any, tmp_path: Path
) -> None:
    """courier's CBOR reader runs in the cluster's Python (mapInArrow over binaryFile): each
    file's JSON lines numbered from 1, PIECE on its first row, a bad item as a row that
    spark_decode.bad_record reads; an empty file gives no row, a file is read once."""
    import cbor2

    from courier.engines import spark_decode

    first = tmp_path / "part-0.cbor"
    items = [{"id": 1, "v": "a"}, [1], {"id": 2, "v": "b"}]
    first.write_bytes(b"".join(cbor2.dumps(i) for i in items))
    empty = tmp_path / "part-1.cbor"
    empty.write_bytes(b"")
    files = [(str(first), 4, "k/part-0.cbor"), (str(empty), 5, "k/part-1.cbor")]
    rows = spark.read_decoded(cluster, files, "cbor", {}).collect()
    got = sorted((r[spark.RANK], r[spark.LINE], r[spark.PIECE], r["value"]) for r in rows)
    assert [g[:3] for g in got] == [(4, 1, 1), (4, 2, 0), (4, 2, 0)]
    values = [g[3] for g in got]
    assert '{"id":1,"v":"a"}' in values and '{"id":2,"v":"b"}' in values
    [bad] = [spark_decode.bad_record(v) for v in values if spark_decode.bad_record(v)]
    assert bad == ("item 2 is an array, not a map", "[1]")


def test_rows_written_once_read_back_with_their_columns_also_when_none(
    sail: Any, tmp_path: Path
) -> None:
    df = sail.createDataFrame([(1, "a"), (1, "b"), (2, "c")], ["id", "v"])
    for where, expected in (("id = 1", [(1, "a"), (1, "b")]), ("id > 5", [])):
        back = spark.materialize(sail, df.where(where), str(tmp_path / where.replace(" ", "")))
        assert back.columns == ["id", "v"]
        assert sorted((r["id"], r["v"]) for r in back.collect()) == expected


@pytest.mark.parametrize("rewrite", [False, True], ids=["merge", "rewrite"])
def test_last_record_wins_and_the_cluster_merges_into_delta(
    sail: Any, files: list[tuple[str, int]], tmp_path: Path, rewrite: bool
) -> None:
    table = str(tmp_path / "feeds" / "things")
    rows = spark.last_record_wins(spark.records(spark.read_ndjson(sail, files, COLUMNS)), ["id"])
    assert not spark.committed(sail, table, "run-1")
    write_delta(sail, rows, table, ["id"], "load", "run-1")
    assert spark.committed(sail, table, "run-1")
    loaded = sail.read.format("delta").load(table).orderBy("id").collect()
    assert [(r["id"], r["v"], r[spark.RUN_ID]) for r in loaded] == [
        (1, "c", "run-1"),
        (2, "z", "run-1"),
        (3, None, "run-1"),
    ]
    # a second run merges on the key: updates 2, inserts 4, leaves 1 and 3
    later = tmp_path / "part-9.ndjson"
    later.write_text('{"id": 2, "v": "y"}\n{"id": 4, "v": "d"}\n', encoding="utf-8")
    rows = spark.records(spark.read_ndjson(sail, [(str(later), 0)], COLUMNS))
    write_delta(sail, spark.last_record_wins(rows, ["id"]), table, ["id"], "load", "run-2", rewrite)
    loaded = sail.read.format("delta").load(table).orderBy("id").collect()
    assert [(r["id"], r["v"], r[spark.RUN_ID]) for r in loaded] == [
        (1, "c", "run-1"),
        (2, "y", "run-2"),
        (3, None, "run-1"),
        (4, "d", "run-2"),
    ]
    assert spark.committed(sail, table, "run-2")
    assert not spark.committed(sail, table, "run-3")
    # truncateAndLoad replaces the contents
    write_delta(sail, rows, table, ["id"], "truncateAndLoad", "run-3")
    assert sail.read.format("delta").load(table).count() == 2
    assert not spark.committed(sail, table, "run-1")


def test_the_cluster_reads_and_writes_s3_under_cluster_uri(
    moto_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    import boto3

    from courier.config.models import S3StorageConfig
    from tests.servers import MOTO_CREDENTIALS, start_sail, stop_process

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="landing/things/part-0.ndjson", Body=FIRST.encode())
    s3.put_object(Bucket="lake", Key="landing/things/part-1.ndjson", Body=SECOND.encode())
    storage = S3StorageConfig(type="s3", bucket="lake", prefix="landing/")
    assert spark.cluster_uri("lake", storage, "things/part-0.ndjson", {}) == (
        "s3://lake/landing/things/part-0.ndjson"
    )
    mapped = {"lake": "s3a://lake/landing/"}
    assert spark.cluster_uri("lake", storage, "a.ndjson", mapped) == "s3a://lake/landing/a.ndjson"
    # the cluster's own S3 settings (a real cluster has its instance role or keys)
    env = {
        **MOTO_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    proc, remote = start_sail(tmp_path / "sail", env)
    try:
        session = connect("sail-s3", remote)
        uris = [
            (spark.cluster_uri("lake", storage, f"things/part-{r}.ndjson", {}), r) for r in (0, 1)
        ]
        df = spark.read_ndjson(session, uris, COLUMNS)
        assert spark.bad_records(df, 10)[0] == 2
        rows = spark.last_record_wins(spark.records(df), ["id"])
        write_delta(session, rows, "s3://lake/feeds/things", ["id"], "load", "run-1")
        assert spark.committed(session, "s3://lake/feeds/things", "run-1")
        loaded = session.read.format("delta").load("s3://lake/feeds/things").orderBy("id")
        assert [(r["id"], r["v"]) for r in loaded.collect()] == [(1, "c"), (2, "z"), (3, None)]
        session.stop()
    finally:
        stop_process(proc)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="feeds/")["Contents"]]
    assert any(k.startswith("feeds/things/_delta_log/") for k in keys)


def test_the_cluster_reads_and_writes_azure(azurite_endpoint: str, tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    from courier.config.models import AzureStorageConfig
    from tests.servers import AZURITE_KEY, azurite_connection_string, start_sail, stop_process

    connection = azurite_connection_string(azurite_endpoint)
    service = BlobServiceClient.from_connection_string(connection)
    service.create_container("streams")
    for rank, text in enumerate([FIRST, SECOND]):
        blob = service.get_blob_client("streams", f"landing/things/part-{rank}.ndjson")
        blob.upload_blob(text.encode())
    storage = AzureStorageConfig(
        type="azure", container="streams", prefix="landing", connection_string=connection
    )
    uris = [(spark.cluster_uri("blob", storage, f"things/part-{r}.ndjson", {}), r) for r in (0, 1)]
    assert uris[0][0] == (
        "abfss://streams@devstoreaccount1.dfs.core.windows.net/landing/things/part-0.ndjson"
    )
    env = {  # the cluster's own Azure settings (Azurite's well-known development account)
        "AZURE_STORAGE_ACCOUNT_NAME": "devstoreaccount1",
        "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
        "AZURE_STORAGE_ENDPOINT": azurite_endpoint,
        "AZURE_ALLOW_HTTP": "true",
    }
    proc, remote = start_sail(tmp_path / "sail", env)
    table = "abfss://streams@devstoreaccount1.dfs.core.windows.net/feeds/things"
    try:
        session = connect("sail-azure", remote)
        df = spark.read_ndjson(session, uris, COLUMNS)
        assert spark.bad_records(df, 10)[0] == 2
        write_delta(
            session, spark.last_record_wins(spark.records(df), ["id"]), table, ["id"], "load", "r1"
        )
        assert spark.committed(session, table, "r1")
        loaded = session.read.format("delta").load(table).orderBy("id")
        assert [(r["id"], r["v"]) for r in loaded.collect()] == [(1, "c"), (2, "z"), (3, None)]
        session.stop()
    finally:
        stop_process(proc)
    names = [b.name for b in service.get_container_client("streams").list_blobs("feeds/")]
    assert any(n.startswith("feeds/things/_delta_log/") for n in names)


def test_the_schema_sample_comes_from_the_files_heads_as_the_cluster_would_take_it(
    sail: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new courier's schema sample is each file's first lines. Read from the heads through
    courier's storage (ranged reads) it holds what the cluster's own sample holds: blank lines
    counted, CRLF ends, lines that are not objects or not JSON left out, lines after the first
    `per_file` not read. The heads are read in growing ranges, never the whole file."""
    from courier.engines.base import WindowFile
    from courier.engines.spark_run import SparkRunner

    monkeypatch.setattr(spark_run, "SAMPLE_RECORDS", 8)
    monkeypatch.setattr(spark_run, "SAMPLE_MIN_PER_FILE", 4)  # 4 lines of each of 2 files
    monkeypatch.setattr(spark_run, "HEAD_FIRST_READ", 16)
    pad = "p" * 40
    texts = [
        f'{{"id": 1, "pad": "{pad}"}}\r\n\r\n[1, 2]\r\n{{"id": 2.5, "t": "2026-11-22"}}\r\n'
        + '{"late": true}\r\n' * 200,
        f'not json\n{{"id": 3, "v": {{"a": [1]}}}}\n{{"v": null, "pad": "{pad}"}}\n'
        + '{"other": 1}\n' * 200,
    ]
    files, ranked = [], []
    for rank, text in enumerate(texts):
        path = tmp_path / f"part-{rank}.ndjson"
        path.write_bytes(text.encode())
        files.append(WindowFile(str(path), path.name, path.stat().st_size, rank))
        ranked.append((str(path), rank))
    asked: dict[str, list[int]] = {f.key: [] for f in files}  # the heads are read in parallel

    def heads(f: WindowFile, nbytes: int) -> bytes:
        asked[f.key].append(nbytes)
        with open(f.uri, "rb") as fh:
            return fh.read(nbytes)

    runner = SparkRunner("lake", "sc://cluster.example:15002", sail)
    lines = runner._lines(ranked, pieces=True)
    from_cluster = runner.schema(lines, ranked, None, every_key=False)
    runner._heads, runner._window = heads, {f.rank: f for f in files}
    from_heads = runner.schema(lines, ranked, None, every_key=False)
    assert from_heads == from_cluster
    assert set(from_heads) == {"id", "pad", "t", "v", "other"}  # line 4 of file 2; no "late"
    assert from_heads["id"] == "DOUBLE"
    assert asked["part-0.ndjson"] == [16, 64, 256]  # grown until four lines were complete
    assert all(max(asked[f.key]) < f.size for f in files)
    # the steady check (each file's first 128 lines detect as the pinned types) the same way
    agreeing = {**from_heads, "late": "BOOLEAN"}
    for pinned, agrees in ((agreeing, True), ({**agreeing, "id": "BIGINT"}, False)):
        parsed = spark.parse_text(lines, pinned, pieces=True)
        assert runner._agrees(parsed, pinned) is spark_run.agrees(parsed, pinned) is agrees


def test_first_lines_of_a_head() -> None:
    data = b'{"a": 1}\n\n{"b": 2}\r\n{"c": 3}\n{"d": 4}'
    read = data.__getitem__

    def head(n: int) -> bytes:
        return read(slice(0, n))

    assert spark_run.first_lines(head, len(data), 3) == ['{"a": 1}', '{"b": 2}']
    assert spark_run.first_lines(head, len(data), 10) == [
        '{"a": 1}',
        '{"b": 2}',
        '{"c": 3}',
        '{"d": 4}',
    ]  # the last line, unended, is whole at the end of the object
    assert spark_run.first_lines(head, 0, 3) == []
    # the sample's lines start as objects; one that is not JSON after all is skipped
    assert spark_run.detect(['{"a": 1}', "{bad", '{"a": 2.5, "b": true}', '{"a": 1} x']) == {
        "a": "DOUBLE",
        "b": "BOOLEAN",
    }
