"""The S3 backend against a real moto server on loopback (tests/servers.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from courier.config.models import S3StorageConfig
from courier.errors import StorageError, TransientStorageError
from courier.storage.base import StorageBackend
from courier.storage.s3 import S3Storage
from tests.servers import free_port
from tests.storage.contract import StorageContract, assert_every_primitive_refused


def make_storage(endpoint: str, bucket: str, prefix: str = "", **extra: Any) -> S3Storage:
    config = S3StorageConfig(
        type="s3", bucket=bucket, prefix=prefix, endpoint_url=endpoint, region="us-east-1", **extra
    )
    return S3Storage("lake", config)


@pytest.fixture
def s3_client(moto_endpoint: str, aws_env: None) -> Iterator[Any]:
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    yield client
    client.close()


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = f"courier-test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.mark.integration
class TestS3Storage(StorageContract):
    @pytest.fixture
    def storage(self, moto_endpoint: str, bucket: str, s3_client: Any) -> Iterator[StorageBackend]:
        # Neighbours outside the storage prefix must never show up.
        for key in ("landing2/x.txt", "other/landing/y.txt", "landing"):
            s3_client.put_object(Bucket=bucket, Key=key, Body=b"not mine")
        backend = make_storage(moto_endpoint, bucket, prefix="landing/")
        yield backend
        backend.close()


@pytest.mark.integration
class TestS3Specifics:
    def test_keys_live_under_the_prefix(
        self, moto_endpoint: str, bucket: str, s3_client: Any
    ) -> None:
        for prefix in ("landing", "landing/", "/landing/"):
            storage = make_storage(moto_endpoint, bucket, prefix=prefix)
            storage.write_bytes("s/a.txt", b"x")
            storage.close()
        listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
        assert [o["Key"] for o in listed] == ["landing/s/a.txt"]

    def test_no_prefix_uses_the_bucket_root(
        self, moto_endpoint: str, bucket: str, s3_client: Any
    ) -> None:
        storage = make_storage(moto_endpoint, bucket)
        storage.write_bytes("s/a.txt", b"x")
        assert [o.key for o in storage.list()] == ["s/a.txt"]
        assert storage.describe() == f"s3 storage 'lake' (s3://{bucket})"
        storage.close()
        assert s3_client.get_object(Bucket=bucket, Key="s/a.txt")["Body"].read() == b"x"

    def test_delete_many_sends_a_request_per_batch_and_keeps_the_neighbours(
        self, moto_endpoint: str, bucket: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        storage = make_storage(moto_endpoint, bucket, prefix="landing")
        for i in range(5):
            storage.write_bytes(f"scratch/{i}.parquet", b"x")
        s3_client.put_object(Bucket=bucket, Key="scratch/0.parquet", Body=b"not mine")
        requests = []
        storage.client.meta.events.register(
            "before-call.s3.DeleteObjects", lambda **kw: requests.append(kw)
        )
        monkeypatch.setattr(storage, "DELETE_BATCH", 2)
        storage.delete_prefix("scratch/")
        assert len(requests) == 3  # 5 keys, 2 a request; never a request per key
        assert list(storage.list()) == []
        assert s3_client.get_object(Bucket=bucket, Key="scratch/0.parquet")["Body"].read()
        storage.close()

    def test_folder_markers_are_not_objects(
        self, moto_endpoint: str, bucket: str, s3_client: Any
    ) -> None:
        s3_client.put_object(Bucket=bucket, Key="landing/", Body=b"")
        s3_client.put_object(Bucket=bucket, Key="landing/s/", Body=b"")
        s3_client.put_object(Bucket=bucket, Key="landing/s/a.txt", Body=b"x")
        storage = make_storage(moto_endpoint, bucket, prefix="landing")
        assert [o.key for o in storage.list()] == ["s/a.txt"]
        storage.close()

    def test_list_requests_only_the_prefix(
        self, moto_endpoint: str, bucket: str, s3_client: Any
    ) -> None:
        def put(i: int) -> None:
            s3_client.put_object(Bucket=bucket, Key=f"landing/other/{i:05d}.ndjson", Body=b"")

        # S3 answers 1,000 keys a page; the page is lowered to 100 here (the list asks for it),
        # so 110 keys stand in for 1,100 (moto takes ~14 ms a put: 15 s for 1,100)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(110)))
        for key in ("a", "b", "c"):
            s3_client.put_object(Bucket=bucket, Key=f"landing/want/{key}.ndjson", Body=b"x")

        storage = make_storage(moto_endpoint, bucket, prefix="landing/")
        calls: list[dict[str, Any]] = []

        def small_pages(params: dict[str, Any], **_: Any) -> None:
            params["MaxKeys"] = 100

        events = storage.client.meta.events
        events.register("provide-client-params.s3.ListObjectsV2", small_pages)
        events.register("before-call.s3.ListObjectsV2", lambda params, **_: calls.append(params))
        found = [o.key for o in storage.list("want/")]
        assert found == ["want/a.ndjson", "want/b.ndjson", "want/c.ndjson"]
        assert len(calls) == 1
        assert calls[0]["query_string"]["prefix"] == "landing/want/"
        # ... while the other prefix, over one page, takes two requests and lists every key
        calls.clear()
        assert sum(1 for _ in storage.list("other/")) == 110
        assert len(calls) == 2
        assert calls[0]["query_string"]["max-keys"] == 100
        storage.close()

    def test_large_upload_is_multipart(
        self, moto_endpoint: str, bucket: str, tmp_path: Path
    ) -> None:
        src = tmp_path / "large.bin"
        src.write_bytes(b"x" * (17 << 20))
        storage = make_storage(moto_endpoint, bucket, prefix="landing")
        parts: list[str] = []
        storage.client.meta.events.register(
            "before-call.s3.UploadPart", lambda params, **_: parts.append("part")
        )
        info = storage.upload(src, "big.bin")
        assert info.size == 17 << 20
        assert len(parts) == 3
        assert info.etag is not None and info.etag.endswith("-3")
        storage.close()

    def test_credentials_from_config(
        self, moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        storage = make_storage(
            moto_endpoint, bucket, access_key_id="AKIDCONFIG", secret_access_key="from-config"
        )
        storage.write_bytes("a.txt", b"x")
        creds = storage.client._request_signer._credentials
        assert creds.access_key == "AKIDCONFIG"
        storage.close()

    def test_no_credentials_anywhere(
        self, moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        storage = make_storage(moto_endpoint, bucket)
        with pytest.raises(StorageError, match="no usable AWS credentials.*AWS_ACCESS_KEY_ID"):
            list(storage.list())
        storage.close()

    def test_missing_bucket(self, moto_endpoint: str, aws_env: None, tmp_path: Path) -> None:
        name = f"courier-missing-{uuid.uuid4().hex[:12]}"
        storage = make_storage(moto_endpoint, name, prefix="landing")
        assert_every_primitive_refused(
            storage,
            tmp_path,
            f"bucket '{name}' does not exist",
            "storage 'lake'",
            "create the bucket",
        )
        storage.close()

    def test_unreachable_endpoint_fails_fast(self, aws_env: None) -> None:
        storage = make_storage(f"http://127.0.0.1:{free_port()}", "some-bucket")
        for attempt in (
            lambda: list(storage.list("x/")),
            lambda: storage.stat("a.txt"),
            lambda: storage.write_bytes("a.txt", b"x"),
        ):
            started = time.monotonic()
            with pytest.raises(TransientStorageError) as info:
                attempt()
            assert time.monotonic() - started < 8
            message = str(info.value)
            assert "cannot reach http://127.0.0.1:" in message
            assert "endpoint_url" in message
            assert "Traceback" not in message
            assert isinstance(info.value.__cause__, EndpointConnectionError)
        storage.close()


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "message from S3"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


class TestS3ErrorTranslation:
    """Errors moto does not produce (it checks no signatures) translated without a server."""

    @pytest.fixture
    def storage(self) -> Iterator[S3Storage]:
        config = S3StorageConfig(
            type="s3",
            bucket="acme",
            endpoint_url="https://user:pa55@s3.example.com/?token=t0ken",
            access_key_id="AKIDSECRETID",
            secret_access_key="very-secret-key",
        )
        storage = S3Storage("lake", config)
        yield storage
        storage.close()

    @pytest.mark.parametrize(
        "code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"]
    )
    def test_auth_errors(self, storage: S3Storage, code: str) -> None:
        error = storage._translate(client_error(code, 403), "read", "a.txt")
        assert type(error) is StorageError
        message = str(error)
        assert code in message
        assert "bucket 'acme'" in message
        assert "AWS_ACCESS_KEY_ID" in message
        for secret in ("very-secret-key", "pa55", "t0ken"):
            assert secret not in message

    @pytest.mark.parametrize(
        ("code", "status"),
        [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503), ("X", 502)],
    )
    def test_throttling_and_server_errors_are_transient(
        self, storage: S3Storage, code: str, status: int
    ) -> None:
        error = storage._translate(client_error(code, status), "read", "a.txt")
        assert isinstance(error, TransientStorageError)
        assert "retry later" in str(error)
        assert "pa55" not in str(error) and "t0ken" not in str(error)
        assert "https://s3.example.com/" in str(error)

    def test_missing_key_is_file_not_found(self, storage: S3Storage) -> None:
        error = storage._translate(client_error("NoSuchKey", 404), "read", "a.txt")
        assert isinstance(error, FileNotFoundError)

    def test_other_errors_keep_the_code(self, storage: S3Storage) -> None:
        error = storage._translate(client_error("InvalidObjectState", 400), "read", "a.txt")
        assert type(error) is StorageError
        assert "read 'a.txt' failed: InvalidObjectState message from S3" in str(error)

    def test_invalid_storage_prefix(self) -> None:
        config = S3StorageConfig(type="s3", bucket="acme", prefix="a/../b")
        with pytest.raises(StorageError, match="invalid object key"):
            S3Storage("lake", config)

    @pytest.mark.parametrize("prefix", ["../", "a//", "/abs", "a/../"])
    def test_list_prefix_cannot_escape(self, storage: S3Storage, prefix: str) -> None:
        with pytest.raises(StorageError):
            list(storage.list(prefix))
