"""`make bench-listing` (also part of `make bench`): discovery of one day's window when the
storage holds many objects outside it (SPEC 7: listing cost grows with the files in the
window, not with the files in the bucket).

    python -m bench.listing

Each storage is measured twice over the same windows: holding only the windows' files, and
holding them among many objects of other days (500,000 files in a local folder, 50,000 objects
on a moto S3 server on loopback; BENCH_LISTING_LOCAL / BENCH_LISTING_S3 change the counts).
The windows: 2026-11-22 with 24 files (one an hour) and 2026-11-23 with 2,400 (100 an hour).
Discovery is `Context.discover` for the repository's web_events courier, best of 3. Exit status
0 even when a target fails: this is a report.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import REPO, table
from bench.data import COURIER_TOML, STREAM, write_project
from bench.run import load

WINDOWS = {"2026-11-22": 1, "2026-11-23": 100}  # day -> files an hour
FIRST_OUTSIDE_DAY = date(2026, 1, 1)
OUTSIDE_PER_HOUR = 100
ROUNDS = 3
TOLERANCE = 2.0  # a crowded storage may be at most this much slower for the same window


def window_keys() -> list[str]:
    keys = []
    for day, per_hour in WINDOWS.items():
        for hour in range(24):
            for n in range(per_hour):
                keys.append(f"{STREAM}/{day.replace('-', '/')}/{hour:02d}/part-{n:06d}.ndjson")
    return keys


def outside_keys(count: int) -> list[str]:
    """`count` objects of the same stream on earlier days (100 an hour from 2026-01-01)."""
    keys = []
    for i in range(count):
        day = FIRST_OUTSIDE_DAY + timedelta(days=i // (24 * OUTSIDE_PER_HOUR))
        hour = (i // OUTSIDE_PER_HOUR) % 24
        keys.append(f"{STREAM}/{day:%Y/%m/%d}/{hour:02d}/part-{i % OUTSIDE_PER_HOUR:06d}.ndjson")
    return keys


def local_landing(root: Path, outside: int) -> Path:
    """A folder holding the windows' files and `outside` other files (empty: discovery lists,
    it does not read), made once and reused."""
    landing = root / f"local-{outside}"
    done = landing / ".complete"
    if done.exists():
        return landing
    for key in window_keys() + outside_keys(outside):
        path = landing / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    done.touch()
    return landing


def project(root: Path, name: str, storage: str) -> Path:
    path = root / f"project-{name}"
    write_project(path)
    settings = COURIER_TOML.replace('type = "local"\npath = ".courier/landing"\n', storage)
    (path / "config" / "courier.toml").write_text(settings)
    return path


def discovery_seconds(project_root: Path) -> dict[str, tuple[float, int]]:
    """Best of ROUNDS discovery time and files found, for each window."""
    from courier.context import Context
    from courier.validate import load_project

    ctx = Context(load_project(project_root))
    courier = ctx.project.courier("web_events")
    out = {}
    for day in WINDOWS:
        window = ctx.window(courier, date=day)
        times, found = [], 0
        for _ in range(ROUNDS):
            started = time.perf_counter()
            found = len(ctx.discover(courier, window))
            times.append(time.perf_counter() - started)
        out[day] = (min(times), found)
    return out


def upload(client: Any, bucket: str, prefix: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=prefix + k, Body=b""), keys))


def main() -> int:
    root = Path(os.environ.get("BENCH_DIR", str(REPO / "bench" / "data"))).resolve() / "listing"
    root.mkdir(parents=True, exist_ok=True)
    n_local = int(os.environ.get("BENCH_LISTING_LOCAL", "500000"))
    n_s3 = int(os.environ.get("BENCH_LISTING_S3", "50000"))
    print(f"== listing bench: discovery of one day's window, {load()} ==")
    rows: list[list[str]] = []
    checks: list[tuple[str, bool]] = []

    def measure(kind: str, projects: dict[int, Path]) -> None:
        timed = {outside: discovery_seconds(p) for outside, p in projects.items()}
        for outside, by_day in timed.items():
            for day, (seconds, found) in by_day.items():
                rows.append(
                    [
                        kind,
                        f"{outside + len(window_keys()):,}",
                        day,
                        f"{found:,}",
                        f"{seconds * 1000:,.1f}",
                    ]
                )
        few, many = min(timed), max(timed)
        for day in WINDOWS:
            ratio = timed[many][day][0] / timed[few][day][0]
            checks.append(
                (
                    f"{kind}, window {day} ({timed[many][day][1]:,} files): "
                    f"{many:,} objects outside / {few:,} = {ratio:.2f}x <= {TOLERANCE:g}x",
                    ratio <= TOLERANCE,
                )
            )

    started = time.perf_counter()
    local = {
        n: project(root, f"local-{n}", f'type = "local"\npath = "{local_landing(root, n)}"\n')
        for n in (0, n_local)
    }
    print(f"local folders ready ({time.perf_counter() - started:.0f} s)", flush=True)
    measure("local folder", local)

    import boto3
    from botocore.config import Config

    from tests.servers import start_moto_server, stop_process

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    proc, endpoint = start_moto_server(root)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            config=Config(max_pool_connections=32),
        )
        client.create_bucket(Bucket="landing")
        started = time.perf_counter()
        s3 = {}
        for n in (0, n_s3):
            upload(client, "landing", f"outside-{n}/", window_keys() + outside_keys(n))
            s3[n] = project(
                root,
                f"s3-{n}",
                (
                    f'type = "s3"\nbucket = "landing"\nprefix = "outside-{n}/"\n'
                    f'endpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
                ),
            )
        print(f"moto bucket ready ({time.perf_counter() - started:.0f} s)", flush=True)
        measure("S3 (moto)", s3)
    finally:
        stop_process(proc)
    print(table(["storage", "objects", "window", "files found", "discovery ms"], rows))
    print(f"machine after the runs: {load()}")
    for label, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
