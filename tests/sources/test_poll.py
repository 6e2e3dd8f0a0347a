"""http_poll against a real loopback API, `courier poll` run as a separate process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.projects import ProjectFactory
from tests.sources.api import FakeApi, event
from tests.sources.conftest import courier_cli, env, landed_parts, landed_records, source

pytestmark = pytest.mark.integration

CURSOR_SOURCE = """
type = "http_poll"
stream = "events"
url = "{url}/events"
interval = "1s"
records = "/data"
dedupe_key = "/id"
max_backoff = 2
headers = {{ Authorization = "Bearer ${{POLL_TOKEN}}" }}

[cursor]
param = "cursor"
response = "/meta/next_cursor"
"""

LINKED_SOURCE = """
type = "http_poll"
stream = "events"
url = "{url}/linked"
records = "/items"
dedupe_key = "/id"

[pagination]
next_link = "/next"
"""


def test_cursor_pages_retry_on_429_and_resume(project: ProjectFactory, api: FakeApi) -> None:
    api.throttle_every = 3  # every third request answers 429 Retry-After: 1
    source(project, "events_api", CURSOR_SOURCE.format(url=api.url))
    out = courier_cli(project, "poll", "events_api", "--once", "--json", env=env())
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["landed"] == 25 and summary["cursor"] == "25"
    assert api.throttled >= 1
    assert landed_records(project, "events") == [event(i) for i in range(1, 26)]
    assert all(p.name.startswith("part-poll-events_api-") for p in landed_parts(project, "events"))

    again = courier_cli(project, "poll", "events_api", "--once", "--json", env=env())
    assert json.loads(again.stdout)["landed"] == 0  # resumes from the saved cursor
    assert any("cursor=25" in r for r in api.requests[-2:])

    api.add_events(7)
    more = courier_cli(project, "poll", "events_api", "--once", "--json", env=env())
    assert json.loads(more.stdout)["landed"] == 7
    assert landed_records(project, "events") == [event(i) for i in range(1, 33)]


def test_next_link_pages_skip_duplicate_keys(project: ProjectFactory, api: FakeApi) -> None:
    source(project, "linked", LINKED_SOURCE.format(url=api.url))
    out = courier_cli(project, "poll", "linked", "--once", "--json", env=env())
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["pages"] == 3 and summary["duplicates"] == 2
    assert landed_records(project, "events") == [event(i) for i in range(1, 26)]
    # a second poll re-reads every page (no cursor) and lands nothing new
    again = json.loads(courier_cli(project, "poll", "linked", "--once", "--json", env=env()).stdout)
    assert again["landed"] == 0 and again["duplicates"] == 27


def test_kill_after_land_before_cursor_saved(project: ProjectFactory, api: FakeApi) -> None:
    source(project, "events_api", CURSOR_SOURCE.format(url=api.url))
    proc = subprocess.Popen(
        [sys.executable, "-m", "courier", "--project", str(project.root)]
        + ["poll", "events_api", "--once"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(COURIER_FAULT_AFTER_LAND="60"),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first page is in storage, its cursor not saved yet
    assert line.startswith("FAULT landed "), proc.stderr.read() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()
    first = landed_records(project, "events")
    assert first == [event(i) for i in range(1, 11)]

    out = courier_cli(project, "poll", "events_api", "--once", "--json", env=env())
    assert out.returncode == 0, out.stderr
    # page 1 landed again under the same part (overwritten), then pages 2 and 3
    assert landed_records(project, "events") == [event(i) for i in range(1, 26)]
    assert len(landed_parts(project, "events")) == 3


def test_html_answer_is_a_clear_error_and_lands_nothing(
    project: ProjectFactory, api: FakeApi
) -> None:
    source(project, "web", f'type = "http_poll"\nstream = "events"\nurl = "{api.url}/html"\n')
    out = courier_cli(project, "poll", "web", "--once", env=env())
    assert out.returncode == 1
    assert "answered HTML" in out.stderr and "nothing was landed" in out.stderr
    assert "Traceback" not in out.stderr
    assert landed_parts(project, "events") == []


def test_bad_source_config_names_file_and_key(project: ProjectFactory) -> None:
    project.write("config/streams/pos.toml", 'payload = "xml"\n')
    source(project, "broken", 'type = "http_poll"\nstream = "nope"\nurl = "http://x"\n')
    source(project, "xml", 'type = "http_poll"\nstream = "pos"\nurl = "http://x"\n')
    source(project, "pull", 'type = "file_pull"\nstream = "events"\nlist_url = "http://x"\n')
    source(project, "ptr", 'type = "http_poll"\nstream = "events"\nurl = "u"\nrecords = "data"\n')
    out = courier_cli(project, "validate", env=env())
    assert out.returncode == 1
    text = out.stderr + out.stdout
    assert "config/sources/broken.toml [stream]: stream 'nope' is not defined" in text
    assert "config/sources/xml.toml [stream]: stream 'pos' takes xml payloads" in text
    assert "config/sources/pull.toml: a file_pull source needs get_url, delete_url" in text
    assert "config/sources/ptr.toml [records]: 'data' is not a JSON pointer" in text


def test_loop_until_sigterm(project: ProjectFactory, api: FakeApi) -> None:
    source(project, "events_api", CURSOR_SOURCE.format(url=api.url))
    proc = subprocess.Popen(
        [sys.executable, "-m", "courier", "--project", str(project.root)] + ["poll", "events_api"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    deadline = time.monotonic() + 30
    while len(landed_records(project, "events")) < 25 and time.monotonic() < deadline:
        time.sleep(0.1)
    api.add_events(3)  # the next round (interval 1s) picks them up
    while len(landed_records(project, "events")) < 28 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert landed_records(project, "events") == [event(i) for i in range(1, 29)]
    assert "landed in stream 'events'" in stdout


def test_retries_are_bounded_and_retry_after_is_capped(
    project: ProjectFactory, api: FakeApi
) -> None:
    api.throttle_every = 1  # always 429, asking for 100 s
    api.retry_after = "100"
    text = CURSOR_SOURCE.format(url=api.url)
    source(
        project, "events_api", text.replace("max_backoff = 2", "max_backoff = 0.2\nmax_retries = 2")
    )
    started = time.monotonic()
    out = courier_cli(project, "poll", "events_api", "--once", env=env())
    assert out.returncode == 1
    assert time.monotonic() - started < 30  # 2 waits of 0.2 s, not 100 s
    assert "failed 3 time(s), last with 429" in out.stderr
    assert "resumes from the last saved cursor" in out.stderr
    assert "t0ken" not in out.stderr
    assert len(api.requests) == 3
    assert landed_parts(project, "events") == []
