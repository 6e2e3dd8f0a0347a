"""The shipped examples: the GitHub webhook sample under samples/webhooks/ is accepted exactly as
curl would send it, and the activity stream takes an API key in headers with a client id."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.ingest.helpers import Server, environment, landed_json

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_example_webhook_and_api_key_streams_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    shutil.copytree(REPO / "config" / "streams", root / "config" / "streams")
    shutil.copy(REPO / "config" / "courier.toml", root / "config" / "courier.toml")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "example-webhook-secret")  # as samples/ says
    created = subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(root), "apikey", "create", "shop",
         "--stream", "activity-events", "--json"],
        capture_output=True, text=True, env=environment(), timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    samples = REPO / "samples"
    body = (samples / "webhooks" / "github-events.json").read_bytes()
    hook_headers = dict(
        line.split(": ", 1)
        for line in (samples / "webhooks" / "github-events.headers").read_text().splitlines()
    )
    activity = (samples / "activity-events.ndjson").read_text().splitlines()[0]
    server = Server(root).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            r = client.post("/webhook/v0/github-events", content=body, headers=hook_headers)
            assert r.status_code == 202, r.text
            tampered = body.replace(b"octocat", b"mallory")
            r = client.post("/webhook/v0/github-events", content=tampered, headers=hook_headers)
            assert r.status_code == 401
            r = client.post(
                "/stream/v0/data/activity-events",
                content=activity,
                headers={
                    "Content-Type": "application/json",
                    "X-App-Id": key["id"],
                    "X-App-Secret": key["secret"],
                    "X-Client-Instance": "tenant-eu",
                },
            )
            assert r.status_code == 202, r.text
    finally:
        assert server.stop() == 0  # graceful: seals and lands what was accepted
    [hook] = landed_json(root, "github-events")
    assert hook["payload"] == json.loads(body) and hook["source"] == "webhook:github"
    assert landed_json(root, "activity-events") == [json.loads(activity)]
