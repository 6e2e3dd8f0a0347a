from courier.storage.base import ObjectInfo, StorageBackend
from courier.storage.registry import create_storage

__all__ = ["ObjectInfo", "StorageBackend", "create_storage"]
