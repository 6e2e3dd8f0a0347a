"""file_pull against a real loopback list/get/delete API, then loaded by a courier run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from tests.projects import ProjectFactory
from tests.sources.api import FakeApi
from tests.sources.conftest import courier_cli, env, landed_parts, source

pytestmark = pytest.mark.integration

PULL_SOURCE = """
type = "file_pull"
stream = "pulled"
list_url = "{url}/files"
files = "/files"
get_url = "{url}/files/{{name}}"
delete_url = "{url}/files/{{name}}"
num_files = 50
"""

FEED = """
[fields]
id = "string"
file = "string"
n = "int"
"""

COURIER = """
storage = "landing"
file_pattern = "'pulled/'yyyy/MM/dd/HH'/*.ndjson'"
prefix = "00"
format = "ndjson"
file_tag = "pulled"

[load_operations]
pulled_rows = [{ type = "sql", sql-query = "pulled_rows", sql-files = [{ file = "pulled" }] }]
"""


def content(i: int) -> bytes:
    return b"".join(
        json.dumps({"id": f"f{i:03d}-{n}", "file": f"f{i:03d}", "n": n}).encode() + b"\n"
        for n in range(3)
    )


@pytest.fixture
def files_api(api: FakeApi) -> FakeApi:
    api.files = {f"f{i:03d}.ndjson": content(i) for i in range(25)}
    return api


def with_courier(p: ProjectFactory) -> None:
    p.feed("pulled_rows", FEED)
    p.query("pulled_rows", "SELECT id, file, n FROM pulled")
    p.courier("pulled", COURIER)


def test_pull_pages_of_ten_land_then_load(project: ProjectFactory, files_api: FakeApi) -> None:
    with_courier(project)
    source(project, "exchange", PULL_SOURCE.format(url=files_api.url))
    out = courier_cli(project, "poll", "exchange", "--once", "--json", env=env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"] == 25
    assert files_api.files == {} and len(files_api.deleted) == 25
    lists = [r for r in files_api.requests if r.startswith("GET /files?")]
    assert lists == ["GET /files?numFiles=50"] * 4  # 10 + 10 + 5, then an empty listing
    parts = landed_parts(project, "pulled")
    assert [p.name for p in parts] == [f"part-pull-f{i:03d}.ndjson" for i in range(25)]
    assert all(p.read_bytes() == content(i) for i, p in enumerate(parts))
    assert_loaded_once(project)


def assert_loaded_once(p: ProjectFactory) -> None:
    day = datetime.now(UTC).date().isoformat()
    run = courier_cli(p, "run", "pulled", "--date", day, "--json", env=env())
    assert run.returncode == 0, run.stderr + run.stdout
    rows = p.sql("SELECT count(*), count(DISTINCT id) FROM pulled_rows")
    assert rows == [(75, 75)]


def test_kill_between_land_and_delete(project: ProjectFactory, files_api: FakeApi) -> None:
    with_courier(project)
    source(project, "exchange", PULL_SOURCE.format(url=files_api.url))
    proc = subprocess.Popen(
        [sys.executable, "-m", "courier", "--project", str(project.root)]
        + ["poll", "exchange", "--once"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(COURIER_FAULT_AFTER_LAND="60"),
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()  # f000 is in storage; the source has not deleted it
    assert line.startswith("FAULT landed pulled/"), proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
    assert "f000.ndjson" in files_api.files and files_api.deleted == []
    assert [p.name for p in landed_parts(project, "pulled")] == ["part-pull-f000.ndjson"]
    # the courier loads what landed so far; the re-pull must not load f000 a second time
    day = datetime.now(UTC).date().isoformat()
    first = courier_cli(project, "run", "pulled", "--date", day, "--json", env=env())
    assert first.returncode == 0, first.stderr + first.stdout

    out = courier_cli(project, "poll", "exchange", "--once", "--json", env=env())
    assert out.returncode == 0, out.stderr
    assert files_api.files == {}
    parts = landed_parts(project, "pulled")
    assert [p.name for p in parts] == [f"part-pull-f{i:03d}.ndjson" for i in range(25)]
    assert all(p.read_bytes() == content(i) for i, p in enumerate(parts))
    assert_loaded_once(project)


def test_unsafe_name_lands_nothing(project: ProjectFactory, files_api: FakeApi) -> None:
    files_api.files["../../etc/passwd"] = b"root:x:0:0\n"
    files_api.files["a/b.ndjson"] = b"{}\n"
    source(project, "exchange", PULL_SOURCE.format(url=files_api.url))
    out = courier_cli(project, "poll", "exchange", "--once", env=env())
    assert out.returncode == 1
    assert "'../../etc/passwd'" in out.stderr and "nothing of this listing was landed" in out.stderr
    assert "Traceback" not in out.stderr
    assert landed_parts(project, "pulled") == []
    assert files_api.deleted == [] and len(files_api.files) == 27
    assert not (project.root / "etc").exists()
