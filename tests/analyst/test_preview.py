"""`courier query preview`: a saved query over a sample of the window (or a local file), shown
as a table, JSON or CSV, with the input schema on request; nothing is written."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import date

import boto3
import orjson
import pytest

from courier.analyst.preview import preview
from courier.errors import ConfigError
from tests.analyst.helpers import courier
from tests.projects import ProjectFactory, event

DAY = date(2026, 11, 22)


def landed_day(p: ProjectFactory) -> ProjectFactory:
    p.events_project()
    for hour in range(24):
        p.land_hour(DAY, hour, [event(hour * 10 + i, items=2) for i in range(5)])
    return p


def window_of(p: ProjectFactory):  # type: ignore[no-untyped-def]
    ctx = p.context()
    return ctx, ctx.window(ctx.project.courier("events"), date=DAY.isoformat())


def test_preview_samples_the_window_and_writes_nothing(make_project: ProjectFactory) -> None:
    p = landed_day(make_project)
    ctx, window = window_of(p)
    result = preview(ctx, "order_items", "events", window, limit=5)
    (report,) = result.inputs
    assert report.found == 24 and len(report.read) == 8 and report.sampled
    # spread over the window: first and last hour included
    assert report.read[0].endswith("/00/part-test-000000.ndjson")
    assert report.read[-1].endswith("/23/part-test-000000.ndjson")
    assert report.records == 40
    assert len(result.rows) == 5 and result.total_rows == 80
    assert list(result.columns) == ["event_id", "item_idx", "customer_id", "sku", "qty", "price"]
    full = preview(ctx, "order_items", "events", window, limit=0, full=True)
    assert full.inputs[0].records == 120 and not full.inputs[0].sampled
    assert len(full.rows) == 240
    # no feed database, no state, nothing left beside the landed files
    assert not (p.root / ".courier" / "feeds.duckdb").exists()
    assert not list(p.landing.rglob(".clean-*"))


def test_preview_counts_malformed_lines_and_cleans_up(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 1, orjson.dumps(event(1)) + b"\n{broken\n" + orjson.dumps(event(2)) + b"\n")
    ctx, window = window_of(p)
    result = preview(ctx, "order_items", "events", window)
    assert result.inputs[0].records == 2 and result.inputs[0].bad == 1
    assert "1 malformed record(s) skipped" in result.inputs[0].describe()
    assert not list(p.landing.rglob(".clean-*"))


def test_mixed_shapes_show_the_union_schema(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 0, [event(1), event(2)])
    p.land_hour(DAY, 5, [{**event(3), "coupon": {"code": "X", "pct": 10}, "customer": {"id": 9}}])
    p.land_hour(DAY, 9, [{"event_id": "e4", "kind": "heartbeat", "items": []}])
    ctx, window = window_of(p)
    result = preview(ctx, "order_items", "events", window, with_schema=True)
    rows = {r["path"]: r for r in result.schema_rows()}
    assert {"event_id", "customer", "customer.id", "customer.email", "items", "items[].sku",
            "coupon", "coupon.code", "coupon.pct", "kind"} <= set(rows)  # fmt: skip
    assert rows["coupon.pct"]["type"] == "BIGINT"
    assert rows["items"]["type"] == "STRUCT[]"
    assert rows["event_id"]["filled"] == 1.0
    assert rows["customer.email"]["filled"] == pytest.approx(2 / 4)
    assert rows["kind"]["filled"] == pytest.approx(1 / 4)


def test_cli_table_json_csv_and_schema(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 3, [event(1, items=3)])
    table = courier(p, "query", "preview", "order_items", "--date", "2026-11-22")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["event_id", "item_idx", "customer_id", "sku", "qty", "price"]
    assert lines[2].split() == ["e1", "1", "1", "s0", "1", "1.5"]
    assert (
        "3 of 3 row(s)" in table.stderr
        and "events: 1 record(s) from 1 of 1 file(s)" in table.stderr
    )
    as_json = json.loads(
        courier(
            p,
            "query",
            "preview",
            "order_items",
            "events",
            "--date",
            "2026-11-22",
            "--limit",
            "2",
            "--json",
        ).stdout  # fmt: skip
    )
    assert as_json["total_rows"] == 3 and len(as_json["rows"]) == 2
    assert as_json["rows"][1] == {
        "event_id": "e1", "item_idx": 2, "customer_id": 1, "sku": "s1", "qty": 2, "price": 3.0,
    }  # fmt: skip
    as_csv = courier(p, "query", "preview", "order_items", "--date", "2026-11-22", "--csv")
    parsed = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert parsed[0][:2] == ["event_id", "item_idx"] and len(parsed) == 4
    schema = courier(p, "query", "preview", "order_items", "--date", "2026-11-22", "--schema")
    assert schema.stdout.splitlines()[0] == "events"
    assert any(line.split()[:2] == ["items", "STRUCT[]"] for line in schema.stdout.splitlines())


def test_preview_a_local_sample_file_and_a_draft_query_path(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    sample = p.write("samples/events.json", json.dumps([event(1), event(2, items=1)]))
    draft = p.write("drafts/ids.sql", "SELECT event_id, len(items) AS n FROM events")
    result = courier(p, "query", "preview", str(draft), "events", "--file", str(sample), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["rows"] == [{"event_id": "e1", "n": 2}, {"event_id": "e2", "n": 1}]
    assert out["inputs"][0]["source"] == f"sample file {sample}"


def test_preview_a_courier_shows_its_input_as_it_is(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 3, [event(1), event(2)])
    ctx, window = window_of(p)
    result = preview(ctx, "events", None, window)
    assert list(result.columns) == ["event_id", "customer", "items"]
    assert result.records()[1]["customer"] == {"id": 1, "email": "c1@x.test"}


def test_preview_errors(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    ctx, window = window_of(p)
    with pytest.raises(ConfigError, match="no saved query 'nope'"):
        preview(ctx, "nope", "events", window)
    p.query("orphan", "SELECT 1")
    with pytest.raises(ConfigError, match="not used by any courier"):
        preview(p.context(), "orphan", None, window)
    bad = courier(p, "query", "preview", "order_items", "--file", "missing.ndjson")
    assert bad.returncode == 1 and "no sample file missing.ndjson" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.integration
def test_preview_over_s3_downloads_only_the_sample(
    make_project: ProjectFactory, moto_endpoint: str, aws_env: None
) -> None:
    bucket = f"acme-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    for hour in range(12):
        body = b"".join(orjson.dumps(event(hour * 2 + i)) + b"\n" for i in range(2))
        s3.put_object(
            Bucket=bucket, Key=f"landing/events/2026/11/22/{hour:02d}/p.ndjson", Body=body
        )
    p = make_project.events_project()
    p.write(
        "config/courier.toml",
        f"""
        [storages.lake]
        type = "s3"
        bucket = "{bucket}"
        prefix = "landing/"
        endpoint_url = "{moto_endpoint}"
        region = "us-east-1"
        """,
    )
    text = (p.root / "config/couriers/events.toml").read_text()
    p.write("config/couriers/events.toml", text.replace('storage = "landing"', 'storage = "lake"'))
    ctx, window = window_of(p)
    result = preview(ctx, "order_items", "events", window)
    assert result.inputs[0].found == 12 and len(result.inputs[0].read) == 8
    assert result.inputs[0].records == 16 and result.total_rows == 32
    assert not (p.root / ".courier").exists()
