"""Headless Debian Chromium driven by playwright (its own browser download cannot be fetched):
the flags keep Chromium from calling home (SCALEOUT-NOTES), the profile is a fresh folder."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--disable-component-update", "--disable-default-apps",
    "--disable-sync", "--metrics-recording-only", "--no-default-browser-check",
]  # fmt: skip


def chromium_path() -> str:
    found = shutil.which("chromium") or CHROMIUM
    if not Path(found).exists():
        raise AssertionError("Chromium is missing: run `make install-dev` (apt-get chromium)")
    return found


@contextlib.contextmanager
def browser_page(profile: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_path(),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
