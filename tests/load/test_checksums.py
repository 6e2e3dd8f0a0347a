"""SPEC 4: courier.files records a checksum per loaded file (the storage's ETag, or a content
hash of a local file), and a file replaced with other content of the same size and time is
noticed and loaded again: on a local folder, S3 (a real moto server) and Azure (Azurite)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from datetime import date

import boto3
import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from tests.projects import ProjectFactory, event
from tests.servers import azurite_connection_string
from tests.test_run_remote import point_events_at

DAY = date(2026, 11, 22)
KEY = "events/2026/11/22/00/part-a.ndjson"


def body(customer: int) -> bytes:
    """The same size whatever the (one-digit) customer."""
    return orjson.dumps(event(1, customer=customer)) + b"\n"


def customers(p: ProjectFactory) -> list[tuple[int]]:
    return p.sql("SELECT DISTINCT customer_id FROM order_items")


def check_replacement_is_loaded(p: ProjectFactory, put: Callable[[bytes], None]) -> None:
    put(body(1))
    first = p.run()
    assert first["status"] == "succeeded", first["error"]
    (checksum,) = p.sql("SELECT checksum FROM courier.files")[0]
    assert checksum, "no checksum recorded"
    assert p.run()["status"] == "skipped"  # unchanged: nothing to load
    put(body(2))  # other content, the same size (and, locally, the same mtime)
    second = p.run()
    assert second["status"] == "succeeded", second["error"]
    assert second["files"]["loaded"] == 1
    assert customers(p) == [(2,)]
    sums = [r[0] for r in p.sql("SELECT checksum FROM courier.files ORDER BY loaded_at")]
    assert len(sums) == 2 and sums[0] != sums[1] and all(sums)
    assert p.run()["status"] == "skipped"


def test_local_file_replaced_with_the_same_size_and_mtime_is_loaded_again(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    path = p.landing / KEY
    stamp: list[int] = []

    def put(data: bytes) -> None:
        p.land(KEY, data)
        if stamp:  # the replacement keeps the first file's modification time exactly
            os.utime(path, ns=(stamp[0], stamp[0]))
        else:
            stamp.append(path.stat().st_mtime_ns)

    check_replacement_is_loaded(p, put)
    # the same bytes written again (same size and time): not loaded twice
    p.land(KEY, body(2))
    os.utime(path, ns=(stamp[0], stamp[0]))
    assert p.run()["status"] == "skipped"


@pytest.mark.integration
def test_a_local_file_recorded_with_the_older_blake2b_hash_is_still_recognised(
    make_project: ProjectFactory,
) -> None:
    """Files loaded before XXH3 have BLAKE2b checksums in courier.files: unchanged, they are
    not loaded again; replaced under the same size and time, they are."""
    import duckdb

    p = make_project.events_project()
    path = p.landing / KEY
    p.land(KEY, body(1))
    stamp = path.stat().st_mtime_ns
    assert p.run()["status"] == "succeeded"
    (checksum,) = p.sql("SELECT checksum FROM courier.files")[0]
    assert checksum.startswith("xxh3:") and len(checksum) == len("xxh3:") + 32
    older = "blake2b:" + hashlib.blake2b(body(1), digest_size=16).hexdigest()
    with duckdb.connect(str(p.root / ".courier" / "feeds.duckdb")) as con:
        con.execute("UPDATE courier.files SET checksum = ?", [older])
    assert p.run()["status"] == "skipped"
    p.land(KEY, body(2))
    os.utime(path, ns=(stamp, stamp))
    second = p.run()
    assert second["status"] == "succeeded" and second["files"]["loaded"] == 1
    assert customers(p) == [(2,)]


def test_s3_object_replaced_with_the_same_size_is_loaded_again(
    make_project: ProjectFactory, moto_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"acme-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    p = make_project.events_project()
    lake = f"""
        [storages.lake]
        type = "s3"
        bucket = "{bucket}"
        endpoint_url = "${{TEST_S3_ENDPOINT}}"
        region = "us-east-1"
        """
    point_events_at(p, lake)
    monkeypatch.setenv("TEST_S3_ENDPOINT", moto_endpoint)
    check_replacement_is_loaded(p, lambda data: s3.put_object(Bucket=bucket, Key=KEY, Body=data))
    (checksum, etag) = p.sql("SELECT checksum, etag FROM courier.files ORDER BY loaded_at")[-1]
    assert checksum == etag == hashlib.md5(body(2)).hexdigest()  # S3's own: the bytes' MD5


@pytest.mark.integration
def test_azure_blob_replaced_with_the_same_size_is_loaded_again(
    make_project: ProjectFactory, azurite_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = f"streams{uuid.uuid4().hex[:8]}"
    conn = azurite_connection_string(azurite_endpoint)
    service = BlobServiceClient.from_connection_string(conn)
    client = service.create_container(container)
    monkeypatch.setenv("TEST_AZURE_CONN", conn)
    p = make_project.events_project()
    lake = f"""
        [storages.lake]
        type = "azure"
        container = "{container}"
        connection_string = "${{TEST_AZURE_CONN}}"
        """
    point_events_at(p, lake)
    try:
        check_replacement_is_loaded(p, lambda data: client.upload_blob(KEY, data, overwrite=True))
        # the content's MD5 as Azure keeps it, not the ETag (which changes on every write)
        sums = [r[0] for r in p.sql("SELECT checksum FROM courier.files ORDER BY loaded_at")]
        assert sums == ["md5:" + hashlib.md5(body(c)).hexdigest() for c in (1, 2)]
    finally:
        service.close()
