"""kill -9 a `courier run` mid-way: the feed table is the before or the after state, never in
between, and a re-run converges to exactly what one clean run gives."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from tests.projects import ProjectFactory, event

DAY = date(2026, 11, 22)
pytestmark = pytest.mark.slow


def land_window(p: ProjectFactory) -> None:
    for hour in range(24):
        p.land_hour(
            DAY, hour, [event(hour * 10_000 + i, customer=i % 50, items=3) for i in range(6_000)]
        )


def start_run(p: ProjectFactory) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "courier",
            "--project",
            str(p.root),
            "run",
            "events",
            "--date",
            "2026-11-22",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def table(p: ProjectFactory) -> tuple[int, int, int] | None:
    """The feed table as (rows, distinct keys, sum of every row's hash): None when there is
    none. Equal sums of 64-bit row hashes with equal counts: the same rows, none lost or doubled
    (a Python list of the 432,000 rows cost ~2 s a look)."""
    if not (p.root / ".courier" / "feeds.duckdb").exists():
        return None  # killed before the run opened its feed database
    exists = p.sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'order_items'"
    )[0][0]
    if not exists:
        return None
    rows, keys, total = p.sql(
        "SELECT count(*), count(DISTINCT (event_id, item_idx)), "
        "sum(hash(event_id, item_idx, customer_id, sku, qty, price))::HUGEINT FROM order_items"
    )[0]
    return (rows, keys, int(total or 0)) if rows else None


def test_kill_9_mid_run_then_rerun_converges(tmp_path: Path) -> None:
    clean = ProjectFactory(tmp_path / "clean").events_project()
    land_window(clean)
    t0 = time.monotonic()
    proc = start_run(clean)
    assert proc.wait(timeout=300) == 0
    duration = time.monotonic() - t0
    expected = table(clean)
    assert expected is not None and expected[:2] == (24 * 6_000 * 3, 24 * 6_000 * 3)

    outcomes = set()
    for n, fraction in enumerate((0.3, 0.55, 0.8, 0.95)):
        p = ProjectFactory(tmp_path / f"crash{n}").events_project()
        shutil.copytree(clean.landing, p.landing, dirs_exist_ok=True)  # the same window
        proc = start_run(p)
        time.sleep(duration * fraction)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        after_crash = table(p)
        assert after_crash in (None, expected), "a crash left a partial load"
        outcomes.add("before" if after_crash is None else "after")
        rerun = start_run(p)
        assert rerun.wait(timeout=300) == 0
        assert table(p) == expected
        # every file recorded exactly once; the interrupted run is marked failed, not running
        assert p.sql("SELECT count(*), count(DISTINCT key) FROM courier.files") == [(24, 24)]
        assert p.sql("SELECT count(*) FROM courier.runs WHERE status = 'running'") == [(0,)]
    assert "before" in outcomes  # at least one kill really landed mid-run
