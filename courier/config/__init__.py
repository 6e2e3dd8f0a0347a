from courier.config.models import (
    CourierConfig,
    FeedConfig,
    GroupConfig,
    LoadOperation,
    Settings,
    StorageConfig,
    StreamConfig,
)

__all__ = [
    "CourierConfig",
    "FeedConfig",
    "GroupConfig",
    "LoadOperation",
    "Settings",
    "StorageConfig",
    "StreamConfig",
]
