"""The Delta destination (courier/destinations/delta.py) passes the destination contract on a
local folder, on a moto S3 server and on Azurite (3.37 or later: delta-rs lists a table's new
commits with List Blobs' startFrom, which older Azurite ignores)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from courier.config.models import AzureStorageConfig, LocalStorageConfig, S3StorageConfig
from courier.destinations.delta import DeltaDestination
from courier.destinations.delta_table import DeltaLocation, delta_location
from tests.destinations.contract import EVENTS, ORDERS, DestinationContract, Open
from tests.servers import azurite_connection_string


def opener(location: DeltaLocation) -> Iterator[Open]:
    opened: list[DeltaDestination] = []

    def open_() -> DeltaDestination:
        d = DeltaDestination("lake", location, [ORDERS, EVENTS], None)
        opened.append(d)
        return d

    yield open_
    for d in opened:
        d.close()


@pytest.mark.integration
class TestDeltaOnLocalFolder(DestinationContract):
    @pytest.fixture
    def destination(self, tmp_path: Path) -> Iterator[Open]:
        config = LocalStorageConfig(path=str(tmp_path / "lake"))
        yield from opener(delta_location("lake", config, "feeds", tmp_path))


@pytest.mark.integration
class TestDeltaOnMoto(DestinationContract):
    @pytest.fixture
    def destination(self, moto_endpoint: str, aws_env: None) -> Iterator[Open]:
        bucket = f"delta-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        config = S3StorageConfig(
            type="s3", bucket=bucket, endpoint_url=moto_endpoint, region="us-east-1"
        )
        yield from opener(delta_location("lake", config, "feeds", Path(".")))


@pytest.mark.integration
class TestDeltaOnAzurite(DestinationContract):
    @pytest.fixture
    def destination(self, azurite_delta_endpoint: str) -> Iterator[Open]:
        from azure.storage.blob import BlobServiceClient

        conn = azurite_connection_string(azurite_delta_endpoint)
        container = f"delta-{uuid.uuid4().hex[:12]}"
        with BlobServiceClient.from_connection_string(conn) as service:
            service.create_container(container)
        config = AzureStorageConfig(type="azure", container=container, connection_string=conn)
        yield from opener(delta_location("lake", config, "feeds", Path(".")))
