"""Shared fixtures: a fresh courier project per test, isolated from the environment."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.projects import ProjectFactory
from tests.servers import (
    MOTO_CREDENTIALS,
    ServerError,
    azurite_start_from_problem,
    start_azurite,
    start_moto_server,
    start_sail,
    start_spark_jvm,
    stop_process,
)

# Property tests assert what they find, never how fast: hypothesis' 200 ms per-example deadline
# and its too-slow health check fail on a busy machine (CI saw a test_patterns.py deadline).
settings.register_profile(
    "courier", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("courier")


@pytest.fixture(autouse=True)
def _isolated_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("COURIER_"):
            monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    return ProjectFactory(tmp_path / "project")


def _server(start: Callable[[], tuple[subprocess.Popen[bytes], str]], what: str) -> Iterator[str]:
    """A server for the session: its address yielded, the process stopped at the end."""
    try:
        proc, address = start()
    except ServerError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"cannot start {what}: {problem}", pytrace=False)
    try:
        yield address
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _server(
        lambda: start_moto_server(log_dir=tmp_path_factory.mktemp("moto")),
        "the moto server (run make install-dev)",
    )


@dataclass(frozen=True)
class CheckingS3:
    """A moto server that checks credentials: a bucket, and a key allowed to use it."""

    endpoint: str
    bucket: str
    key_id: str
    secret: str


@pytest.fixture(scope="session")
def checking_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CheckingS3]:
    import boto3

    setup = ["create_user", "create_access_key", "put_user_policy", "create_bucket"]
    for endpoint in _server(
        lambda: start_moto_server(log_dir=tmp_path_factory.mktemp("moto"), checks_after=len(setup)),
        "the moto server (run make install-dev)",
    ):
        anyone = {  # any key will do until the checks begin
            "aws_access_key_id": MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **anyone)
        iam.create_user(UserName="courier")
        key = iam.create_access_key(UserName="courier")["AccessKey"]
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}  # fmt: skip
        iam.put_user_policy(UserName="courier", PolicyName="s3", PolicyDocument=json.dumps(policy))
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **anyone)
        s3.create_bucket(Bucket="lake")  # the last request served without a check
        yield CheckingS3(endpoint, "lake", key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _server(lambda: start_azurite(tmp_path_factory.mktemp("azurite")), "Azurite")


@pytest.fixture
def azurite_delta_endpoint(azurite_endpoint: str) -> str:
    """Azurite for Delta tables: a version that honours List Blobs' startFrom."""
    problem = azurite_start_from_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return azurite_endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials for moto; no profile or config file of the developer leaks in."""
    for name, value in MOTO_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def sail_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Sail Spark Connect server for the session: sc://127.0.0.1:PORT."""
    yield from _server(lambda: start_sail(tmp_path_factory.mktemp("sail")), "Sail")


@pytest.fixture(scope="session")
def spark_jvm_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Apache Spark's JVM Spark Connect server (local[2]) for the session: one per test run."""
    yield from _server(
        lambda: start_spark_jvm(tmp_path_factory.mktemp("spark")), "the JVM Spark Connect server"
    )
