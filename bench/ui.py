"""`make bench-ui` (and `make bench`): the status page with 10,000 runs and 50 couriers.

    python -m bench.ui          # BENCH_UI_RUNS=10000 BENCH_UI_COURIERS=50

A project with 50 hourly couriers in 5 groups gets 10,000 runs recorded through the state
store (a quarter failed, some skipped, spread over 20 days). `courier ui`'s app is served by
uvicorn on loopback; each page is fetched 30 times over HTTP after a warm-up. Target (issue
17): the overview and the runs page answer in under 200 ms each (p95 reported against it).
Also reported: the time of one snapshot (the short read of the state the pages come from).
Exit status 0 even when a target fails: this is a report, printed loudly.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from courier.ui.app import BackgroundServer, StatusApp
from courier.ui.reader import StatusReader
from tests.servers import free_port
from tests.ui.seed import history_project

TARGET_S = 0.200
PAGES = ["/", "/runs", "/runs?page=100", "/runs?status=failed&courier=courier_007",
         "/api/status.json", "/charts", "/feeds"]  # fmt: skip
TARGETED = {"/", "/runs"}


def main() -> None:
    runs = int(os.environ.get("BENCH_UI_RUNS", "10000"))
    couriers = int(os.environ.get("BENCH_UI_COURIERS", "50"))
    with tempfile.TemporaryDirectory(prefix="courier-bench-ui-") as tmp:
        clock = time.perf_counter()
        project = history_project(Path(tmp) / "p", couriers=couriers, runs=runs)
        print(f"seeded {runs:,} runs of {couriers} couriers in {time.perf_counter() - clock:.1f}s")
        reader = StatusReader(project.context())
        takes, held = [], []
        for _ in range(5):
            clock = time.perf_counter()
            snap = reader.refresh()
            assert snap is not None, reader.last_error
            takes.append(time.perf_counter() - clock)
            held.append(snap.held_s)
        print(
            f"snapshot: median {statistics.median(takes) * 1e3:.0f} ms, of which the feed "
            f"database was held {statistics.median(held) * 1e3:.0f} ms (median of {len(takes)})"
        )
        port = free_port()
        server = BackgroundServer(StatusApp(reader), "127.0.0.1", port)
        server.start()
        failed = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                print(f"{'page':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target")
                for path in PAGES:
                    for _ in range(3):
                        assert client.get(path).status_code == 200, path
                    times = []
                    for _ in range(30):
                        clock = time.perf_counter()
                        r = client.get(path)
                        times.append(time.perf_counter() - clock)
                        assert r.status_code == 200, path
                    times.sort()
                    p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
                    verdict = ""
                    if path in TARGETED:
                        ok = p95 < TARGET_S
                        verdict = "ok (< 200 ms)" if ok else "MISSED (>= 200 ms)"
                        if not ok:
                            failed.append(path)
                    print(f"{path:44} {p50 * 1e3:8.1f} {p95 * 1e3:8.1f} {times[-1] * 1e3:8.1f}"
                          f"  {verdict}")  # fmt: skip
        finally:
            server.stop()
            reader.stop()
        if failed:
            print(f"TARGET MISSED: {', '.join(failed)} took 200 ms or more (p95)")
        else:
            print("target met: overview and runs page under 200 ms (p95)")


if __name__ == "__main__":
    main()
