"""The status page in a real browser: `courier ui` as a process on loopback, headless Chromium
(Debian's) through playwright."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.projects import ProjectFactory
from tests.servers import free_port, stop_process, wait_for_port
from tests.ui.browser import browser_page
from tests.ui.seed import JWT_SECRET

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ui_url(seeded: ProjectFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = Path(tmp_path_factory.mktemp("ui-log")) / "ui.log"
    env = {**os.environ, "COURIER_JWT_SECRET": JWT_SECRET}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "courier", "--project", str(seeded.root), "ui",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            wait_for_port(port, proc=proc, timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc)


def test_overview_in_chromium_then_a_click_from_the_failing_courier_to_its_error(
    ui_url: str, tmp_path: Path
) -> None:
    console: list[str] = []
    requests: list[str] = []
    failed: list[str] = []
    with browser_page(tmp_path / "profile") as page:
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(ui_url + "/", wait_until="networkidle")
        assert page.title() == "Overview · courier"
        assert page.locator("section.alerts").is_visible()
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
        # the failing courier's row: its last run links to the run page with the error
        row = page.locator("tr", has=page.locator(".badge.s-failing"))
        assert row.locator("a.courier").inner_text() == "clicks"
        row.locator("a.run").click()
        page.wait_for_load_state("networkidle")
        assert "/runs/" in page.url
        assert "max_bad_records = 1" in page.locator("pre.error").inner_text()
        assert "<script>alert('x')</script>" in page.locator("pre.raw").all_inner_texts()
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        page.goto(ui_url + "/charts", wait_until="networkidle")
        points = page.locator("svg circle.point")
        assert points.count() >= 7
        assert page.locator("svg").nth(3).locator("circle.point").count() == 1  # landed
        page.goto(ui_url + "/runs?status=failed", wait_until="networkidle")
        assert page.locator("tbody tr").count() == 1
        page.goto(ui_url + "/feeds", wait_until="networkidle")
        assert page.locator("#feed-order_items").is_visible()
    assert console == []
    assert failed == []
    hosts = {urlsplit(u).hostname for u in requests}
    assert hosts == {"127.0.0.1"}, requests
    assert any(u.endswith("/favicon.svg") or u.endswith("/favicon.ico") for u in requests)
    assert (tmp_path / "overview.png").stat().st_size > 10_000
    assert httpx.get(ui_url + "/api/status.json").json()["counts"]["failing"] == 1
