"""The in-memory destination: passes the destination contract, and loads the example feeds
of `make run` as the DuckDB destination does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from courier.context import Context
from courier.destinations import memory
from courier.destinations.memory import MemoryDestination, MemoryStore
from courier.validate import load_project
from tests.destinations.contract import DestinationContract, Open

ROOT = Path(__file__).resolve().parents[2]


class TestMemoryDestination(DestinationContract):
    @pytest.fixture
    def destination(self) -> Iterator[Open]:
        store = MemoryStore()
        yield lambda: MemoryDestination(store)


def example_project(tmp_path: Path, destination: str | None) -> Path:
    root = tmp_path / (destination or "duckdb")
    for folder in ("config", "feeds", "queries", "samples"):
        shutil.copytree(ROOT / folder, root / folder)
    if destination:
        settings = root / "config" / "courier.toml"
        text = settings.read_text()
        text = text.replace("[feeds]\n", f'[feeds]\ndestination = "{destination}"\n', 1)
        if f'destination = "{destination}"' not in text:
            text += f'\n[feeds]\ndestination = "{destination}"\n'
        text += f'\n[destinations.{destination}]\ntype = "memory"\n'
        settings.write_text(text)
    return root


def run_examples(root: Path) -> tuple[Context, dict[str, dict]]:
    from demo.examples import land_day, land_sample_payloads

    project = load_project(root)
    context = Context(project)
    day = date(2026, 11, 22)
    land_day(context.storage(project.settings.ingest.storage), day)
    samples = land_sample_payloads(context, day)
    results = {}
    for name in ("web_events", "profile_updates", "pos_tenders", *samples):
        window = context.window(project.courier(name), date=day.isoformat())
        results[name] = context.run(name, window, None)
    return context, results


def test_the_example_feeds_load_into_memory_as_into_duckdb(tmp_path: Path) -> None:
    memory.STORES.pop("mem", None)
    mem_context, mem_runs = run_examples(example_project(tmp_path, "mem"))
    duck_context, duck_runs = run_examples(example_project(tmp_path, None))
    assert {n: r["status"] for n, r in mem_runs.items()} == {
        n: r["status"] for n, r in duck_runs.items()
    }
    assert all(r["status"] == "succeeded" for r in mem_runs.values()), mem_runs
    assert {n: r["feeds"] for n, r in mem_runs.items()} == {
        n: r["feeds"] for n, r in duck_runs.items()
    }
    store = memory.STORES["mem"]
    with duck_context.workspace() as ws:
        for feed_id, feed in duck_context.project.feeds.items():
            count = ws.destination.row_count(feed_id)
            if count is None:
                continue
            assert store.tables[feed_id].num_rows == count, feed_id
            if feed.primary_key:
                key = feed.primary_key
                cols = ", ".join(f'"{k}"' for k in key)
                want = sorted(ws.connection.execute(f'SELECT {cols} FROM "{feed_id}"').fetchall())
                got = sorted(zip(*(store.tables[feed_id][k].to_pylist() for k in key), strict=True))
                assert got == want, feed_id
    # the state (courier.runs, courier.files) stayed in DuckDB: a second run loads nothing
    again = mem_context.run(
        "web_events",
        mem_context.window(mem_context.project.courier("web_events"), date="2026-11-22"),
        None,
    )
    assert again["status"] == "skipped"
