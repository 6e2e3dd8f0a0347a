"""The live half of `make run`: sources beyond the ingest API, landing for real.

Against a `courier serve` started on a free loopback port (and stopped with SIGTERM, which
lands what it accepted, whatever happens here):

1. an API key for the activity-events stream, created in the project's key store
   (.courier/apikeys.json, as `courier apikey create` does) and deleted afterwards, and a
   sample activity event POSTed with it in the stream's headers (X-App-Id, X-App-Secret,
   X-Client-Instance);
2. the signed GitHub delivery of samples/webhooks/ POSTed to /webhook/v0/github-events, the
   server given the public example secret it was signed with (DEMO_WEBHOOK_SECRET);
3. the http_poll source config/sources/activity_poll.toml run once against the test API
   (`python -m tests.sources.api`) on a free port instead of its configured 8099.

Then it says which part files landed in each stream, with their record counts. Every wait has
a timeout; the two subprocesses are stopped in `finally`. Run twice, it lands the two posts
again (same event id: the activity feed upserts it) and nothing from the poll (its cursor and
dedupe keys are saved).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from courier.errors import CourierError
from courier.processes import ChildProcess, free_port, start_serve
from courier.project import Project
from courier.storage.base import StorageBackend

# samples/webhooks/ is signed with this public example secret; only the demo server gets it
DEMO_WEBHOOK_SECRET = "example-webhook-secret"  # noqa: S105
SOURCE = "activity_poll"
ACTIVITY = "activity-events"
WEBHOOK = "github-events"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0


class DemoError(RuntimeError):
    """A step of the live demo failed; the message says which and shows the server's log."""


@dataclass
class LiveResult:
    """What the live demo did: one line per step, and the parts that landed per stream."""

    steps: list[str] = field(default_factory=list)
    landed: dict[str, dict[str, int]] = field(default_factory=dict)  # stream -> key -> records

    def activity_dates(self) -> list[str]:
        """The UTC dates of the activity-events parts that landed (the courier's windows)."""
        dates = {"-".join(key.split("/")[1:4]) for key in self.landed.get(ACTIVITY, {})}
        return sorted(dates)


def test_api_root(project: Project) -> Path | None:
    """The folder holding tests/sources/api.py: the project's, else this checkout's."""
    for root in (project.root, Path(__file__).resolve().parents[1]):
        if (root / "tests" / "sources" / "api.py").is_file():
            return root
    return None


def snapshot(storage: StorageBackend, streams: list[str]) -> dict[str, str]:
    return {o.key: o.version for s in streams for o in storage.list(f"{s}/")}


def count_records(storage: StorageBackend, key: str) -> int:
    data = storage.read_bytes(key)
    return len([line for line in data.splitlines() if line.strip()])


@contextlib.contextmanager
def serving(project: Project, env: dict[str, str]) -> Iterator[str]:
    """`courier serve` on a free loopback port; its URL. Stopped (landing what it accepted)
    on the way out, whatever happened."""
    log = project.path(".courier/make-run-serve.log")
    server = start_serve(project.root, log, env, timeout=START_TIMEOUT)
    try:
        yield server.url
    except BaseException:
        server.stop(STOP_TIMEOUT)
        raise
    code = server.stop(STOP_TIMEOUT)
    if code != 0:
        raise DemoError(f"courier serve exited with {code} after SIGTERM:\n{server.tail()}")


@contextlib.contextmanager
def test_api(project: Project) -> Iterator[str | None]:
    """The loopback test API on a free port; None when this checkout has no tests/."""
    root = test_api_root(project)
    if root is None:
        yield None
        return
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    api = ChildProcess("the test API",
                       [sys.executable, "-m", "tests.sources.api", "--port", str(port)],
                       project.path(".courier/make-run-test-api.log"), env, root)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        api.wait_http(url + "/events?limit=1", START_TIMEOUT)
        yield url
    finally:
        api.stop(timeout=10)


def post_activity_with_api_key(project: Project, url: str, result: LiveResult) -> None:
    from courier.ingest.apikeys import KeyStore

    store = KeyStore.for_project(project)
    name = f"make-run-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    key, secret = store.create(name, [ACTIVITY])
    try:
        sample = project.path("samples/activity-events.ndjson").read_bytes().splitlines()[0]
        event = orjson.loads(sample)
        event["id"] = "act-live-0001"  # one id: a second make run upserts the same row
        event["metadata"]["localtimestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        names = project.streams[ACTIVITY].api_keys
        headers = {
            "Content-Type": "application/json",
            names.id_header: key.id,
            names.secret_header: secret,
            names.client_header: "tenant-eu",
        }
        r = httpx.post(f"{url}/stream/v0/data/{ACTIVITY}", content=orjson.dumps(event),
                       headers=headers, timeout=REQUEST_TIMEOUT)  # fmt: skip
        if r.status_code != 202:
            raise DemoError(f"POST /stream/v0/data/{ACTIVITY} answered {r.status_code}: {r.text}")
        result.steps.append(
            f"API key {name} ({key.id}) for {ACTIVITY}: POST /stream/v0/data/{ACTIVITY} with "
            f"{names.id_header}/{names.secret_header}/{names.client_header} -> 202 "
            f"(event {event['id']})"
        )
    finally:
        store.delete(name)  # a demo key: nothing of it stays in the store


def post_webhook_sample(project: Project, url: str, result: LiveResult) -> None:
    folder = project.path("samples/webhooks")
    body = (folder / f"{WEBHOOK}.json").read_bytes()
    headers = dict(
        line.split(": ", 1)
        for line in (folder / f"{WEBHOOK}.headers").read_text().splitlines()
        if ": " in line
    )
    # Each make run is a new delivery, as GitHub gives each its own id; replaying the captured
    # id would rightly be answered 200 duplicate (the signature covers the body only).
    headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    r = httpx.post(f"{url}/webhook/v0/{WEBHOOK}", content=body, headers=headers,
                   timeout=REQUEST_TIMEOUT)  # fmt: skip
    if r.status_code != 202:
        raise DemoError(f"POST /webhook/v0/{WEBHOOK} answered {r.status_code}: {r.text}")
    event = headers.get("X-GitHub-Event", "?")
    result.steps.append(
        f"webhook samples/webhooks/{WEBHOOK}.json ({event}, X-Hub-Signature-256): "
        f"POST /webhook/v0/{WEBHOOK} -> 202"
    )


def poll_test_api(project: Project, api_url: str, result: LiveResult) -> None:
    from courier.sources.run import describe, get_source, run_source

    source = get_source(project, SOURCE)
    url = f"{api_url}/events"
    summary = run_source(project, SOURCE, source=source.model_copy(update={"url": url}))
    result.steps.append(f"{describe(summary)} (polled {url}, configured {source.url})")


def run_live(project: Project, storage: StorageBackend) -> LiveResult:
    """The three live examples; DemoError (after stopping everything) when one fails."""
    result = LiveResult()
    streams = [ACTIVITY, WEBHOOK]
    before = snapshot(storage, streams)
    os.environ.setdefault("ACTIVITY_API_TOKEN", "make-run-demo-token")  # the source's header
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET}
    env.setdefault("COURIER_JWT_SECRET", secrets.token_hex(32))  # the streams' [auth] need one
    try:
        with serving(project, env) as url:
            result.steps.append(f"courier serve on {url}")
            post_activity_with_api_key(project, url, result)
            post_webhook_sample(project, url, result)
        # stopped: what it accepted has landed
        with test_api(project) as api_url:
            if api_url is None:
                result.steps.append(f"source {SOURCE}: skipped, no tests/sources/api.py here")
            else:
                poll_test_api(project, api_url, result)
    finally:
        after = snapshot(storage, streams)
        for key, version in sorted(after.items()):
            if before.get(key) != version:
                stream = key.split("/", 1)[0]
                result.landed.setdefault(stream, {})[key] = count_records(storage, key)
    return result


def print_live(result: LiveResult) -> None:
    print("\nlive sources:")
    for step in result.steps:
        print(f"  {step}")
    print("landed:")
    for stream in (ACTIVITY, WEBHOOK):
        parts = result.landed.get(stream, {})
        print(f"  {stream}: {len(parts)} part file(s), {sum(parts.values())} record(s)")
        for key, records in parts.items():
            print(f"    {key}  {records} record(s)")


def describe_error(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DemoError | CourierError) else f"{type(exc).__name__}: {exc}"
