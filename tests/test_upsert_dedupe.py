"""The upsert's dedupe (destinations/duckdb.py load): last record wins by file and line order,
checked against a plain Python model on many duplicate keys, NULL key parts, rejected rows and
keys already in the feed table."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from tests.projects import ProjectFactory

DAY = date(2026, 11, 22)

FEED = """
primary_key = ["k1", "k2"]
required = ["v"]

[fields]
k1 = "string"
k2 = "int"
v = "int"
"""

COURIER = """
storage = "landing"
file_pattern = "'kv/'yyyy/MM/dd/HH'/*.ndjson'"
prefix = "00"
file_tag = "kv"
options = { max_bad_records = 1000 }

[load_operations]
kv = [{ type = "load", file = "kv" }]
"""


def kv_project(p: ProjectFactory) -> ProjectFactory:
    return p.feed("kv", FEED).courier("kv", COURIER)


def model(rows: list[dict[str, Any]]) -> dict[tuple, int]:
    """What an empty feed must hold after one run: good rows only (a value that casts, no NULL
    key part: key fields are required), the last one per key wins."""
    last: dict[tuple, int] = {}
    for r in rows:
        if good(r):
            last[(r["k1"], r["k2"])] = r["v"]
    return last


def good(r: dict[str, Any]) -> bool:
    return isinstance(r["v"], int) and r["k1"] is not None and r["k2"] is not None


def feed_rows(p: ProjectFactory) -> list[tuple]:
    return p.sql("SELECT k1, k2, v FROM kv ORDER BY ALL")


def test_many_duplicates_match_the_model(make_project: ProjectFactory) -> None:
    p = kv_project(make_project)
    rng = random.Random(11)
    batches = []
    for hour in range(6):
        rows = []
        for _ in range(400):
            k1 = rng.choice(["a", "b", "c", None])
            k2 = rng.choice([1, 2, 3, 4, 5, None])
            v: Any = rng.randrange(1000)
            if rng.random() < 0.05:
                v = "not a number"  # rejected: an earlier good row of the key wins
            rows.append({"k1": k1, "k2": k2, "v": v})
        batches.append(rows)
        p.land(f"kv/{DAY:%Y/%m/%d}/{hour:02d}/part-0.ndjson", rows)
    result = p.run("kv")
    assert result["status"] == "succeeded", result["error"]
    expected = model([r for rows in batches for r in rows])
    got = feed_rows(p)
    assert len(got) == len(expected)
    assert sorted(got, key=repr) == sorted([(k[0], k[1], v) for k, v in expected.items()], key=repr)
    rejected = sum(1 for rows in batches for r in rows if not good(r))
    assert result["feeds"]["kv"]["rejected"] == rejected


def test_upsert_into_a_loaded_table(make_project: ProjectFactory) -> None:
    p = kv_project(make_project)
    first = [{"k1": "a", "k2": i, "v": i} for i in range(10)]
    p.land(f"kv/{DAY:%Y/%m/%d}/00/part-0.ndjson", first)
    assert p.run("kv")["status"] == "succeeded"
    second = [{"k1": "a", "k2": 3, "v": 30}, {"k1": "a", "k2": 3, "v": 31}]
    second += [{"k1": "z", "k2": 1, "v": 1}]
    p.land(f"kv/{DAY:%Y/%m/%d}/01/part-0.ndjson", second)
    result = p.run("kv")
    assert result["status"] == "succeeded", result["error"]
    assert result["feeds"]["kv"] == {"read": 3, "loaded": 2, "rejected": 0}
    got = dict(((k1, k2), v) for k1, k2, v in feed_rows(p))
    assert got == {**{("a", i): i for i in range(10)}, ("a", 3): 31, ("z", 1): 1}


def test_no_duplicates_and_no_rejects_loads_everything(make_project: ProjectFactory) -> None:
    p = kv_project(make_project)
    rows = [{"k1": f"k{i}", "k2": i, "v": i} for i in range(1000)]
    p.land(f"kv/{DAY:%Y/%m/%d}/00/part-0.ndjson", rows)
    result = p.run("kv")
    assert result["feeds"]["kv"] == {"read": 1000, "loaded": 1000, "rejected": 0}
    assert p.sql("SELECT count(*), sum(v) FROM kv") == [(1000, sum(range(1000)))]
    # the work tables of the load are gone after the run
    assert p.sql(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '_courier_%' AND NOT temporary"
    ) == [(0,)]
