"""Source tests: a project with one JSON stream, a fake REST/file API, the CLI as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projects import ProjectFactory
from tests.sources.api import FakeApi

SECRET = "source-tests-secret-0123456789abcdef"


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(events=25) as server:
        yield server


@pytest.fixture
def project(make_project: ProjectFactory) -> ProjectFactory:
    make_project.write(
        "config/courier.toml",
        """
        [project]
        time_zone = "UTC"

        [storages.landing]
        type = "local"
        path = "landing"

        [ingest]
        storage = "landing"
        """,
    )
    for stream in ("events", "pulled"):
        make_project.write(
            f"config/streams/{stream}.toml",
            'payload = "json"\n[auth]\nalgorithm = "HS256"\nsecret = "${COURIER_JWT_SECRET}"\n',
        )
    return make_project


def env(**extra: str) -> dict[str, str]:
    """The environment of a `courier` process: the stream secret and the source's token."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("COURIER_")}
    out.update(COURIER_JWT_SECRET=SECRET, POLL_TOKEN="t0ken", **extra)
    return out


def source(p: ProjectFactory, name: str, text: str) -> None:
    p.write(f"config/sources/{name}.toml", text)


def courier_cli(
    p: ProjectFactory, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(p.root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def landed_parts(p: ProjectFactory, stream: str) -> list[Path]:
    return sorted((p.root / "landing" / stream).rglob("part-*"))


def landed_records(p: ProjectFactory, stream: str) -> list[dict[str, Any]]:
    out = []
    for part in landed_parts(p, stream):
        out.extend(json.loads(line) for line in part.read_text().splitlines() if line)
    return out
