"""Storage config -> backend, importing each backend's SDK only when it is used."""

from __future__ import annotations

import importlib
from pathlib import Path

from courier.config.models import (
    AzureStorageConfig,
    LocalStorageConfig,
    S3StorageConfig,
)
from courier.errors import ConfigError
from courier.storage.base import StorageBackend

BACKENDS = {
    "local": ("courier.storage.local", "LocalStorage", None),
    "s3": ("courier.storage.s3", "S3Storage", "boto3"),
    "azure": ("courier.storage.azure", "AzureStorage", "azure-storage-blob"),
}


def create_storage(
    name: str,
    config: LocalStorageConfig | S3StorageConfig | AzureStorageConfig,
    root: Path,
) -> StorageBackend:
    module_name, class_name, package = BACKENDS[config.type]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"storage type '{config.type}' needs {package}: pip install 'courier[{config.type}]'",
            key=f"storages.{name}",
        ) from exc
    cls = getattr(module, class_name)
    if isinstance(config, LocalStorageConfig):
        path = Path(config.path)
        return cls(name, path if path.is_absolute() else root / path)  # type: ignore[no-any-return]
    return cls(name, config)  # type: ignore[no-any-return]
