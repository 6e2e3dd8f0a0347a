"""The write-ahead log and the roller, in-process: group commit, rolling, names, recovery."""

from __future__ import annotations

import os
import shutil
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from courier.ingest.service import IngestService
from courier.ingest.wal import FRAME, LOCK_NAME, MAGIC, Pending, hour_of, read_records, segment_name
from courier.validate import load_project
from tests.ingest.helpers import landed_json, make_project, part_files, wait_until, write

HOUR = hour_of(time.time())


def service(
    root: Path, settings: str = "[ingest]\nroll_seconds = 30\n", **kw: Any
) -> IngestService:
    make_project(root, settings, {"events": 'payload = "json"\n', "pos": 'payload = "xml"\n'})
    svc = IngestService(load_project(root), authenticate=False, **kw)
    svc.start()
    return svc


def line(i: int, pad: int = 0) -> bytes:
    return b'{"i":%d,"pad":"%s"}\n' % (i, b"x" * pad)


def test_group_commit_shares_fsyncs_and_lands_everything(tmp_path: Path) -> None:
    svc = service(tmp_path)
    batches: list[int] = []
    acked: list[Any] = []
    done = threading.Event()

    def on_commit(waiters: list[Any], error: BaseException | None) -> None:
        assert error is None
        batches.append(len(waiters))
        acked.extend(waiters)
        if len(acked) == 4000:
            done.set()

    svc.on_commit = on_commit
    stream = svc.streams["events"]

    def client(n: int) -> None:
        for i in range(500):
            svc.submit(stream, [line(n * 1000 + i)], n * 1000 + i)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done.wait(30)
    assert len(batches) < 4000  # commits were shared (one fsync per batch, not per record)
    assert svc.flush(30)
    svc.stop()
    got = sorted(r["i"] for r in landed_json(tmp_path, "events"))
    assert got == sorted(n * 1000 + i for n in range(8) for i in range(500))
    assert not list((tmp_path / ".courier" / "wal").iterdir())  # the writer folder is gone


def test_part_names_hours_and_roll_bytes(tmp_path: Path) -> None:
    svc = service(tmp_path)
    stream = svc.streams["events"]
    t0 = HOUR * 3600 - 7200  # two hours ago
    svc.submit(stream, [line(1)], None, at=t0)
    svc.submit(stream, [line(2)], None, at=t0 + 3600)  # the next hour: a new part
    assert svc.flush(10)
    parts = [
        p.relative_to(tmp_path / ".courier" / "landing").as_posix() for p in part_files(tmp_path)
    ]
    writer = svc.writer
    h0 = time.strftime("%Y/%m/%d/%H", time.gmtime(t0))
    h1 = time.strftime("%Y/%m/%d/%H", time.gmtime(t0 + 3600))
    assert parts == [
        f"events/{h0}/part-{writer}-000001.ndjson",
        f"events/{h1}/part-{writer}-000002.ndjson",
    ]
    svc.stop()
    # roll_bytes: a part never grows past it (unless one payload alone is bigger)
    root = tmp_path / "small"
    make_project(
        root, "[ingest]\nroll_seconds = 30\n", {"events": 'payload = "json"\nroll_bytes = 1024\n'}
    )
    svc = IngestService(load_project(root), authenticate=False)
    svc.start()
    for i in range(20):
        svc.submit(svc.streams["events"], [line(i, 200)], None)
        svc.wal.flush()  # one commit per record, so each could roll
    assert svc.flush(10)
    svc.stop()
    sizes = [p.stat().st_size for p in part_files(root)]
    assert len(sizes) >= 4 and all(s <= 1024 for s in sizes)
    assert sorted(r["i"] for r in landed_json(root, "events")) == list(range(20))


def test_one_batch_larger_than_roll_bytes_is_cut_into_parts(tmp_path: Path) -> None:
    """A fast producer (`courier land`) hands the committer far more than one part per batch:
    the batch is cut at roll_bytes instead of growing one part past it."""
    root = tmp_path / "small"
    make_project(
        root, "[ingest]\nroll_seconds = 30\n", {"events": 'payload = "json"\nroll_bytes = 1024\n'}
    )
    svc = IngestService(load_project(root), authenticate=False)
    svc.start()
    svc.wal.submit_many([Pending("events", "ndjson", HOUR, line(i, 200), None) for i in range(50)])
    assert svc.flush(10)
    svc.stop()
    sizes = [p.stat().st_size for p in part_files(root)]
    assert len(sizes) >= 10 and all(s <= 1024 for s in sizes), sizes
    assert sorted(r["i"] for r in landed_json(root, "events")) == list(range(50))


def test_parts_roll_by_time_without_flush(tmp_path: Path) -> None:
    svc = service(tmp_path, "[ingest]\nroll_seconds = 0.2\n")
    svc.submit(svc.streams["pos"], [b"\xa1ax\x01"], None)  # one CBOR item {"ax": 1}
    wait_until(lambda: part_files(tmp_path, "pos"), 10, "a part file rolled by time")
    (part,) = part_files(tmp_path, "pos")
    assert part.suffix == ".cbor" and part.read_bytes() == b"\xa1ax\x01"
    svc.stop()


def frame(data: bytes) -> bytes:
    return FRAME.pack(MAGIC, len(data), zlib.crc32(data)) + data


def test_orphans_are_recovered_once_torn_tail_dropped(tmp_path: Path) -> None:
    root = tmp_path / "p"
    make_project(root, "[ingest]\nroll_seconds = 30\n", {"events": 'payload = "json"\n'})
    dead = root / ".courier" / "wal" / "deadhost-1-abcdef"
    dead.mkdir(parents=True)
    (dead / LOCK_NAME).touch()
    good = frame(line(1)) + frame(line(2) + line(3))
    torn = frame(line(4))[:-3]  # the crash cut the last write: never acknowledged
    (dead / segment_name(7, HOUR, "events", "ndjson")).write_bytes(good + torn)
    corrupt = bytearray(frame(line(5)))
    corrupt[-2] ^= 0xFF  # bad CRC: dropped, and everything after it too
    (dead / segment_name(8, HOUR, "events", "ndjson")).write_bytes(
        frame(line(6)) + corrupt + frame(line(7))
    )
    (dead / (segment_name(9, HOUR, "events", "ndjson") + ".part")).write_bytes(b"half an export")
    assert [len(r) for r in read_records(dead / segment_name(7, HOUR, "events", "ndjson"))] == [
        len(line(1)),
        len(line(2) + line(3)),
    ]
    svc = IngestService(load_project(root), authenticate=False)
    svc.start()
    wait_until(lambda: not dead.exists(), 10, "the orphan folder to be emptied")
    svc.stop()
    names = [p.name for p in part_files(root)]
    assert names == ["part-deadhost-1-abcdef-000007.ndjson", "part-deadhost-1-abcdef-000008.ndjson"]
    assert sorted(r["i"] for r in landed_json(root, "events")) == [1, 2, 3, 6]


def test_orphan_already_uploaded_is_not_written_again(tmp_path: Path) -> None:
    root = tmp_path / "p"
    make_project(root, "[ingest]\nroll_seconds = 30\n", {"events": 'payload = "json"\n'})
    dead = root / ".courier" / "wal" / "deadhost-2-abcdef"
    dead.mkdir(parents=True)
    name = segment_name(3, HOUR, "events", "ndjson")
    (dead / name).write_bytes(frame(line(1) + line(2)))
    stamp = time.strftime("%Y/%m/%d/%H", time.gmtime(HOUR * 3600))
    # the crash came after the upload and before the segment was deleted
    uploaded = write(
        root, f".courier/landing/events/{stamp}/part-deadhost-2-abcdef-000003.ndjson", ""
    )
    uploaded.write_bytes(line(1) + line(2))
    os.utime(uploaded, (1_000_000_000, 1_000_000_000))
    svc = IngestService(load_project(root), authenticate=False)
    svc.start()
    wait_until(lambda: not dead.exists(), 10, "the orphan folder to be emptied")
    svc.stop()
    assert uploaded.stat().st_mtime == 1_000_000_000  # same object, not rewritten
    assert [p.name for p in part_files(root)] == [uploaded.name]


def test_live_writers_are_not_adopted(tmp_path: Path) -> None:
    first = service(tmp_path)
    first.submit(first.streams["events"], [line(1)], None)
    first.wal.flush()  # committed, not sealed: the segment stays in first's folder
    second = IngestService(load_project(tmp_path), authenticate=False)
    second.start()
    time.sleep(0.3)
    assert not part_files(tmp_path)  # second left first's open segment alone
    second.stop()
    first.stop()
    assert [r["i"] for r in landed_json(tmp_path, "events")] == [1]
    assert first.writer in part_files(tmp_path)[0].name


def test_storage_down_keeps_segments_until_it_is_back(tmp_path: Path) -> None:
    svc = service(tmp_path, "[ingest]\nroll_seconds = 0.1\n")
    landing = tmp_path / ".courier" / "landing"
    landing.parent.mkdir(parents=True, exist_ok=True)
    landing.write_text("a file where the storage folder should be: every write fails")
    for i in range(5):
        svc.submit(svc.streams["events"], [line(i)], None)
    svc.wal.flush(seal=True)
    wait_until(lambda: svc.roller.failing_since is not None, 10, "the roller to notice")
    assert svc.roller.backlog >= 1 and svc.health()["uploads"]["last_error"]
    assert svc.used_bytes() > 0
    landing.unlink()
    assert svc.flush(40)
    assert sorted(r["i"] for r in landed_json(tmp_path, "events")) == list(range(5))
    assert svc.roller.failing_since is None
    svc.stop()


def test_stop_with_storage_down_leaves_the_log_for_the_next_writer(tmp_path: Path) -> None:
    svc = service(tmp_path)
    landing = tmp_path / ".courier" / "landing"
    landing.parent.mkdir(parents=True, exist_ok=True)
    landing.write_text("blocked")
    svc.submit(svc.streams["events"], [line(1)], None)
    assert svc.stop(timeout=0.5) is False
    (segment,) = list((tmp_path / ".courier" / "wal").rglob("*.wal"))
    landing.unlink()
    again = IngestService(load_project(tmp_path), authenticate=False)
    again.start()
    wait_until(lambda: not segment.exists(), 20, "the next writer to upload the segment")
    again.stop()
    assert [r["i"] for r in landed_json(tmp_path, "events")] == [1]


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_setting(tmp_path: Path, fsync: bool) -> None:
    svc = service(tmp_path, f"[ingest]\nroll_seconds = 30\nfsync = {str(fsync).lower()}\n")
    assert svc.wal.fsync is fsync
    svc.submit(svc.streams["events"], [line(1)], None)
    assert svc.flush(10)
    svc.stop()
    assert len(landed_json(tmp_path, "events")) == 1
    shutil.rmtree(tmp_path / ".courier")


def test_writers_starting_together_never_adopt_each_other(tmp_path: Path) -> None:
    make_project(tmp_path, "[ingest]\nroll_seconds = 30\n", {"events": 'payload = "json"\n'})
    project = load_project(tmp_path)
    for _ in range(25):
        services = [IngestService(project, authenticate=False) for _ in range(4)]
        barrier = threading.Barrier(len(services))

        def start(svc: IngestService, barrier: threading.Barrier) -> None:
            barrier.wait()
            svc.start()

        threads = [threading.Thread(target=start, args=(s, barrier)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for svc in services:
            assert svc.started and svc.wal.dir.is_dir()
            svc.submit(svc.streams["events"], [line(1)], None)
            assert svc.flush(10)
        for svc in services:
            svc.stop()
    assert len(landed_json(tmp_path, "events")) == 100


def test_staging_folders_are_not_orphans(tmp_path: Path) -> None:
    from courier.ingest.wal import STAGING, orphans

    root = tmp_path / "wal"
    fresh = root / f"{STAGING}host-1-aaaaaa"
    stale = root / f"{STAGING}host-2-bbbbbb"
    for folder in (fresh, stale):
        folder.mkdir(parents=True)
        (folder / LOCK_NAME).touch()  # a writer between mkdir and flock, or killed there
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert list(orphans(root, "me")) == []
    assert fresh.is_dir() and not stale.exists()


def test_upload_status_is_published_whole(tmp_path: Path) -> None:
    """The roller's outage status (failing_since, last_error) changes as one value: read at
    the moment the roller reports the outage (its log record), /healthz's upload status is
    never half set — the old roller set failing_since, logged, then set last_error."""
    import logging

    svc = service(tmp_path, "[ingest]\nroll_seconds = 0.1\n")
    landing = tmp_path / ".courier" / "landing"
    landing.parent.mkdir(parents=True, exist_ok=True)
    landing.write_text("a file where the storage folder should be: every write fails")
    seen: list[dict[str, Any]] = []

    class Observe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "cannot upload" in record.getMessage():
                seen.append(svc.health()["uploads"])

    observer = Observe()
    logging.getLogger("courier.ingest").addHandler(observer)
    try:
        svc.submit(svc.streams["events"], [line(1)], None)
        svc.wal.flush(seal=True)
        wait_until(lambda: seen, 10, "the roller to report the outage")
    finally:
        logging.getLogger("courier.ingest").removeHandler(observer)
    assert seen[0]["failing_since"] is not None and seen[0]["last_error"], seen
    landing.unlink()
    assert svc.flush(40)
    assert svc.health()["uploads"] == {
        "backlog": 0, "done": 1, "failing_since": None, "last_error": None
    }  # fmt: skip
    svc.stop()
