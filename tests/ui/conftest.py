"""A seeded project shared by the status page tests of a module (seeding runs real loads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courier.ui import StatusApp, StatusReader
from tests.projects import ProjectFactory
from tests.ui.seed import JWT_SECRET, seeded_project


@pytest.fixture(autouse=True)
def _stream_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURIER_JWT_SECRET", JWT_SECRET)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectFactory]:
    mp = pytest.MonkeyPatch()
    mp.setenv("COURIER_JWT_SECRET", JWT_SECRET)
    try:
        yield seeded_project(Path(tmp_path_factory.mktemp("ui")) / "project")
    finally:
        mp.undo()


@pytest.fixture
def app(seeded: ProjectFactory) -> StatusApp:
    reader = StatusReader(seeded.context())
    app = StatusApp(reader)  # first: it counts the snapshots
    assert reader.refresh() is not None, reader.last_error
    return app
