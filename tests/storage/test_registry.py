"""create_storage builds the backend named by the config's `type`."""

from __future__ import annotations

from pathlib import Path

from courier.config.models import AzureStorageConfig, LocalStorageConfig, S3StorageConfig
from courier.storage.azure import AzureStorage
from courier.storage.local import LocalStorage
from courier.storage.registry import create_storage
from courier.storage.s3 import S3Storage
from tests.servers import azurite_connection_string


def test_local_relative_path_resolves_against_the_root(tmp_path: Path) -> None:
    storage = create_storage("landing", LocalStorageConfig(path=".courier/landing"), tmp_path)
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path / ".courier" / "landing"
    assert storage.name == "landing"


def test_local_absolute_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    storage = create_storage("landing", LocalStorageConfig(path=str(target)), Path("/nowhere"))
    assert isinstance(storage, LocalStorage)
    assert storage.root == target


def test_default_local_config(tmp_path: Path) -> None:
    storage = create_storage("landing", LocalStorageConfig(), tmp_path)
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path / ".courier" / "landing"


def test_s3(tmp_path: Path) -> None:
    config = S3StorageConfig(type="s3", bucket="acme-streams", prefix="landing/")
    storage = create_storage("lake", config, tmp_path)
    assert isinstance(storage, S3Storage)
    assert storage.type == "s3"
    assert storage.bucket == "acme-streams"
    assert storage.describe() == "s3 storage 'lake' (s3://acme-streams/landing)"
    storage.close()  # no client was created: nothing to close, no network used


def test_azure(tmp_path: Path) -> None:
    config = AzureStorageConfig(
        type="azure",
        container="streams",
        connection_string=azurite_connection_string("http://127.0.0.1:1/devstoreaccount1"),
    )
    storage = create_storage("blob", config, tmp_path)
    assert isinstance(storage, AzureStorage)
    assert storage.type == "azure"
    assert storage.describe() == "azure storage 'blob' (az://streams)"
    storage.close()
