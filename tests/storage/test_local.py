"""The local folder backend against the storage contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from courier.storage.base import StorageBackend
from courier.storage.local import LocalStorage
from tests.storage.contract import StorageContract


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[StorageBackend]:
        backend = LocalStorage("landing", tmp_path / "landing")
        yield backend
        backend.close()

    def test_missing_root_lists_nothing(self, tmp_path: Path) -> None:
        assert list(LocalStorage("x", tmp_path / "absent").list()) == []

    def test_local_path_is_readable_directly(self, storage: StorageBackend) -> None:
        storage.write_bytes("a/b.txt", b"hi")
        path = storage.local_path("a/b.txt")
        assert path is not None and path.read_bytes() == b"hi"

    def test_temporary_files_are_not_listed(self, storage: StorageBackend) -> None:
        assert isinstance(storage, LocalStorage)
        storage.write_bytes("a/b.txt", b"hi")
        (storage.root / "a" / ".tmp-upload").write_bytes(b"partial")
        assert [o.key for o in storage.list()] == ["a/b.txt"]


def test_list_prefix_cannot_leave_the_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from courier.errors import StorageError
    from courier.storage.local import LocalStorage

    (tmp_path / "outside.txt").write_text("secret")
    storage = LocalStorage("landing", tmp_path / "root")
    for prefix in ("../", "a/../../", "/etc/"):
        with pytest.raises(StorageError, match="invalid list prefix"):
            list(storage.list(prefix))
