"""`courier query draft`: a starting flattening query that runs and passes preview."""

from __future__ import annotations

import json
from datetime import date

import pytest

from courier.analyst.draft import draft_query
from courier.analyst.preview import preview, usable_project
from courier.context import Context
from courier.errors import ConfigError
from tests.analyst.helpers import courier, order
from tests.projects import ProjectFactory

DAY = date(2026, 11, 22)

ORDERS = """
file_pattern = "'orders/'yyyy/MM/dd'/*.ndjson'"
file_tag = "orders"
[load_operations]
orders = [{ type = "sql", sql-query = "orders", sql-files = [{ file = "orders" }] }]
"""


def orders_project(p: ProjectFactory, records: list[dict]) -> Context:
    p.courier("orders", ORDERS)
    p.land("orders/2026/11/22/a.ndjson", records)
    return Context(usable_project(p.root))


def test_draft_flattens_unnests_and_pivots_and_runs(make_project: ProjectFactory) -> None:
    p = make_project
    records = [
        order(1),
        order(2, items=1),
        {**order(3), "attributes": [{"name": "vip", "value": "true", "type": "boolean"}]},
    ]
    ctx = orders_project(p, records)
    window = ctx.window(ctx.project.courier("orders"), date="2026-11-22")
    draft = draft_query(ctx, "orders", window)
    assert draft.explode == "items"
    names = [c.name for c in draft.columns]
    assert names == [
        "event_id",
        "occurred_at",  # occurredAt, snake-cased
        "customer_id",
        "customer_email",
        "customer_address_city",
        "items_idx",
        "items_sku",
        "items_qty",
        "items_price",
        "attributes_channel",
        "attributes_score",
        "attributes_vip",
    ]
    assert "TRY_CAST(" in next(c.expr for c in draft.columns if c.name == "attributes_score")
    # written as a saved query, it passes preview
    p.write("queries/orders.sql", draft.sql)
    ctx = Context(usable_project(p.root))
    result = preview(ctx, "orders", "orders", window, limit=0)
    rows = result.records()
    assert len(rows) == 5  # 2 + 1 + 2 items
    assert rows[0]["customer_address_city"] == "Berlin" and rows[0]["items_idx"] == 1
    assert rows[1]["attributes_score"] == 10  # cast by its declared type
    assert rows[3]["attributes_vip"] is True and rows[3]["attributes_channel"] is None
    assert result.columns["attributes_score"] == "BIGINT"


def test_explode_a_nested_list_and_pivot_inside_it(make_project: ProjectFactory) -> None:
    p = make_project
    batch = {
        "batch": {
            "channel": "pos",
            "events": [
                {"code": "buy", "attrs": [{"key": "amount", "value": "9.5"}]},
                {"code": "view", "attrs": [{"key": "page", "value": "/"}]},
            ],
        },
        "tags": ["a", "b"],
    }
    ctx = orders_project(p, [batch])
    window = ctx.window(ctx.project.courier("orders"), date="2026-11-22")
    draft = draft_query(ctx, "orders", window, explode="batch.events")
    assert draft.explode == "batch.events"
    assert draft.pivots == {"batch.events[].attrs": ["amount", "page"]}
    p.write("queries/orders.sql", draft.sql)
    rows = preview(Context(usable_project(p.root)), "orders", "orders", window).records()
    assert [(r["batch_events_code"], r["batch_events_attrs_amount"], r["batch_events_attrs_page"])
            for r in rows] == [("buy", "9.5", None), ("view", None, "/")]  # fmt: skip
    assert rows[0]["tags"] == ["a", "b"] and rows[0]["batch_channel"] == "pos"


def test_bad_explode_path_lists_the_lists(make_project: ProjectFactory) -> None:
    ctx = orders_project(make_project, [order(1)])
    window = ctx.window(ctx.project.courier("orders"), date="2026-11-22")
    with pytest.raises(
        ConfigError, match="--explode customer: not a list .* the lists are: items, attributes"
    ):
        draft_query(ctx, "orders", window, explode="customer")


def test_cli_writes_never_overwrites_and_previews(make_project: ProjectFactory) -> None:
    p = make_project
    p.courier("orders", ORDERS)
    sample = p.write("samples/orders.json", "\n".join(json.dumps(order(i)) for i in range(3)))
    first = courier(p, "query", "draft", "orders", "--file", str(sample))
    assert first.returncode == 0, first.stderr
    assert (
        "wrote queries/orders.sql: 11 column(s); one row per element of items; attributes pivoted"
        in first.stdout
    )
    text = (p.root / "queries/orders.sql").read_text()
    assert text.startswith("-- Drafted by `courier query draft orders --file ")
    again = courier(p, "query", "draft", "orders", "--file", str(sample))
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    shown = courier(p, "query", "preview", "orders", "--file", str(sample), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["total_rows"] == 6


def test_no_records_is_an_error_not_an_empty_query(make_project: ProjectFactory) -> None:
    p = make_project
    p.courier("orders", ORDERS)
    result = courier(p, "query", "draft", "orders", "--date", "2026-11-22")
    assert result.returncode == 1
    assert "no records were read" in result.stderr and "Traceback" not in result.stderr
