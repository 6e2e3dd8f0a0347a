"""The example job behind `make run`: land a day of payloads, run the couriers, show feeds;
in between, the live sources (demo/examples_live.py): an API key and a signed
webhook against a real `courier serve`, and a source polling the test API.

`python -m demo run [--project DIR] [--date D]` (from this checkout, or with it on PYTHONPATH)

The day is fixed (EXAMPLE_DAY, the one the README's commands use) so that every recipe in the
README works as written after `make run`; the live sources land at the current hour.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import cbor2
import orjson

from courier import Context, load_project
from courier.display import table
from courier.formats.xml import parse_xml
from courier.storage.base import StorageBackend
from demo.examples_live import describe_error, print_live, run_live

SKUS = ["sku-espresso", "sku-grinder", "sku-filter", "sku-mug", "sku-beans", "sku-kettle"]
EXAMPLE_DAY = date(2026, 11, 22)  # the README's commands use this day
PAGES = ["/", "/cart", "/checkout", "/product/espresso", "/product/kettle"]


def web_events(day: date, hour: int, rng: random.Random, per_hour: int) -> list[dict]:
    out = []
    for n in range(per_hour):
        customer = rng.randrange(1, 400)
        items = [
            {
                "sku": rng.choice(SKUS),
                "qty": rng.randint(1, 4),
                "price": round(rng.uniform(2, 90), 2),
            }
            for _ in range(rng.randint(1, 4))
        ]
        out.append(
            {
                "event_id": f"ev-{day:%Y%m%d}-{hour:02d}-{n:05d}",
                "type": "order_placed",
                "occurred_at": f"{day:%Y-%m-%d}T{hour:02d}:{n * 60 // per_hour:02d}:00Z",
                "customer": {"id": customer, "email": f"c{customer}@example.com", "tier": "gold"},
                "items": items,
                "context": {
                    "page": rng.choice(PAGES),
                    "user_agent": "Mozilla/5.0",
                    "ip": "192.0.2.7",
                },
            }
        )
    return out


def profile_updates(day: date, hour: int, rng: random.Random, per_hour: int) -> list[dict]:
    out = []
    for n in range(per_hour):
        customer = rng.randrange(1, 400)
        out.append(
            {
                "customer_id": customer,
                "email": f"c{customer}@example.com",
                "first_name": rng.choice(["Ada", "Grace", "Linus", "Margaret", "Ken"]),
                "last_name": rng.choice(["Lovelace", "Hopper", "Torvalds", "Hamilton", "Thompson"]),
                "loyalty_tier": rng.choice(["bronze", "silver", "gold"]),
                "updated_at": f"{day:%Y-%m-%d}T{hour:02d}:{n * 60 // per_hour:02d}:30Z",
            }
        )
    return out


TENDERS = ["cash", "card", "gift_card", "voucher"]
STORES = ["berlin-01", "berlin-02", "hamburg-01", "munich-01"]


def pos_payloads(day: date, hour: int, rng: random.Random, per_hour: int) -> list[bytes]:
    """Point-of-sale XML payloads as tills post them: one or several records each, every
    record with one or more tenders."""
    out = []
    n = 0
    while n < per_hour:
        records = []
        for _ in range(min(rng.randint(1, 3), per_hour - n)):
            count = rng.choice([1, 1, 2, 3])
            tenders = [(rng.choice(TENDERS), rng.randint(100, 9000)) for _ in range(count)]
            total = sum(cents for _, cents in tenders)
            records.append(
                f"<record><id>pos-{day:%Y%m%d}-{hour:02d}-{n:05d}</id>"
                f"<store>{rng.choice(STORES)}</store>"
                f"<ts>{day:%Y-%m-%d}T{hour:02d}:{n * 60 // per_hour:02d}:00Z</ts>"
                f"<total>{total / 100:.2f}</total><tenders>"
                + "".join(
                    f"<tender><type>{t}</type><amount>{c / 100:.2f}</amount></tender>"
                    for t, c in tenders
                )
                + "</tenders></record>"
            )
            n += 1
        out.append(("<records>" + "".join(records) + "</records>").encode())
    return out


def land_pos_hour(storage: StorageBackend, day: date, hour: int, payloads: list[bytes]) -> None:
    """Land XML payloads as the ingest API does: each one's xmltodict tree a CBOR item."""
    body = b"".join(cbor2.dumps(parse_xml(p)) for p in payloads)
    storage.write_bytes(f"pos-records/{day:%Y/%m/%d}/{hour:02d}/part-example-000000.cbor", body)


CUT_LINE = b'{"event_id": "ev-cut-off", "customer": {"id"\n'


def land_day(storage: StorageBackend, day: date, seed: int = 7, per_hour: int = 50) -> int:
    """Write a day of example payloads in the landing layout; returns records written."""
    rng = random.Random(seed)
    pos_rng = random.Random(seed + 1)
    total = 0
    for hour in range(24):
        for stream, make in (("web-events", web_events), ("profile-updates", profile_updates)):
            records = make(day, hour, rng, per_hour)
            body = b"".join(orjson.dumps(r) + b"\n" for r in records)
            if stream == "web-events" and hour == 13:  # a line cut off mid-write, so that
                body += CUT_LINE  # `courier quarantine` has something to show
            key = f"{stream}/{day:%Y/%m/%d}/{hour:02d}/part-example-000000.ndjson"
            storage.write_bytes(key, body)
            total += len(records)
        payloads = pos_payloads(day, hour, pos_rng, per_hour // 5)
        land_pos_hour(storage, day, hour, payloads)
        total += len(payloads)
    return total


def land_sample_payloads(context: Context, day: date) -> list[str]:
    """The analyst examples (samples/, docs/analyst-guide.md): land their sample payloads at
    noon of `day`; returns the couriers that read them."""
    from courier.analyst.samples import land_samples, sample_couriers

    project = context.project
    landed = land_samples(project, context.storage(project.settings.ingest.storage), day)
    print(f"landed samples/ for {day}: " + ", ".join(f"{k} {v}" for k, v in landed.items()))
    return sample_couriers(project)


def print_run(name: str, result: dict[str, Any], what: str = "") -> None:
    parts = [f"{result['status']}, {result['files']['loaded']} file(s) "
             f"({result['files']['skipped']} already loaded)"]  # fmt: skip
    parts += [f"{k}: {v['loaded']} loaded" for k, v in result["feeds"].items()]
    if result["quarantined"]:
        parts.append(f"{result['quarantined']} quarantined (courier quarantine --courier {name})")
    if result["error"]:
        parts.append(result["error"])
    print(f"courier {name}{what}: " + "; ".join(parts))


def live_examples(context: Context, now: datetime) -> bool:
    """Sources beyond batch landing (demo/examples_live.py), then the activity courier over
    the days they landed in; False when a step failed (said on stderr)."""
    project = context.project
    try:
        live = run_live(project, context.storage(project.settings.ingest.storage))
    except Exception as exc:  # the servers are stopped; say what failed, show the feeds
        print(f"\nlive sources: failed: {describe_error(exc)}", file=sys.stderr)
        return False
    print_live(live)
    courier = project.courier("activity_events")
    for day in live.activity_dates():
        window = context.window(courier, date=day)
        print_run("activity_events", context.run("activity_events", window, now), f" ({day})")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--project", default=str(Path.cwd()))
    parser.add_argument(
        "--date", help=f"day to land and load (default: {EXAMPLE_DAY}, the README's day)"
    )
    args = parser.parse_args(argv)
    project = load_project(args.project)
    context = Context(project)
    day = date.fromisoformat(args.date) if args.date else EXAMPLE_DAY
    landed = land_day(context.storage(project.settings.ingest.storage), day)
    storage = project.settings.ingest.storage
    print(f"landed {landed} example payloads for {day} in storage {storage!r}")
    samples = land_sample_payloads(context, day)
    now = datetime.now(UTC)
    for name in ("web_events", "profile_updates", "pos_tenders", *samples):
        courier = project.courier(name)
        window = context.window(courier, date=day.isoformat())
        print_run(name, context.run(name, window, now))
    live_ok = live_examples(context, now)
    with context.workspace() as ws:
        for feed_id in project.feeds:
            count = ws.destination.row_count(feed_id)
            print(f"\nfeed {feed_id}: {count} rows")
            rows = ws.destination.sample(feed_id, 3) if count else []
            columns = [c for c in (rows[0] if rows else {}) if not c.startswith("_courier")]
            if rows:
                print("  " + table(rows, columns).replace("\n", "\n  "))
    if not live_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
