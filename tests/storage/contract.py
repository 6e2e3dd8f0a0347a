"""The storage contract: every StorageBackend passes these tests.

Subclass `StorageContract` in a `Test*` class and provide a `storage` fixture that yields a
fresh, empty backend (and closes it afterwards).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from courier.errors import StorageError, TransientStorageError
from courier.storage.base import ObjectInfo, StorageBackend

INVALID_KEYS = ["../x", "/abs", "a//b", "a/../b", "a/./b", "", "a/", "a\\b"]
ODD_KEYS = ["with space/file name.ndjson", "ünïcødé/日本語 ファイル.json", "a+b/c=d&e%20f.txt"]


def keys(objects: list[ObjectInfo]) -> list[str]:
    return [o.key for o in objects]


def assert_every_primitive_refused(storage: StorageBackend, tmp: Path, *phrases: str) -> None:
    """Each primitive raises a StorageError (not transient: retrying will not help) whose
    message holds every phrase, and no partial download is left behind."""
    src = tmp / "src"
    src.write_bytes(b"x")
    attempts = [
        lambda: list(storage.list()),
        lambda: storage.stat("a.txt"),
        lambda: storage.read_bytes("a.txt"),
        lambda: storage.read_head("a.txt", 10),
        lambda: storage.write_bytes("a.txt", b"x"),
        lambda: storage.download("a.txt", tmp / "dest"),
        lambda: storage.upload(src, "a.txt"),
        lambda: storage.delete("a.txt"),
        lambda: storage.exists("a.txt"),
    ]
    for attempt in attempts:
        with pytest.raises(StorageError) as info:
            attempt()
        assert not isinstance(info.value, TransientStorageError)
        for phrase in phrases:
            assert phrase in str(info.value)
    assert sorted(p.name for p in tmp.iterdir()) == ["src"]


class StorageContract:
    # -- write / read -----------------------------------------------------------------------
    def test_write_read_round_trip(self, storage: StorageBackend) -> None:
        info = storage.write_bytes("a/b/c.ndjson", b'{"x": 1}\n')
        assert info.key == "a/b/c.ndjson"
        assert info.size == 9
        assert info.version
        assert storage.read_bytes("a/b/c.ndjson") == b'{"x": 1}\n'

    def test_write_empty_object(self, storage: StorageBackend) -> None:
        storage.write_bytes("empty", b"")
        assert storage.read_bytes("empty") == b""
        assert storage.stat("empty").size == 0

    def test_write_info_matches_stat(self, storage: StorageBackend) -> None:
        written = storage.write_bytes("k.txt", b"hello")
        stat = storage.stat("k.txt")
        assert (stat.key, stat.size, stat.version) == ("k.txt", 5, written.version)

    def test_overwrite_replaces(self, storage: StorageBackend) -> None:
        storage.write_bytes("k.txt", b"first version, longer")
        storage.write_bytes("k.txt", b"second")
        assert storage.read_bytes("k.txt") == b"second"
        assert keys(list(storage.list())) == ["k.txt"]

    def test_stat_changes_after_overwrite(self, storage: StorageBackend) -> None:
        before = storage.write_bytes("k.txt", b"one")
        time.sleep(0.05)  # a local folder's version is its mtime: let the clock tick
        storage.write_bytes("k.txt", b"number two")
        after = storage.stat("k.txt")
        assert before.size == 3
        assert after.size == 10
        assert after.version and after.version != before.version

    def test_missing_object(self, storage: StorageBackend, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            storage.stat("nope/missing.txt")
        with pytest.raises(FileNotFoundError):
            storage.read_bytes("nope/missing.txt")
        with pytest.raises(FileNotFoundError):
            storage.download("nope/missing.txt", tmp_path / "out")
        for nbytes in (0, 10):
            with pytest.raises(FileNotFoundError):
                storage.read_head("nope/missing.txt", nbytes)
        assert not storage.exists("nope/missing.txt")

    def test_read_head(self, storage: StorageBackend) -> None:
        """The first bytes of an object in one ranged read: fewer than it holds, exactly as
        many, more (all of it), none; and an empty object."""
        data = bytes(range(256)) * 40  # 10,240 bytes
        storage.write_bytes("h/data.bin", data)
        assert storage.read_head("h/data.bin", 1000) == data[:1000]
        assert storage.read_head("h/data.bin", len(data)) == data
        assert storage.read_head("h/data.bin", 1 << 20) == data
        assert storage.read_head("h/data.bin", 0) == b""
        storage.write_bytes("h/empty.bin", b"")
        assert storage.read_head("h/empty.bin", 100) == b""

    def test_exists(self, storage: StorageBackend) -> None:
        storage.write_bytes("d/e.txt", b"x")
        assert storage.exists("d/e.txt")
        assert not storage.exists("d/e.tx")
        assert not storage.exists("d/e.txt.gz")

    # -- list -------------------------------------------------------------------------------
    def _populate(self, storage: StorageBackend) -> None:
        for key in [
            "s/2024/01/02/00/part-b-1.ndjson",
            "s/2024/01/02/00/part-a-2.ndjson",
            "s/2024/01/02/00/other.ndjson",
            "s/2024/01/02/01/part-a-1.ndjson",
            "s/2024/01/02/010/x.ndjson",
            "s/2024/01/03/00/part-a-1.ndjson",
            "t/2024/01/02/00/part-a-1.ndjson",
            "top.txt",
        ]:
            storage.write_bytes(key, key.encode())

    def test_list_empty_storage(self, storage: StorageBackend) -> None:
        assert list(storage.list()) == []
        assert list(storage.list("a/")) == []

    def test_list_prefix_only_under_prefix_sorted_relative(self, storage: StorageBackend) -> None:
        self._populate(storage)
        found = list(storage.list("s/2024/01/02/00/"))
        assert keys(found) == [
            "s/2024/01/02/00/other.ndjson",
            "s/2024/01/02/00/part-a-2.ndjson",
            "s/2024/01/02/00/part-b-1.ndjson",
        ]
        for obj in found:
            assert obj.size == len(obj.key)
            assert obj.version

    def test_list_is_recursive(self, storage: StorageBackend) -> None:
        self._populate(storage)
        assert keys(list(storage.list("s/2024/01/02/"))) == [
            "s/2024/01/02/00/other.ndjson",
            "s/2024/01/02/00/part-a-2.ndjson",
            "s/2024/01/02/00/part-b-1.ndjson",
            "s/2024/01/02/01/part-a-1.ndjson",
            "s/2024/01/02/010/x.ndjson",
        ]

    def test_list_prefix_naming_part_of_a_file_name(self, storage: StorageBackend) -> None:
        self._populate(storage)
        assert keys(list(storage.list("s/2024/01/02/00/part-"))) == [
            "s/2024/01/02/00/part-a-2.ndjson",
            "s/2024/01/02/00/part-b-1.ndjson",
        ]
        assert keys(list(storage.list("s/2024/01/02/00/part-a"))) == [
            "s/2024/01/02/00/part-a-2.ndjson"
        ]

    def test_list_prefix_naming_part_of_a_folder_name(self, storage: StorageBackend) -> None:
        self._populate(storage)
        assert keys(list(storage.list("s/2024/01/02/01"))) == [
            "s/2024/01/02/01/part-a-1.ndjson",
            "s/2024/01/02/010/x.ndjson",
        ]
        assert keys(list(storage.list("s/2024/01/02/01/"))) == ["s/2024/01/02/01/part-a-1.ndjson"]

    def test_list_empty_prefix_lists_everything(self, storage: StorageBackend) -> None:
        self._populate(storage)
        found = keys(list(storage.list()))
        assert found == sorted(found)
        assert len(found) == 8
        assert found[-1] == "top.txt"
        assert keys(list(storage.list(""))) == found

    def test_list_missing_prefix(self, storage: StorageBackend) -> None:
        self._populate(storage)
        assert list(storage.list("s/2023/")) == []
        assert list(storage.list("zzz")) == []

    def test_list_many_skips_nested_prefixes(self, storage: StorageBackend) -> None:
        self._populate(storage)
        found = keys(
            list(
                storage.list_many(
                    [
                        "s/2024/01/02/",
                        "s/2024/01/02/00/",
                        "s/2024/01/02/00/part-",
                        "t/",
                        "s/2024/01/02/",
                    ]
                )
            )
        )
        assert len(found) == len(set(found)) == 6
        assert found[-1] == "t/2024/01/02/00/part-a-1.ndjson"

    # -- files ------------------------------------------------------------------------------
    def test_download_to_file(self, storage: StorageBackend, tmp_path: Path) -> None:
        data = os.urandom(300_000)
        storage.write_bytes("bin/blob.cbor", data)
        dest = tmp_path / "blob.cbor"
        storage.download("bin/blob.cbor", dest)
        assert dest.read_bytes() == data

    def test_download_replaces_existing_file(self, storage: StorageBackend, tmp_path: Path) -> None:
        storage.write_bytes("x.txt", b"new")
        dest = tmp_path / "x.txt"
        dest.write_bytes(b"an older, longer file")
        storage.download("x.txt", dest)
        assert dest.read_bytes() == b"new"

    def test_failed_download_keeps_existing_file(
        self, storage: StorageBackend, tmp_path: Path
    ) -> None:
        dest = tmp_path / "keep.txt"
        dest.write_bytes(b"keep me")
        with pytest.raises(FileNotFoundError):
            storage.download("missing.txt", dest)
        assert dest.read_bytes() == b"keep me"

    def test_upload_small_file(self, storage: StorageBackend, tmp_path: Path) -> None:
        src = tmp_path / "small.ndjson"
        src.write_bytes(b'{"a": 1}\n{"a": 2}\n')
        info = storage.upload(src, "up/small.ndjson")
        assert info.key == "up/small.ndjson"
        assert info.size == src.stat().st_size
        assert info.version
        assert storage.read_bytes("up/small.ndjson") == src.read_bytes()

    def test_upload_large_file_streams(self, storage: StorageBackend, tmp_path: Path) -> None:
        # Over 8 MiB: multipart (S3) / staged blocks (Azure), never one whole-file request.
        src = tmp_path / "large.bin"
        block = os.urandom(1 << 20)
        with open(src, "wb") as fh:
            for i in range(9):
                fh.write(bytes([i]) + block[1:])
            fh.write(b"tail")
        size = src.stat().st_size
        info = storage.upload(src, "up/large.bin")
        assert info.size == size
        assert storage.stat("up/large.bin").size == size
        dest = tmp_path / "large.copy"
        storage.download("up/large.bin", dest)
        assert (
            hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
        )
        # uploading again replaces the object
        src.write_bytes(b"small now")
        storage.upload(src, "up/large.bin")
        assert storage.read_bytes("up/large.bin") == b"small now"

    # -- delete -----------------------------------------------------------------------------
    def test_delete(self, storage: StorageBackend) -> None:
        storage.write_bytes("del/a.txt", b"a")
        storage.write_bytes("del/b.txt", b"b")
        storage.delete("del/a.txt")
        assert not storage.exists("del/a.txt")
        assert keys(list(storage.list("del/"))) == ["del/b.txt"]

    def test_delete_missing_is_not_an_error(self, storage: StorageBackend) -> None:
        storage.delete("never/was.txt")
        storage.write_bytes("once.txt", b"x")
        storage.delete("once.txt")
        storage.delete("once.txt")
        assert list(storage.list()) == []

    def test_delete_many_and_prefix(self, storage: StorageBackend) -> None:
        for name in ("a", "b", "c", "d"):
            storage.write_bytes(f"many/{name}.txt", name.encode())
        storage.write_bytes("many-not/e.txt", b"e")
        storage.write_bytes("other/f.txt", b"f")
        storage.delete_many(["many/a.txt", "many/b.txt", "never/was.txt"])  # absent: no error
        storage.delete_many([])
        assert keys(list(storage.list("many/"))) == ["many/c.txt", "many/d.txt"]
        storage.delete_prefix("many/")
        assert keys(list(storage.list())) == ["many-not/e.txt", "other/f.txt"]

    # -- keys -------------------------------------------------------------------------------
    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_rejected(self, storage: StorageBackend, key: str, tmp_path: Path) -> None:
        src = tmp_path / "src"
        src.write_bytes(b"x")
        with pytest.raises(StorageError, match="invalid object key"):
            storage.write_bytes(key, b"x")
        with pytest.raises(StorageError, match="invalid object key"):
            storage.read_bytes(key)
        with pytest.raises(StorageError, match="invalid object key"):
            storage.stat(key)
        with pytest.raises(StorageError, match="invalid object key"):
            storage.download(key, tmp_path / "dest")
        with pytest.raises(StorageError, match="invalid object key"):
            storage.upload(src, key)
        with pytest.raises(StorageError, match="invalid object key"):
            storage.delete(key)
        assert list(storage.list()) == []

    @pytest.mark.parametrize("key", ODD_KEYS)
    def test_keys_with_spaces_and_unicode(
        self, storage: StorageBackend, key: str, tmp_path: Path
    ) -> None:
        data = key.encode()
        storage.write_bytes(key, data)
        assert storage.read_bytes(key) == data
        assert storage.stat(key).size == len(data)
        assert storage.exists(key)
        assert keys(list(storage.list())) == [key]
        folder = key.rsplit("/", 1)[0] + "/"
        assert keys(list(storage.list(folder))) == [key]
        dest = tmp_path / "out"
        storage.download(key, dest)
        assert dest.read_bytes() == data
        storage.delete(key)
        assert not storage.exists(key)

    def test_unicode_keys_sort_like_python_strings(self, storage: StorageBackend) -> None:
        names = ["u/Z.txt", "u/a.txt", "u/é.txt", "u/日.txt", "u/~.txt", "u/A b.txt"]
        for name in names:
            storage.write_bytes(name, b"x")
        assert keys(list(storage.list("u/"))) == sorted(names)

    def test_describe_names_the_storage(self, storage: StorageBackend) -> None:
        assert storage.name in storage.describe()
        assert storage.type in storage.describe()
