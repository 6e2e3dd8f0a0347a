"""`make bench-scale`: `make bench`'s contenders at 50 MB, 200 MB and 1 GB in one go, then the
SPEC 7 ratios of every size in one table (a report, not a test: the 1 GB window takes minutes).

    python -m bench.scale               # BENCH_SIZES=50,200,1024 by default
"""

from __future__ import annotations

import os
import sys

from bench.common import MB, table
from bench.run import ratio, run_bench


def main() -> int:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "50,200,1024").split(",") if s]
    summaries = []
    for megabytes in sizes:
        summaries.append(run_bench(megabytes))
        print(flush=True)
    print("== bench-scale: records/s ratios, best of BENCH_RUNS, contenders interleaved ==")
    rows = []
    for s in summaries:
        load, again = s["load"], s["reload"]
        pairs = [
            (
                "steady load / upsert-columns",
                load.get("courier"),
                load.get("duckdb-upsert-columns"),
            ),
            (
                "steady reload / upsert-columns",
                again.get("courier"),
                again.get("duckdb-upsert-columns"),
            ),
            ("first run / upsert (auto)", load.get("courier-first-run"), load.get("duckdb-upsert")),
            ("late key / steady", load.get("courier-late-key"), load.get("courier")),
        ]
        for label, a, b in pairs:
            r = ratio(a, b)
            rows.append(
                [
                    f"{s['bytes'] / MB:,.0f} MB",
                    label,
                    f"{a.seconds:.2f}" if a and a.ok else "-",
                    f"{b.seconds:.2f}" if b and b.ok else "-",
                    f"{r[0]:.2f}x" if r else "-",
                    f"{r[1]:.2f}x" if r else "-",
                ]
            )
        courier = load.get("courier")
        if courier is not None and courier.ok:
            rows.append(
                [
                    f"{s['bytes'] / MB:,.0f} MB",
                    "courier peak RSS",
                    "",
                    "",
                    f"{courier.peak_rss / MB:,.0f} MB",
                    "",
                ]
            )
    print(table(["window", "ratio", "a wall s", "b wall s", "wall", "by CPU"], rows))
    for s in summaries:
        failed = [label for label, _, ok in s["checks"] if ok is not True]
        print(
            f"{s['bytes'] / MB:,.0f} MB ({s['machine']}): "
            f"{'all targets met' if not failed else 'NOT MET: ' + '; '.join(failed)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
