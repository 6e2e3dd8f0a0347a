"""What polling and file pull share: HTTP with bounded back-off, the state store, landing.

Landing writes one part per page (poll) or per file (pull) straight into the stream's hourly
layout with an atomic write. The part key is chosen before the write and remembered in the
state store (`courier.cursors.pending`, `courier.source_keys.landed_as`), so a run repeated
after a crash writes the same object again instead of a second copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import orjson

from courier.config.loader import read_document, unset_env
from courier.errors import ConfigError, CourierError, RunError, TransientError, retry_transient
from courier.project import Project
from courier.sources.config import SourceConfig
from courier.state.base import StateStore
from courier.storage.base import StorageBackend
from courier.storage.registry import create_storage

log = logging.getLogger("courier.sources")

T = TypeVar("T")
RETRY_STATUS = {429, 500, 502, 503, 504}
FAULT_AFTER_LAND = "COURIER_FAULT_AFTER_LAND"  # tests: sleep this long after a part landed


class Stopped(CourierError):
    """The process is stopping: a back-off was cut short, nothing more lands this round (what
    landed is recorded; the next round resumes from the saved cursor)."""


def hour_prefix(stream: str, at: datetime) -> str:
    return f"{stream}/{at.astimezone(UTC):%Y/%m/%d/%H}"


def fault_after_land(key: str) -> None:
    """Crash tests: say that the part landed, then hold still long enough to be killed."""
    pause = os.environ.get(FAULT_AFTER_LAND)
    if pause:
        print(f"FAULT landed {key}", flush=True)
        time.sleep(float(pause))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class SourceRuntime:
    """One source while it runs: its HTTP client, storage and state store access.

    `stop` (set on SIGTERM) ends a round after the page or file being landed, and cuts a
    back-off short; `hold` wraps every use of the feed database (the scheduler passes its
    process-wide keeper, so that threads never race DuckDB's instance create/teardown)."""

    def __init__(
        self,
        project: Project,
        source: SourceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        stop: threading.Event | None = None,
        hold: Callable[[], AbstractContextManager[Any]] | None = None,
    ):
        from courier.ingest.service import stream_storage

        self.project = project
        self.source = source
        self.sleep = sleep
        self.stop = stop
        self.hold = hold or contextlib.nullcontext
        stream = project.streams[source.stream]
        self.stream = stream
        storage_name = stream_storage(project, stream)
        self.storage: StorageBackend = create_storage(
            storage_name, project.settings.storages[storage_name], project.root
        )
        self._check_headers(project)
        self.client = httpx.Client(
            headers=source.headers, timeout=source.timeout, transport=transport
        )

    def _check_headers(self, project: Project) -> None:
        """A header built from an unset ${VAR} ("Bearer ") would be sent, and refused, again
        and again: name the variable before the first request."""
        path = project.root / "config" / "sources" / f"{self.source.name}.toml"
        if not path.is_file():
            return
        headers = read_document(path).get("headers")
        unset = unset_env(headers if isinstance(headers, dict) else {}, "headers")
        if unset:
            named = "; ".join(f"{k} uses ${{{', '.join(v)}}}" for k, v in unset.items())
            variables = sorted({n for v in unset.values() for n in v})
            raise ConfigError(
                f"source {self.source.name}: {named}, not set in the environment; export "
                f"{' and '.join(variables)} before `courier poll` or `courier scheduler` "
                "(`courier validate --for scheduler` lists what each source needs)",
                path,
            )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SourceRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    # -- HTTP --------------------------------------------------------------------------------
    def request(
        self, method: str, url: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """One request; 429/5xx and network errors retried with exponential back-off
        (Retry-After honoured, capped at max_backoff), at most max_retries times."""
        src = self.source
        for attempt in range(src.max_retries + 1):
            problem: str
            wait: float | None = None
            try:
                resp = self.client.request(method, url, params=params)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code not in RETRY_STATUS:
                    if resp.status_code >= 400:
                        raise RunError(
                            f"source {src.name!r}: {method} {_show(resp.request.url)} answered "
                            f"{resp.status_code} {resp.reason_phrase}: {resp.text[:200]!r}; "
                            "check the URL and the headers in "
                            f"config/sources/{src.name}.toml"
                        )
                    return resp
                problem = f"{resp.status_code} {resp.reason_phrase}"
                wait = retry_after_seconds(resp.headers.get("retry-after"), time.time())
            if attempt == src.max_retries:
                raise TransientError(
                    f"source {src.name!r}: {method} {_show(httpx.URL(url))} failed "
                    f"{attempt + 1} time(s), last with {problem}; nothing more was landed, the "
                    "next poll resumes from the last saved cursor"
                )
            delay = min(src.max_backoff, wait if wait is not None else 0.5 * 2**attempt)
            shown = _show(httpx.URL(url))
            log.info("%s: %s %s: %s, retrying in %.1fs", src.name, method, shown, problem, delay)
            self._back_off(delay)
        raise AssertionError("unreachable")

    def _back_off(self, delay: float) -> None:
        if self.stop is None:
            self.sleep(delay)
        elif self.stop.wait(delay):
            raise Stopped(f"source {self.source.name!r}: stopping during a back-off")

    def json(self, resp: httpx.Response) -> Any:
        """The body as JSON; an HTML (or otherwise non-JSON) answer is a clear error."""
        ctype = resp.headers.get("content-type", "")
        head = resp.content[:200].lstrip().lower()
        if "html" in ctype or head.startswith((b"<!doctype", b"<html")):
            raise RunError(
                f"source {self.source.name!r}: {_show(resp.request.url)} answered HTML "
                f"({ctype or 'no content type'}), not JSON: the URL points at a web page, "
                "a login form or a proxy error; nothing was landed"
            )
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise RunError(
                f"source {self.source.name!r}: {_show(resp.request.url)} answered a body that "
                f"is not JSON ({exc}); nothing was landed"
            ) from None

    # -- landing ------------------------------------------------------------------------------
    def land(self, key: str, data: bytes) -> None:
        """Write a part atomically. When a run that stopped before recording it already wrote
        the same bytes under this key, leave the object alone: rewriting it would give it a
        new version, and a courier that loaded it already would load it again."""
        try:
            same = self.storage.stat(key).size == len(data) and self.storage.read_bytes(key) == data
        except FileNotFoundError:
            same = False
        if not same:
            self.storage.write_bytes(key, data)
        fault_after_land(key)

    # -- state -------------------------------------------------------------------------------
    def state(self, fn: Callable[[StateStore], T], timeout: float = 60.0) -> T:
        return in_state(self.project, fn, self.hold, timeout, self.sleep)


def in_state(
    project: Project,
    fn: Callable[[StateStore], T],
    hold: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """fn in one transaction on the state store, waiting while another process holds it."""
    from courier.workspace import open_workspace

    def attempt() -> T:
        with hold(), open_workspace(project) as ws:
            ws.state.begin()
            try:
                out = fn(ws.state)
            except BaseException:
                ws.state.rollback()
                raise
            ws.state.commit()
            return out

    until = time.monotonic() + timeout
    return retry_transient(attempt, until=until, sleep=sleep, first=0.1, cap=2.0)


def pointer(doc: Any, path: str, what: str) -> Any:
    """RFC 6901 JSON pointer; "" is the document itself. KeyError names what is missing."""
    if path == "":
        return doc
    node = doc
    for raw in path[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(f"{what}: nothing at {path!r}")
    return node


def _show(url: httpx.URL) -> str:
    """A URL without its query string (which may carry a token)."""
    return str(url.copy_with(query=None))
