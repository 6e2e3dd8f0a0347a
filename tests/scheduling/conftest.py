"""A project with a daily courier (events -> order_items, prefix "00") and an hourly one
(clicks -> clicks), plus helpers to write groups and run the CLI as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest

from tests.projects import ProjectFactory

CLICKS_FEED = """
primary_key = ["click_id"]

[fields]
click_id = "string"
page = "string"
"""

CLICKS_COURIER = """
storage = "landing"
file_pattern = "'clicks/'yyyy/MM/dd/HH'/*.ndjson'"
format = "ndjson"
file_tag = "clicks"

[load_operations]
clicks = [{ type = "load", file = "clicks" }]
"""


def clicks(hour: int, n: int = 3, day: str = "2026-11-23") -> list[dict[str, str]]:
    return [{"click_id": f"{day}-{hour:02d}-{i}", "page": f"/p{i}"} for i in range(n)]


def land_clicks(
    p: ProjectFactory, day: date, hour: int, n: int = 3, part: int = 0, prefix: str = "clicks"
) -> None:
    p.land(
        f"{prefix}/{day:%Y/%m/%d}/{hour:02d}/part-test-{part:06d}.ndjson",
        clicks(hour, n, day.isoformat()),
    )


def group(p: ProjectFactory, name: str, text: str) -> ProjectFactory:
    p.write(f"config/groups/{name}.toml", text)
    return p


def courier_cli(
    p: ProjectFactory, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(p.root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def project(make_project: ProjectFactory) -> ProjectFactory:
    p = make_project.events_project()
    p.feed("clicks", CLICKS_FEED)
    p.courier("clicks", CLICKS_COURIER)
    return p
