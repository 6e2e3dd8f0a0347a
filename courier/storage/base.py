"""The storage seam: a few primitives every backend implements; the rest is derived here."""

from __future__ import annotations

import abc
import builtins
import posixpath
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from courier.errors import StorageError


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object. `version` is what exactly-once state compares (etag, or mtime)."""

    key: str
    size: int
    etag: str | None = None
    modified: datetime | None = None
    content_md5: str | None = None  # the store's own MD5 of the bytes (Azure's Content-MD5)

    @property
    def version(self) -> str:
        if self.etag:
            return self.etag
        return self.modified.isoformat() if self.modified else ""


def validate_key(storage: str, key: str) -> str:
    """Keys are relative POSIX paths without '..' segments (no escaping the storage root)."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise StorageError(
            storage, f"invalid object key {key!r}: use a relative path like 'a/b.ndjson'"
        )
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in ("", ".", ".."):
        raise StorageError(storage, f"invalid object key {key!r}: no empty, '.' or '..' segments")
    return key


def validate_prefix(storage: str, prefix: str) -> str:
    """List prefixes may end mid-name ('a/part-') but never leave the storage root."""
    if prefix.startswith("/") or "\\" in prefix or ".." in prefix.split("/"):
        raise StorageError(storage, f"invalid list prefix {prefix!r}: use a relative path")
    return prefix


class StorageBackend(abc.ABC):
    """Object storage with keys relative to the backend's root/prefix.

    Primitives: list, stat, read_bytes, download, write_bytes, delete. Writes are atomic:
    a reader sees the whole object or nothing.
    """

    type: str = ""

    def __init__(self, name: str):
        self.name = name

    # -- primitives -------------------------------------------------------------------------
    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, recursively, sorted by key."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Raise FileNotFoundError when the object does not exist."""

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Whole object; FileNotFoundError when absent."""

    @abc.abstractmethod
    def read_head(self, key: str, nbytes: int) -> bytes:
        """The object's first `nbytes` bytes (all of it when shorter), one ranged read;
        FileNotFoundError when absent."""

    @abc.abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """Stream the object into a local file (never the whole object in memory)."""

    @abc.abstractmethod
    def write_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Create or replace the object atomically."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; absent objects are not an error."""

    # -- derived ----------------------------------------------------------------------------
    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every object of `keys`; absent ones are not an error (backends batch)."""
        for key in keys:
            self.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix`."""
        self.delete_many([info.key for info in self.list(prefix)])

    def uri(self, key: str) -> str:
        """Where an object lives, as a URI another engine can open (file://, s3://, az://)."""
        local = self.local_path(key)
        if local is not None:
            return local.resolve().as_uri()
        return f"{self.type}://{self.name}/{validate_key(self.name, key)}"

    def local_path(self, key: str) -> Path | None:
        """A path DuckDB can read directly, when the backend is a local folder; else None."""
        return None

    def upload(self, src: Path, key: str) -> ObjectInfo:
        """Store a local file as an object (backends override to stream large files)."""
        return self.write_bytes(key, src.read_bytes())

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True

    def list_many(self, prefixes: Sequence[str]) -> Iterator[ObjectInfo]:
        """List several prefixes, skipping prefixes nested in another one (no double listing)."""
        kept: builtins.list[str] = []
        for p in sorted(set(prefixes)):
            if not any(p.startswith(k) for k in kept):
                kept.append(p)
        for p in kept:
            yield from self.list(p)

    def checksum(self, info: ObjectInfo) -> str | None:
        """What courier.files records as the object's checksum (SPEC 4): the storage's own
        MD5 of the bytes where it keeps one (Azure's Content-MD5: its ETag changes on every
        write), else its ETag (S3's: the MD5 of a single-part object's bytes)."""
        if info.content_md5:
            return "md5:" + info.content_md5
        return info.etag

    def same_content(self, info: ObjectInfo, recorded: set[str]) -> bool:
        """Whether the object still holds the bytes one of the recorded checksums was taken
        of (an Azure file loaded before Content-MD5 was recorded has its ETag there)."""
        return self.checksum(info) in recorded or info.etag in recorded

    def describe(self) -> str:
        return f"{self.type} storage '{self.name}'"

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class RemoteStorage(StorageBackend):
    """A backend behind a network client (S3, Azure Blob): keys live under an optional
    `prefix`, and the client is made on first use (thread-safe) and closed by close()."""

    def __init__(self, name: str, prefix: str):
        super().__init__(name)
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(name, self.prefix)
        self._client: Any = None
        self._lock = threading.Lock()

    sdk_errors: ClassVar[tuple[type[BaseException], ...]] = ()  # what _errors translates

    @abc.abstractmethod
    def _translate(self, exc: BaseException, action: str, key: str | None) -> Exception:
        """The SDK error as a StorageError (or FileNotFoundError) naming the action and key."""

    @contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Translate the SDK's errors raised inside the block."""
        try:
            yield
        except self.sdk_errors as exc:
            raise self._translate(exc, action, key) from exc

    def _raise(self, exc: BaseException, action: str, key: str | None) -> NoReturn:
        raise self._translate(exc, action, key) from exc

    @abc.abstractmethod
    def _make_client(self) -> Any:
        """The SDK client; StorageError with what to fix when the settings are unusable."""

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    uri_scheme = ""  # s3, az
    location = ""  # the bucket or container

    def uri(self, key: str) -> str:
        return f"{self.uri_scheme}://{self.location}/{self._key(key)}"

    def _key(self, key: str) -> str:
        """The object's name in the bucket or container."""
        validate_key(self.name, key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        if prefix:
            # A prefix may end in '/' or in part of a name; it must not escape the storage.
            validate_key(self.name, prefix + "_")
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def strip_etag(etag: str | None) -> str | None:
    """An ETag without the quotes S3 and Azure put around it."""
    return etag.strip('"') if etag else None


def join_key(prefix: str, key: str) -> str:
    return posixpath.join(prefix, key) if prefix else key
