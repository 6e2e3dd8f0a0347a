"""The command line as a newcomer meets it: a real subprocess, piped or on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.projects import ProjectFactory


def courier(
    project: ProjectFactory | Path, *args: str, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    root = project.root if isinstance(project, ProjectFactory) else project
    return subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(root), *args],
        capture_output=True, text=True, timeout=120, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def courier_on_terminal(project: ProjectFactory, *args: str) -> str:
    """stdout and stderr of a run whose output is a terminal (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "courier", "--project", str(project.root), *args],
        stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
