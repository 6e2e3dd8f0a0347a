"""Azure Blob storage (azure-storage-blob); Azurite for tests and local development.

Keys are relative to the configured `prefix`. azure-core errors are translated here, at the
boundary: a missing blob is FileNotFoundError, everything else a StorageError (a
TransientStorageError when retrying later may help). Messages never carry the connection
string, keys or SAS tokens (the SDK's own messages may contain request URLs, so they are not
passed on).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient, LinearRetry

from courier.errors import StorageError, TransientStorageError
from courier.storage.base import ObjectInfo, RemoteStorage, strip_etag

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

    from courier.config.models import AzureStorageConfig

MiB = 1 << 20

_CREDENTIALS_HINT = (
    "check connection_string (AZURE_STORAGE_CONNECTION_STRING) or account_url + credential "
    "(account key or SAS token) in the storage config, and their permissions on the container"
)


def _error_code(exc: BaseException) -> str:
    """The storage error code (BlobNotFound, ContainerNotFound, ...) the SDK attaches."""
    return str(getattr(exc, "error_code", None) or "")


class AzureStorage(RemoteStorage):
    type = "azure"
    uri_scheme = "az"
    sdk_errors = (AzureError,)

    def __init__(self, name: str, config: AzureStorageConfig):
        super().__init__(name, config.prefix)
        self.config = config
        self.container = config.container
        self.location = config.container
        self._container_checked = False

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        client = self._client
        if client is not None:
            return f"{client.scheme}://{client.primary_hostname}"
        return "the Azure Blob endpoint"

    @property
    def _container(self) -> ContainerClient:
        return self.client  # type: ignore[no-any-return]

    def _make_client(self) -> ContainerClient:
        cfg = self.config
        options: dict[str, Any] = {
            # Fail fast when the endpoint is unreachable; the runner retries transient errors.
            "connection_timeout": 3,
            "read_timeout": 60,
            # (the SDK's default backs off 15 s and more between attempts)
            "retry_policy": LinearRetry(
                backoff=1, random_jitter_range=1, retry_total=3, retry_connect=1
            ),
            "max_single_put_size": 8 * MiB,
            "max_block_size": 8 * MiB,
        }
        try:
            if cfg.connection_string:
                return ContainerClient.from_connection_string(
                    cfg.connection_string, container_name=self.container, **options
                )
            return ContainerClient(
                account_url=cfg.account_url or "",
                container_name=self.container,
                credential=cfg.credential or None,
                **options,
            )
        except (ValueError, AzureError) as exc:
            setting = "connection_string" if cfg.connection_string else "account_url / credential"
            raise StorageError(
                self.name,
                f"invalid {setting} for container '{self.container}' ({type(exc).__name__}): "
                "copy the connection string from the storage account's Access keys, or set "
                "account_url = 'https://ACCOUNT.blob.core.windows.net'",
            ) from exc

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(self._key(key))

    def _missing_container(self) -> StorageError:
        return StorageError(
            self.name,
            f"container '{self.container}' does not exist at {self.endpoint}: create it "
            f"(az storage container create --name {self.container}) or fix `container` in "
            f"[storages.{self.name}] of config/courier.toml",
        )

    def _check_container(self) -> None:
        """A bare 404 (HEAD) may not say whether the blob or the container is missing."""
        if self._container_checked:
            return
        try:
            self._container.get_container_properties()
        except ResourceNotFoundError as exc:
            raise self._missing_container() from exc
        except AzureError as exc:
            raise self._translate(exc, "check container", None) from exc
        self._container_checked = True

    def _translate(self, exc: BaseException, action: str, key: str | None) -> Exception:
        what = f"{action} {key!r}" if key is not None else action
        if isinstance(exc, ResourceNotFoundError):
            code = _error_code(exc)
            if code == "ContainerNotFound":
                return self._missing_container()
            if key is not None and code in ("BlobNotFound", ""):
                if not code:
                    self._check_container()
                return FileNotFoundError(f"{self.describe()}: no object {key!r}")
            if not code:
                return self._missing_container()
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code == 403
        ):
            code = _error_code(exc) or "403"
            return StorageError(
                self.name,
                f"{what}: Azure refused access to container '{self.container}' ({code}): "
                f"{_CREDENTIALS_HINT}",
            )
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return TransientStorageError(
                self.name,
                f"{what}: cannot reach {self.endpoint} ({type(exc).__name__}): check "
                "account_url / BlobEndpoint in the connection string and that the service is "
                "running and reachable",
            )
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            code = _error_code(exc) or str(status)
            if status == 429 or status >= 500:
                return TransientStorageError(
                    self.name, f"{what}: Azure is busy or failing ({code}); retry later"
                )
            return StorageError(self.name, f"{what} failed: Azure answered {status} ({code})")
        return StorageError(self.name, f"{what} failed: {type(exc).__name__}")

    # -- primitives -------------------------------------------------------------------------
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self._full_prefix(prefix)
        cut = len(self.prefix) + 1 if self.prefix else 0
        found: list[ObjectInfo] = []
        with self._errors(f"list {prefix!r}"):
            for blob in self._container.list_blobs(name_starts_with=full or None):
                rel = blob.name[cut:]
                if not rel or rel.endswith("/"):
                    continue  # folder markers
                found.append(
                    ObjectInfo(
                        key=rel,
                        size=int(blob.size),
                        etag=strip_etag(blob.etag),
                        modified=blob.last_modified,
                        content_md5=_md5(blob),
                    )
                )
        found.sort(key=lambda o: o.key)
        yield from found

    def stat(self, key: str) -> ObjectInfo:
        blob = self._blob(key)
        with self._errors("stat", key):
            props = blob.get_blob_properties()
        return ObjectInfo(
            key=key,
            size=int(props.size),
            etag=strip_etag(props.etag),
            modified=props.last_modified,
            content_md5=_md5(props),
        )

    def read_bytes(self, key: str) -> bytes:
        blob = self._blob(key)
        with self._errors("read", key):
            return blob.download_blob(max_concurrency=4).readall()

    def read_head(self, key: str, nbytes: int) -> bytes:
        from azure.core.exceptions import HttpResponseError

        blob = self._blob(key)
        with self._errors("read", key):
            if nbytes <= 0:
                blob.get_blob_properties()  # absent: FileNotFoundError, as for any length
                return b""
            try:
                return blob.download_blob(offset=0, length=nbytes).readall()
            except HttpResponseError as exc:
                if exc.status_code != 416:  # a range of an empty blob: 416, nothing to read
                    raise
                return b""

    def download(self, key: str, dest: Path) -> None:
        blob = self._blob(key)
        dest = Path(dest)
        # Into a temporary file beside dest, renamed when complete: dest is never half written.
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh, self._errors("download", key):
                blob.download_blob(max_concurrency=4).readinto(fh)
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def write_bytes(self, key: str, data: bytes) -> ObjectInfo:
        blob = self._blob(key)
        with self._errors("write", key):
            result = blob.upload_blob(data, overwrite=True)
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=strip_etag(result.get("etag")),
            modified=result.get("last_modified"),
        )

    def upload(self, src: Path, key: str) -> ObjectInfo:
        blob = self._blob(key)
        # Above 8 MiB: staged blocks streamed from the file, committed at once at the end.
        with open(src, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            with self._errors("upload", key):
                result = blob.upload_blob(fh, length=size, overwrite=True, max_concurrency=4)
        return ObjectInfo(
            key=key,
            size=size,
            etag=strip_etag(result.get("etag")),
            modified=result.get("last_modified"),
        )

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            blob.delete_blob()
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "BlobNotFound":
                return
            if _error_code(exc) == "ContainerNotFound":
                raise self._missing_container() from exc
            self._check_container()  # a bare 404: the blob was already gone
        except AzureError as exc:
            self._raise(exc, f"delete {key!r}", None)

    DELETE_BATCH = 256  # blobs one batch request deletes at most

    def delete_many(self, keys: Iterable[str]) -> None:
        """One batch request per 256 blobs instead of a request per blob; a blob already
        gone (404) is not an error."""
        wanted = list(keys)
        for start in range(0, len(wanted), self.DELETE_BATCH):
            batch = wanted[start : start + self.DELETE_BATCH]
            with self._errors("delete", batch[0]):
                answers = self._container.delete_blobs(
                    *[self._key(k) for k in batch], raise_on_any_failure=False
                )
            failed = [
                (key, a) for key, a in zip(batch, answers, strict=True) if a.status_code >= 300
            ]
            if any(a.status_code != 404 for _, a in failed):
                key, answer = next((k, a) for k, a in failed if a.status_code != 404)
                raise StorageError(
                    self.name,
                    f"cannot delete {key!r} of container {self.container}: HTTP "
                    f"{answer.status_code} {answer.reason or ''}; check the credentials' "
                    "delete permission and run again",
                )
            if failed and len(failed) == len(batch):
                self._check_container()  # every blob 404: maybe the container is gone

    def describe(self) -> str:
        where = f"az://{self.container}/{self.prefix}" if self.prefix else f"az://{self.container}"
        return f"azure storage '{self.name}' ({where})"


def _md5(props: Any) -> str | None:
    """A blob's Content-MD5 (hex), which Azure computes for a blob put in one request and an
    uploader may set; None when the blob has none."""
    settings = getattr(props, "content_settings", None)
    digest = getattr(settings, "content_md5", None)
    return bytes(digest).hex() if digest else None
