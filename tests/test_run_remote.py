"""Courier runs over S3 (a real moto server) and Azure Blob (a real Azurite): files are listed by
prefix, downloaded through the storage backend, and loaded exactly once."""

from __future__ import annotations

import uuid
from datetime import date

import boto3
import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from tests.projects import ProjectFactory, event
from tests.servers import azurite_connection_string

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 22)


def ndjson(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def point_events_at(p: ProjectFactory, storage_toml: str) -> None:
    p.write("config/courier.toml", storage_toml)
    text = (p.root / "config/couriers/events.toml").read_text()
    p.write("config/couriers/events.toml", text.replace('storage = "landing"', 'storage = "lake"'))


def check_runs(p: ProjectFactory) -> None:
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert result["files"] == {"found": 2, "loaded": 2, "skipped": 0}
    assert result["feeds"]["order_items"]["loaded"] == 5
    assert p.run()["status"] == "skipped"
    files = p.sql("SELECT storage, key, etag IS NOT NULL FROM courier.files ORDER BY key")
    assert files == [
        ("lake", "events/2026/11/22/00/part-a.ndjson", True),
        ("lake", "events/2026/11/22/13/part-b.ndjson", True),
    ]
    # downloads are removed after the run
    assert not any((p.root / ".courier" / "tmp").glob("*/*"))


def test_courier_run_over_s3(
    make_project: ProjectFactory, moto_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"acme-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="landing/events/2026/11/22/00/part-a.ndjson",
        Body=ndjson([event(1), event(2)]),
    )
    s3.put_object(
        Bucket=bucket,
        Key="landing/events/2026/11/22/13/part-b.ndjson",
        Body=ndjson([event(3, items=1)]),
    )
    s3.put_object(
        Bucket=bucket, Key="landing/events/2026/11/23/00/part-c.ndjson", Body=ndjson([event(4)])
    )
    s3.put_object(
        Bucket=bucket, Key="elsewhere/events/2026/11/22/00/x.ndjson", Body=ndjson([event(5)])
    )
    p = make_project.events_project()
    point_events_at(
        p,
        f"""
        [storages.lake]
        type = "s3"
        bucket = "{bucket}"
        prefix = "landing/"
        endpoint_url = "${{TEST_S3_ENDPOINT}}"
        region = "us-east-1"
        """,
    )
    monkeypatch.setenv("TEST_S3_ENDPOINT", moto_endpoint)
    check_runs(p)


def test_courier_run_over_azure(
    make_project: ProjectFactory, azurite_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = f"streams{uuid.uuid4().hex[:8]}"
    conn = azurite_connection_string(azurite_endpoint)
    service = BlobServiceClient.from_connection_string(conn)
    try:
        client = service.create_container(container)
        client.upload_blob(
            "landing/events/2026/11/22/00/part-a.ndjson", ndjson([event(1), event(2)])
        )
        client.upload_blob(
            "landing/events/2026/11/22/13/part-b.ndjson", ndjson([event(3, items=1)])
        )
        client.upload_blob("landing/events/2026/11/21/23/part-z.ndjson", ndjson([event(9)]))
    finally:
        service.close()
    monkeypatch.setenv("TEST_AZURE_CONN", conn)
    p = make_project.events_project()
    point_events_at(
        p,
        f"""
        [storages.lake]
        type = "azure"
        container = "{container}"
        prefix = "landing/"
        connection_string = "${{TEST_AZURE_CONN}}"
        """,
    )
    check_runs(p)
