"""`courier query test` on every engine the project uses: a courier with engine = "NAME" (an
[engines.NAME] of type spark) has its query tests run on DuckDB and on that Spark Connect server
(Sail here), rows compared EXCEPT ALL both ways and differences listed row by row; and
`courier validate` checks the engine settings."""

from __future__ import annotations

import pytest

from tests.analyst.helpers import courier
from tests.analyst.test_querytest import PASSING
from tests.projects import EVENTS_COURIER, ProjectFactory
from tests.servers import free_port


def spark_project(p: ProjectFactory, remote: str) -> ProjectFactory:
    p.events_project()
    p.write(
        "config/courier.toml",
        f'[project]\ntime_zone = "UTC"\n\n[engines.sail]\ntype = "spark"\nremote = "{remote}"\n',
    )
    p.courier("events", 'engine = "sail"\n' + EVENTS_COURIER.lstrip())
    p.write("queries/tests/order_items.toml", PASSING)
    return p


@pytest.mark.integration
def test_query_test_runs_on_the_spark_engine_too(
    make_project: ProjectFactory, sail_remote: str
) -> None:
    p = spark_project(make_project, sail_remote)
    result = courier(p, "query", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    queries/tests/order_items.toml (2 row(s); same rows on sail)" in result.stdout


@pytest.mark.integration
def test_a_spark_twin_that_differs_is_reported_row_by_row(
    make_project: ProjectFactory, sail_remote: str
) -> None:
    p = spark_project(make_project, sail_remote)
    # the classic mistake: POSEXPLODE's 0-based position as the item index
    p.write(
        "queries/order_items.spark.sql",
        """
        SELECT e.event_id, CAST(i.pos AS BIGINT) AS item_idx, e.customer.id AS customer_id,
               i.item.sku AS sku, i.item.qty AS qty, i.item.price AS price
        FROM events AS e INNER JOIN LATERAL posexplode(e.items) AS i(pos, item)
        """,
    )
    result = courier(p, "query", "test")
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  queries/tests/order_items.toml: query order_items" in out
    assert (
        "engine 'sail': 2 row(s) of DuckDB's result missing, 2 row(s) DuckDB did not return" in out
    )
    assert "engine 'sail': only on DuckDB: {event_id: \"e1\", item_idx: 2" in out
    assert "engine 'sail': only on Spark: {event_id: \"e1\", item_idx: 0" in out


@pytest.mark.integration
def test_an_unreachable_server_fails_the_test_naming_the_engine(
    make_project: ProjectFactory,
) -> None:
    p = spark_project(make_project, f"sc://127.0.0.1:{free_port()}")
    result = courier(p, "query", "test")
    assert result.returncode == 1
    assert (
        "engine 'sail': engine 'sail': the Spark Connect server at sc://127.0.0.1:" in result.stdout
    )
    assert "cannot be reached" in result.stdout
    assert "Traceback" not in result.stderr


def test_validate_checks_engines(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.courier("events", 'engine = "cluster"\n' + EVENTS_COURIER.lstrip())
    result = courier(p, "validate")
    assert result.returncode == 1
    assert (
        "[engine]: engine 'cluster' is not defined; add [engines.cluster]"
        in result.stdout + result.stderr
    )
    p.write(
        "config/courier.toml",
        '[engines.cluster]\ntype = "spark"\nremote = "http://spark:15002"\n',
    )
    result = courier(p, "validate")
    assert result.returncode == 1
    assert "remote must be a Spark Connect URL" in result.stdout + result.stderr
    p.write(
        "config/courier.toml",
        '[engines.cluster]\ntype = "spark"\nremote = "sc://spark:15002/;token=${TOKEN}"\n'
        '[engines.cluster.cluster_uri]\nlake = "s3a://bucket/"\n',
    )
    result = courier(p, "validate")
    assert result.returncode == 1
    assert "cluster_uri names storage 'lake', which is not defined" in result.stdout + result.stderr
