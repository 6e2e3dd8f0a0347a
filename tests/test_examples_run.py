"""`make run` (python -m demo run) on a copy of the repository's project, twice: the
live examples land an API-key post, the signed webhook sample and the polled test API, the
activity courier loads them, and a second run converges (nothing polled twice, same feed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.sources.api import event

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def make_run(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_WEBHOOK_SECRET",)}
    env["PYTHONPATH"] = str(REPO)  # the demo is this checkout's, not the package's
    return subprocess.run(
        [sys.executable, "-m", "demo", "run", "--project", str(root),
         "--date", "2026-11-22"],
        capture_output=True, text=True, timeout=300, env=env, cwd=root,
    )  # fmt: skip


def landed(root: Path, stream: str) -> list[dict]:
    out = []
    for part in sorted((root / ".courier" / "landing" / stream).rglob("part-*")):
        out.extend(json.loads(line) for line in part.read_text().splitlines() if line)
    return out


def activity_ids(root: Path) -> list[str]:
    con = duckdb.connect(str(root / ".courier" / "feeds.duckdb"), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT event_id FROM activity ORDER BY 1").fetchall()]
    finally:
        con.close()


def test_make_run_lands_the_live_examples_twice(tmp_path: Path) -> None:
    root = tmp_path / "project"
    for folder in ("config", "feeds", "queries", "samples"):
        shutil.copytree(REPO / folder, root / folder)

    first = make_run(root)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert re.search(r"API key make-run-\S+ \(ck_\w+\) for activity-events: .* -> 202", out)
    assert "POST /webhook/v0/github-events -> 202" in out
    assert "source 'activity_poll': 4 page(s), 25 record(s), 25 landed" in out
    assert "activity-events: 4 part file(s), 26 record(s)" in out
    # the example day's one cut-off line is quarantined, and make run says where to look
    assert re.search(
        r"courier web_events: succeeded, 24 file\(s\) \(0 already loaded\); order_items: \d+ "
        r"loaded; 1 quarantined \(courier quarantine --courier web_events\)\n",
        out,
    )
    assert "github-events: 1 part file(s), 1 record(s)" in out
    # feed samples are aligned tables of values as people write them, no internal references
    assert "datetime.datetime" not in out and "Decimal(" not in out and "issue " not in out
    assert re.search(r"feed order_items: \d+ rows\n  event_id +item_idx +occurred_at", out)
    assert re.search(r"courier activity_events \(\d{4}-\d\d-\d\d\): succeeded, 4 file\(s\) "
                     r"\(0 already loaded\); activity: 26 loaded", out)  # fmt: skip

    sample = json.loads((REPO / "samples" / "webhooks" / "github-events.json").read_text())
    [hook] = landed(root, "github-events")
    assert hook["payload"] == sample and hook["source"] == "webhook:github"
    activity = landed(root, "activity-events")
    posted = [r for r in activity if r["id"] == "act-live-0001"]
    assert len(posted) == 1 and posted[0]["actor"]["id"] == "u-42"
    polled = [r for r in activity if r["id"].startswith("ev-")]
    assert polled == [event(i) for i in range(1, 26)]
    samples = [f"act-000{i}" for i in range(1, 6)]
    assert activity_ids(root) == sorted(["act-live-0001", *samples, *(e["id"] for e in polled)])

    keys = json.loads((root / ".courier" / "apikeys.json").read_text())["keys"]
    assert keys == []  # the demo key is deleted once the demo is done

    second = make_run(root)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    out = second.stdout
    assert "source 'activity_poll': 1 page(s), 0 record(s), 0 landed" in out
    assert "activity-events: 1 part file(s), 1 record(s)" in out
    assert "github-events: 1 part file(s), 1 record(s)" in out
    # feed samples are aligned tables of values as people write them, no internal references
    assert "datetime.datetime" not in out and "Decimal(" not in out and "issue " not in out
    assert re.search(r"feed order_items: \d+ rows\n  event_id +item_idx +occurred_at", out)
    again = [r["id"] for r in landed(root, "activity-events")]
    assert again.count("act-live-0001") == 2  # posted again (the feed upserts it)
    assert sorted(i for i in again if i.startswith("ev-")) == [e["id"] for e in polled]
    assert activity_ids(root) == sorted(["act-live-0001", *samples, *(e["id"] for e in polled)])
    assert not list((root / ".courier" / "wal").rglob("*.wal"))  # the server landed it all
