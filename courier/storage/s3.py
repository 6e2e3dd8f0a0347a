"""S3 and S3-compatible object storage (boto3).

Keys are relative to the configured `prefix`. botocore errors are translated here, at the
boundary: a missing object is FileNotFoundError, everything else a StorageError (a
TransientStorageError when retrying later may help). Messages never carry credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from courier.errors import StorageError, TransientStorageError
from courier.storage.base import ObjectInfo, RemoteStorage, strip_etag

if TYPE_CHECKING:
    from courier.config.models import S3StorageConfig

MiB = 1 << 20

_MISSING_OBJECT = {"NoSuchKey", "404", "NotFound"}
_AUTH = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "Forbidden",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
}
_TRANSIENT = {
    "500",
    "503",
    "InternalError",
    "RequestLimitExceeded",
    "RequestTimeout",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
}
_CREDENTIALS_HINT = (
    "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
    "or access_key_id / secret_access_key in the storage config)"
)


def _safe_url(url: str) -> str:
    """The endpoint without user info, query or fragment (never echo secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url


class S3Storage(RemoteStorage):
    type = "s3"
    uri_scheme = "s3"
    sdk_errors = (BotoCoreError, ClientError, S3UploadFailedError, RetriesExceededError)

    def __init__(self, name: str, config: S3StorageConfig):
        super().__init__(name, config.prefix)
        self.config = config
        self.bucket = config.bucket
        self.location = config.bucket
        self._bucket_checked = False
        self._transfer = TransferConfig(
            multipart_threshold=8 * MiB,
            multipart_chunksize=8 * MiB,
            max_concurrency=8,
            preferred_transfer_client="classic",
        )

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self.config.endpoint_url:
            return _safe_url(self.config.endpoint_url)
        return f"AWS S3 ({self.config.region or 'default region'})"

    def _make_client(self) -> Any:
        cfg = self.config
        options: dict[str, Any] = {
            "connect_timeout": 3,
            "read_timeout": 30,
            "retries": {"max_attempts": 2, "mode": "standard"},
            "max_pool_connections": 16,
        }
        if cfg.endpoint_url:
            # S3-compatible stores (MinIO, moto, ...): path-style URLs, checksums only if needed.
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        session_args: dict[str, Any] = {}
        if cfg.access_key_id and cfg.secret_access_key:
            session_args = {
                "aws_access_key_id": cfg.access_key_id,
                "aws_secret_access_key": cfg.secret_access_key,
            }
        try:
            session = boto3.session.Session(region_name=cfg.region or None, **session_args)
            return session.client(
                "s3", endpoint_url=cfg.endpoint_url or None, config=Config(**options)
            )
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(
                self.name,
                f"cannot set up the S3 client for {self.endpoint} ({type(exc).__name__}): "
                "check endpoint_url and region",
            ) from exc

    def _missing_bucket(self) -> StorageError:
        return StorageError(
            self.name,
            f"bucket '{self.bucket}' does not exist at {self.endpoint}: check `bucket` "
            f"(and endpoint_url / region) in [storages.{self.name}] of config/courier.toml, "
            "or create the bucket",
        )

    def _check_bucket(self) -> None:
        """A bare 404 (HEAD) does not say whether the key or the bucket is missing: ask once."""
        if self._bucket_checked:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NotFound", "NoSuchBucket"):
                raise self._missing_bucket() from exc
            raise self._translate(exc, "check bucket", None) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "check bucket", None) from exc
        self._bucket_checked = True

    def _translate(self, exc: BaseException, action: str, key: str | None) -> Exception:
        if isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
            exc = exc.last_exception
        if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
            exc = exc.__context__
        what = f"{action} {key!r}" if key is not None else action
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if key is not None and code in _MISSING_OBJECT:
                if code != "NoSuchKey":
                    self._check_bucket()
                return FileNotFoundError(f"{self.describe()}: no object {key!r}")
            if code == "NoSuchBucket" or code in _MISSING_OBJECT:
                return self._missing_bucket()
            if code in _AUTH or status == 403:
                return StorageError(
                    self.name,
                    f"{what}: S3 refused access to bucket '{self.bucket}' ({code or status}): "
                    f"{_CREDENTIALS_HINT} and that they may use this bucket",
                )
            if code in _TRANSIENT or status == 429 or status >= 500:
                return TransientStorageError(
                    self.name,
                    f"{what}: S3 is busy or failing ({code or status}) at {self.endpoint}; "
                    "retry later",
                )
            if code == "InvalidBucketName":
                return StorageError(
                    self.name, f"bucket name '{self.bucket}' is invalid: check `bucket`"
                )
            message = str(error.get("Message", ""))[:200]
            return StorageError(self.name, f"{what} failed: {code or status} {message}".rstrip())
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                self.name, f"{what}: no usable AWS credentials: {_CREDENTIALS_HINT}"
            )
        if isinstance(exc, ConnectionError | HTTPClientError):
            return TransientStorageError(
                self.name,
                f"{what}: cannot reach {self.endpoint} ({type(exc).__name__}): check "
                "endpoint_url / region and that the service is running and reachable",
            )
        if isinstance(exc, ParamValidationError):
            return StorageError(self.name, f"{what}: invalid request: {str(exc)[:200]}")
        return StorageError(self.name, f"{what} failed: {type(exc).__name__}")

    # -- primitives -------------------------------------------------------------------------
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self._full_prefix(prefix)
        cut = len(self.prefix) + 1 if self.prefix else 0
        # S3 lists in UTF-8 byte order, which is Python's str order: no need to sort here.
        with self._errors(f"list {prefix!r}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", ()):
                    rel = obj["Key"][cut:]
                    if not rel or rel.endswith("/"):
                        continue  # folder markers made by consoles
                    yield ObjectInfo(
                        key=rel,
                        size=int(obj["Size"]),
                        etag=strip_etag(obj.get("ETag")),
                        modified=obj.get("LastModified"),
                    )

    def stat(self, key: str) -> ObjectInfo:
        full = self._key(key)
        with self._errors("stat", key):
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            etag=strip_etag(head.get("ETag")),
            modified=head.get("LastModified"),
        )

    def read_bytes(self, key: str) -> bytes:
        with self._errors("read", key):
            return self._get(key)

    def _get(self, key: str, **extra: Any) -> bytes:
        """The object's bytes (or the range `extra` asks for), its body always closed."""
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def read_head(self, key: str, nbytes: int) -> bytes:
        if nbytes <= 0:
            self.stat(key)  # absent: FileNotFoundError, as for any other length
            return b""
        from botocore.exceptions import ClientError

        with self._errors("read", key):
            try:
                return self._get(key, Range=f"bytes=0-{nbytes - 1}")
            except ClientError as exc:
                # S3 answers a range of an empty object with 416 InvalidRange
                if exc.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                return b""

    def download(self, key: str, dest: Path) -> None:
        full = self._key(key)
        # s3transfer writes a temporary file beside dest and renames it when complete.
        with self._errors("download", key):
            self.client.download_file(self.bucket, full, str(dest), Config=self._transfer)

    def write_bytes(self, key: str, data: bytes) -> ObjectInfo:
        full = self._key(key)
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data)
        return self.stat(key)

    def upload(self, src: Path, key: str) -> ObjectInfo:
        full = self._key(key)
        # Multipart above 8 MiB, streamed from the file; the object appears only when complete.
        with self._errors("upload", key):
            self.client.upload_file(str(src), self.bucket, full, Config=self._transfer)
        return self.stat(key)

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchKey":
                return  # some S3-compatible stores answer 404 where S3 answers 204
            self._raise(exc, f"delete {key!r}", None)
        except BotoCoreError as exc:
            self._raise(exc, f"delete {key!r}", None)

    DELETE_BATCH = 1000  # keys one DeleteObjects request takes at most

    def delete_many(self, keys: Iterable[str]) -> None:
        """One DeleteObjects request per 1,000 keys instead of a request per key."""
        wanted = list(keys)
        for start in range(0, len(wanted), self.DELETE_BATCH):
            batch = wanted[start : start + self.DELETE_BATCH]
            objects = [{"Key": self._key(k)} for k in batch]
            with self._errors("delete", batch[0]):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
            failed = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise StorageError(
                    self.name,
                    f"cannot delete {len(failed)} object(s) of s3://{self.bucket}, e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message', '')}; "
                    "check the credentials' s3:DeleteObject permission and run again",
                )

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"s3 storage '{self.name}' ({where})"
