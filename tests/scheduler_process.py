"""A `courier scheduler` subprocess for the process tests (scheduling and sources)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.projects import ProjectFactory


class Scheduler:
    """`courier scheduler ARGS` with stdout and stderr in one log file."""

    def __init__(self, p: ProjectFactory, log: Path, *args: str, env: dict[str, str] | None = None):
        self.log = log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "courier", "--project", str(p.root), "scheduler", *args],
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, what: str, predicate: Callable[[], object], timeout: float = 30) -> None:
        """Poll `predicate`; a connection it cannot make yet (the page's server busy or
        between binds) is "not yet", and the scheduler's log is shown if it never comes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if predicate():
                    return
            except (OSError, httpx.TransportError) as exc:
                if time.monotonic() > deadline:
                    message = f"no {what} within {timeout}s ({exc}):\n{self.text()}"
                    raise AssertionError(message) from exc
            if self.proc.poll() is not None:
                raise AssertionError(f"scheduler exited ({self.proc.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout}s:\n{self.text()}")
            time.sleep(0.05)

    def wait_for(self, needle: str, count: int = 1, timeout: float = 90) -> None:
        """Until the log holds `needle` `count` times."""
        self.wait_until(f"{needle!r} x{count}", lambda: self.text().count(needle) >= count, timeout)

    def finish(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.handle.close()

    def stop(self, timeout: float = 15) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the exit took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.finish(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"no exit {timeout}s after SIGTERM:\n{self.text()}") from None
        return code, time.monotonic() - started
