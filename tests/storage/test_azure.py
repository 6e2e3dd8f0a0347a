"""The Azure Blob backend against a real Azurite on loopback (tests/servers.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import ContainerClient

from courier.config.models import AzureStorageConfig
from courier.errors import StorageError, TransientStorageError
from courier.storage.azure import AzureStorage
from courier.storage.base import StorageBackend
from tests.servers import AZURITE_ACCOUNT, AZURITE_KEY, azurite_connection_string, free_port
from tests.storage.contract import StorageContract, assert_every_primitive_refused

pytestmark = pytest.mark.integration


def make_storage(connection_string: str, container: str, prefix: str = "") -> AzureStorage:
    config = AzureStorageConfig(
        type="azure", container=container, prefix=prefix, connection_string=connection_string
    )
    return AzureStorage("blob", config)


@pytest.fixture
def connection_string(azurite_endpoint: str) -> str:
    return azurite_connection_string(azurite_endpoint)


@pytest.fixture
def container(connection_string: str) -> Iterator[ContainerClient]:
    client = ContainerClient.from_connection_string(
        connection_string, container_name=f"courier-{uuid.uuid4().hex[:16]}"
    )
    client.create_container()
    yield client
    client.close()


class TestAzureStorage(StorageContract):
    @pytest.fixture
    def storage(
        self, connection_string: str, container: ContainerClient
    ) -> Iterator[StorageBackend]:
        # Neighbours outside the storage prefix must never show up.
        for key in ("landing2/x.txt", "other/landing/y.txt", "landing"):
            container.upload_blob(key, b"not mine")
        backend = make_storage(connection_string, container.container_name, prefix="landing/")
        yield backend
        backend.close()


class TestAzureSpecifics:
    def test_keys_live_under_the_prefix(
        self, connection_string: str, container: ContainerClient
    ) -> None:
        for prefix in ("landing", "landing/", "/landing/"):
            storage = make_storage(connection_string, container.container_name, prefix)
            storage.write_bytes("s/a.txt", b"x")
            storage.close()
        assert [b.name for b in container.list_blobs()] == ["landing/s/a.txt"]

    def test_no_prefix_uses_the_container_root(
        self, connection_string: str, container: ContainerClient
    ) -> None:
        storage = make_storage(connection_string, container.container_name)
        storage.write_bytes("s/a.txt", b"x")
        assert [o.key for o in storage.list()] == ["s/a.txt"]
        assert storage.describe() == f"azure storage 'blob' (az://{container.container_name})"
        storage.close()
        assert container.download_blob("s/a.txt").readall() == b"x"

    def test_delete_many_sends_a_batch_per_256_blobs_and_keeps_the_neighbours(
        self, connection_string: str, container: ContainerClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        storage = make_storage(connection_string, container.container_name, "landing")
        for i in range(5):
            storage.write_bytes(f"scratch/{i}.parquet", b"x")
        container.upload_blob("scratch/0.parquet", b"not mine")
        batches: list[int] = []
        real = storage._container.delete_blobs

        def counted(*blobs: Any, **kwargs: Any) -> Any:
            batches.append(len(blobs))
            return real(*blobs, **kwargs)

        monkeypatch.setattr(storage._container, "delete_blobs", counted)
        monkeypatch.setattr(storage, "DELETE_BATCH", 2)
        storage.delete_many([f"scratch/{i}.parquet" for i in range(5)] + ["never/was.txt"])
        assert batches == [2, 2, 2]  # 6 keys (one absent: not an error), 2 a request
        assert list(storage.list()) == []
        assert container.download_blob("scratch/0.parquet").readall() == b"not mine"
        storage.close()

    def test_large_upload_is_staged_in_blocks(
        self, connection_string: str, container: ContainerClient, tmp_path: Path
    ) -> None:
        src = tmp_path / "large.bin"
        src.write_bytes(b"x" * (17 << 20))
        storage = make_storage(connection_string, container.container_name, prefix="landing")
        info = storage.upload(src, "big.bin")
        assert info.size == 17 << 20
        committed, _ = container.get_blob_client("landing/big.bin").get_block_list()
        assert len(committed) == 3
        storage.close()

    def test_account_url_and_key(self, azurite_endpoint: str, container: ContainerClient) -> None:
        config = AzureStorageConfig(
            type="azure",
            container=container.container_name,
            account_url=azurite_endpoint,
            credential=AZURITE_KEY,
        )
        storage = AzureStorage("blob", config)
        storage.write_bytes("a.txt", b"x")
        assert storage.read_bytes("a.txt") == b"x"
        storage.close()

    def test_missing_container(self, connection_string: str, tmp_path: Path) -> None:
        name = f"courier-missing-{uuid.uuid4().hex[:12]}"
        storage = make_storage(connection_string, name, prefix="landing")
        assert_every_primitive_refused(
            storage, tmp_path, f"container '{name}' does not exist", "create it"
        )
        storage.close()

    def test_wrong_key(self, azurite_endpoint: str, container: ContainerClient) -> None:
        wrong = "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmUtZm9yLWF6dXJpdGUtdGVzdHMtMTIzNDU2Nzg5MA=="
        storage = make_storage(
            azurite_connection_string(azurite_endpoint, key=wrong), container.container_name
        )
        with pytest.raises(StorageError) as info:
            storage.write_bytes("a.txt", b"x")
        message = str(info.value)
        assert not isinstance(info.value, TransientStorageError)
        assert "connection_string" in message
        assert wrong not in message
        storage.close()

    def test_malformed_connection_string(self) -> None:
        storage = make_storage("AccountKey=s3cr3t;nonsense", "c")
        with pytest.raises(StorageError, match="invalid connection_string") as info:
            list(storage.list())
        assert "s3cr3t" not in str(info.value)

    def test_unreachable_endpoint_fails_fast(self) -> None:
        endpoint = f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"
        storage = make_storage(azurite_connection_string(endpoint), "c")
        attempts: list[Any] = [
            lambda: list(storage.list("x/")),
            lambda: storage.stat("a.txt"),
            lambda: storage.write_bytes("a.txt", b"x"),
        ]
        for attempt in attempts:
            started = time.monotonic()
            with pytest.raises(TransientStorageError) as info:
                attempt()
            assert time.monotonic() - started < 8
            message = str(info.value)
            assert "cannot reach http://127.0.0.1:" in message
            assert AZURITE_KEY not in message
            assert "Traceback" not in message
            assert isinstance(info.value.__cause__, ServiceRequestError)
        storage.close()
