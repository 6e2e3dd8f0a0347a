"""`courier scheduler --ui-port`: the status page and /metrics served from the scheduler's
process while it runs a group every second; counters move by exactly the rows loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.metrics_text import scrape, value
from tests.projects import ProjectFactory
from tests.scheduler_process import Scheduler
from tests.scheduling.conftest import group, land_clicks
from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.integration


def test_scheduler_metrics_count_runs_and_rows_while_the_page_reads_state(
    project: ProjectFactory, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    for back in (1, 2):
        hour = now - timedelta(hours=back)
        land_clicks(project, hour.date(), hour.hour, n=3)
    group(
        project,
        "ticker",
        'schedule = "* * * * * *"\n'  # every second
        '[[couriers]]\nname = "clicks"\noffset = "0h"\nrange = "3h"\nrequired = false\n',
    )
    port = free_port()
    sched = Scheduler(project, tmp_path / "log", "--ui-port", str(port), "--no-sources")
    try:
        wait_for_port(port, proc=sched.proc, timeout=60)
        url = f"http://127.0.0.1:{port}"
        first = scrape(url + "/metrics")
        assert value(first, "courier_rows_loaded_total", courier="clicks") in (0.0, 6.0)
        sched.wait_until(
            "a skipped run after the load",
            lambda: value(scrape(url + "/metrics"), "courier_runs_total", courier="clicks",
                          status="skipped") >= 2,
            timeout=90,
        )  # fmt: skip
        pages = [httpx.get(url + path, timeout=30) for path in ("/", "/runs", "/charts")]
        assert [p.status_code for p in pages] == [200, 200, 200]
        after = scrape(url + "/metrics")
    finally:
        code, _ = sched.stop(timeout=60)
    assert code == 0, sched.text()
    assert value(after, "courier_runs_total", courier="clicks", status="succeeded") == 1
    assert value(after, "courier_runs_total", courier="clicks", status="failed") == 0
    assert value(after, "courier_rows_loaded_total", courier="clicks") == 6
    assert value(after, "courier_rows_rejected_total", courier="clicks") == 0
    assert value(after, "courier_run_seconds_count", courier="clicks") >= 3
    assert value(after, "courier_group_runs_total", group="ticker", status="succeeded") >= 3
    assert ("courier_alerts_open", frozenset()) in after
    assert value(after, "courier_ui_snapshots_total", outcome="ok") >= 1
    (rows,) = project.sql("SELECT count(*) FROM clicks")
    assert rows == (6,)
    failed = project.sql("SELECT count(*) FROM courier.runs WHERE status = 'failed'")
    assert failed == [(0,)]  # the page's visits never failed a run
