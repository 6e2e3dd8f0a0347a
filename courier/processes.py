"""Processes: whether a pid lives, and children on loopback (`courier serve`, the test API) for
`make run` and the benches.

    server = start_serve(root, log, env, workers=2)   # waits for /healthz, else ProcessError
    ...                                               # server.url
    code = server.stop()                              # SIGTERM: lands what it accepted

Each child runs in its own session with its output in a log file; `stop` sends SIGTERM and,
past the timeout, SIGKILLs the whole session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from courier.errors import CourierError


class ProcessError(CourierError):
    """A child process did not start or answer; the message shows the end of its log."""


def pid_alive(pid: int) -> bool:
    """A process with this pid runs on this host (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChildProcess:
    """A subprocess in its own session, its output in a log file, stopped by SIGTERM."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log: Path,
        env: dict[str, str],
        cwd: Path | None = None,
        url: str = "",
    ):
        self.name = name
        self.log = log
        self.url = url
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                start_new_session=True,  # Ctrl-C in a terminal reaches us; we stop it
            )  # fmt: skip

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(f"    | {line}" for line in text)

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Until url answers 200; ProcessError when the process exits or time runs out."""
        import httpx  # here: pid_alive's users (every CLI command) need not load it

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self.proc.returncode} while starting:\n{self.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise ProcessError(
            f"{self.name} did not answer {url} within {timeout:.0f}s:\n{self.tail()}"
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL (its whole session) after timeout; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)


def start_serve(
    root: Path, log: Path, env: dict[str, str], *, workers: int = 1, timeout: float = 30.0
) -> ChildProcess:
    """`courier serve` for the project at root on a free loopback port, once /healthz answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "courier", "--project", str(root), "serve",
           "--port", str(port), "--workers", str(workers)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    server = ChildProcess("courier serve", cmd, log, env, root, url)
    try:
        server.wait_http(url + "/healthz", timeout)
    except BaseException:
        server.stop()
        raise
    return server
