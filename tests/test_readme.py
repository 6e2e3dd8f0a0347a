"""The README's shell blocks run as written (issue 18, item 2), against the project `make run`
leaves behind, so the README cannot drift from what the commands do.

Blocks fenced as ```sh run, each with `bash -e` in a copy of the repository's project after
`python -m demo run` (what `make run` runs; one prepared project for the session);
blocks fenced as ```text (`make run`/`make test` themselves, foreground servers such as
`courier scheduler` and `courier ui`) are shown, not run. The serve recipe's port 8080 is
swapped for a free one.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def blocks() -> list[str]:
    return FENCE.findall((REPO / "README.md").read_text())


@pytest.fixture(scope="session")
def made_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme") / "project"
    for folder in ("config", "feeds", "queries", "samples"):
        shutil.copytree(REPO / folder, root / folder)
    (root / ".venv").symlink_to(Path(sys.prefix))
    made = subprocess.run(
        [sys.executable, "-m", "demo", "run", "--project", str(root)],
        capture_output=True, text=True, timeout=600, cwd=root,
        env={**environ(), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    return root


def environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURIER_")}
    env.pop("GITHUB_WEBHOOK_SECRET", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_has_shell_blocks_and_no_outside_links() -> None:
    text = (REPO / "README.md").read_text()
    assert len(blocks()) >= 4
    assert "../" not in text and "SPEC" not in text
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (REPO / link).exists(), f"README links to {link}, which is not in the repository"


@pytest.mark.parametrize("index", range(len(blocks())))
def test_readme_block_runs_as_written(made_project: Path, index: int) -> None:
    script = blocks()[index].replace("8080", str(free_port()))
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", "set -m\n" + script],
        capture_output=True, text=True, timeout=300, cwd=made_project, env=environ(),
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"README block {index + 1} failed:\n{script}\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-3000:]}"
    )
    assert "Traceback" not in proc.stderr and "Binder Error" not in proc.stderr
    assert "curl: (" not in proc.stderr  # the serve recipe waits for the server quietly
    if "courier quarantine --courier web_events" in script:  # what the comments promise
        assert "ev-cut-off" in proc.stdout  # the example day's cut-off line, with its reason
        assert re.search(r"order_items\s+\d+\s+\d+\s+0", proc.stdout)  # `runs show`: a load
    if "query import" in script:  # sqlglot alone wrote a star DuckDB cannot bind
        assert "TO_JSON({'_0'" not in proc.stdout
