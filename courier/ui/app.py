"""The status page as a plain ASGI app (like the ingest API: one route table, bytes out).

    GET  /                    overview: open alerts, one row per courier
    GET  /runs                run history (?courier=&group=&status=&from=&to=&page=)
    GET  /runs/{run_id}       one run: window, files, feeds, quarantine samples, error
    GET  /feeds               feeds: rows, columns, primary key, destination, sample rows
    GET  /charts              rows per hour/day, run durations, payloads landed (SVG)
    GET  /api/status.json     the overview in its pinned shape (README)
    GET  /metrics             Prometheus text format (never behind the token: counts only)
    GET  /login, POST /login  the token form (only when a token is required)

Read-only: no route writes anything. Pages come from the reader's last snapshot, so a page
never waits for a run. With a token (a non-loopback --host), every page but the stylesheet,
the icon, /metrics and the login form needs `Authorization: Bearer <token>` or the cookie the
login form sets. Without one, only loopback Host headers are answered (a DNS-rebinding page
cannot read it either).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from courier import metrics
from courier.ui import pages
from courier.ui.html import FAVICON, SECURITY_HEADERS, STYLESHEET, esc, layout
from courier.ui.reader import Snapshot, StatusReader

log = logging.getLogger("courier.ui")

COOKIE = "courier_ui"
LOGIN_BODY = 4096
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

Scope = dict[str, Any]


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def host_name(header: str) -> str:
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class StatusApp:
    """ASGI callable over a StatusReader. `token` None: loopback only, no login."""

    def __init__(self, reader: StatusReader, token: str | None = None):
        self.reader = reader
        self.token = token
        self.session = (
            hmac.new(token.encode(), b"courier-ui-session", hashlib.sha256).hexdigest()
            if token
            else None
        )
        self.metrics = metrics.UiMetrics()
        reader.listeners.append(self._snapshot_taken)

    @property
    def tz(self) -> Any:
        return self.reader.project.time_zone

    def _snapshot_taken(self, snap: Snapshot | None, outcome: str, seconds: float) -> None:
        self.metrics.snapshots.labels(outcome).inc()
        if outcome == "ok" and snap is not None:
            self.metrics.snapshot_seconds.observe(seconds)
            self.metrics.snapshot_hold.observe(snap.held_s)

    # -- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.reader.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.reader.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        page = route_name(path)
        status = 500
        try:
            if method not in ("GET", "HEAD") and not (path == "/login" and method == "POST"):
                raise HttpError(405, "the status page is read-only: use GET")
            status = await self.route(scope, receive, send, path, method)
        except HttpError as exc:
            status = exc.status
            if page == "api":
                await self.send(send, status, orjson.dumps({"error": str(exc)}), "json")
            else:
                await self.send(send, status, self.error_page(status, str(exc)), "html")
        except Exception:
            log.exception("status page: %s %s failed", method, path)
            await self.send(send, 500, self.error_page(500, "internal error; see the log"), "html")
        finally:
            seconds = time.perf_counter() - started
            self.metrics.requests.labels(page, str(status)).inc()
            self.metrics.latency.labels(page).observe(seconds)

    async def route(self, scope: Scope, receive: Any, send: Any, path: str, method: str) -> int:
        if path == "/metrics":
            snap = self.reader.current
            if snap is not None:
                self.metrics.snapshot_age.set((self.reader.now() - snap.taken_at).total_seconds())
            await metrics.send_metrics(send)
            return 200
        if path == "/static/ui.css":
            return await self.send(send, 200, STYLESHEET.encode(), "css", cache=True)
        if path in ("/favicon.svg", "/favicon.ico"):
            return await self.send(send, 200, FAVICON, "svg", cache=True)
        headers = dict(scope.get("headers") or [])
        if self.token is None:
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host and not is_loopback(host):
                raise HttpError(403, "this status page answers on its loopback address only")
        elif path == "/login":
            return await self.login(scope, receive, send, method)
        elif not self.authorized(headers):
            if path.startswith("/api/"):
                raise HttpError(401, "send the token as 'Authorization: Bearer <token>'")
            return await self.redirect(send, "/login")
        if path == "/login":
            return await self.redirect(send, "/")
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if path == "/api/status.json":
            doc = await asyncio.to_thread(self.status_document)
            return await self.send(send, 200, orjson.dumps(doc, option=orjson.OPT_INDENT_2), "json")
        body = await asyncio.to_thread(self.render, path, params)
        return await self.send(send, 200, body, "html")

    # -- pages ------------------------------------------------------------------------------
    def status_document(self) -> dict[str, Any]:
        return pages.status_document(self.reader, self.reader.snapshot())

    def render(self, path: str, params: dict[str, str]) -> bytes:
        snap = self.reader.snapshot()
        tz = self.tz
        try:
            if path == "/":
                title, here, body = "Overview", "/", pages.overview(snap, tz)
            elif path == "/runs":
                title, here = "Runs", "/runs"
                body = pages.runs_page(snap, params, tz, self.reader.project)
            elif path.startswith("/runs/") and len(path) > 6:
                run_id = path[6:]
                title, here = f"Run {run_id}", "/runs"
                body = pages.run_page(self.reader, snap, run_id, tz)
            elif path == "/feeds":
                title, here, body = "Feeds", "/feeds", pages.feeds_page(snap)
            elif path == "/charts":
                title, here = "Charts", "/charts"
                body = pages.charts_page(snap, params, tz, self.reader.now())
            else:
                raise HttpError(404, f"no page {path}")
        except pages.NotFound as exc:
            raise HttpError(404, str(exc)) from None
        except pages.BadRequest as exc:
            raise HttpError(400, str(exc)) from None
        text, stale = self.freshness_text()
        return layout(title, here, body, text, stale)

    def freshness_text(self) -> tuple[str, bool]:
        fresh = self.reader.freshness()
        if fresh.taken_at is None:
            return f"no data yet: {fresh.error}", True
        age = f"data from {fresh.age_s:.0f} s ago"
        if fresh.error:
            return f"{age} ({fresh.error})", True
        return age, fresh.stale

    def error_page(self, status: int, message: str) -> bytes:
        body = f"<h1>{status}</h1><p>{esc(message)}</p><p><a href='/'>overview</a></p>"
        return layout(f"Error {status}", "", body, "", False)

    # -- auth -------------------------------------------------------------------------------
    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        assert self.token is not None and self.session is not None
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.startswith("Bearer ") and hmac.compare_digest(
            auth[7:].strip().encode(), self.token.encode()
        ):
            return True
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.session.encode()):
                return True
        return False

    async def login(self, scope: Scope, receive: Any, send: Any, method: str) -> int:
        error = ""
        if method == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > LOGIN_BODY:
                    raise HttpError(413, "the login form is larger than expected")
                if not message.get("more_body"):
                    break
            given = dict(parse_qsl(body.decode("utf-8", "replace"))).get("token", "")
            assert self.token is not None and self.session is not None
            if hmac.compare_digest(given.encode(), self.token.encode()):
                cookie = f"{COOKIE}={self.session}; Path=/; HttpOnly; SameSite=Strict"
                return await self.redirect(send, "/", [(b"set-cookie", cookie.encode())])
            error = "<p class=err>That token is not right.</p>"
        form = (
            '<div class="login"><h1>courier status</h1>'
            "<p>This status page needs the [ui] token (or the [ingest] admin_token).</p>"
            f'{error}<form method="post" action="/login"><input type="password" name="token" '
            'autocomplete="current-password" placeholder="token" required autofocus>'
            '<button type="submit">Sign in</button></form></div>'
        )
        status = 401 if error else 200
        return await self.send(send, status, layout("Sign in", "", form, "", False), "html")

    # -- responses --------------------------------------------------------------------------
    async def send(
        self,
        send: Any,
        status: int,
        body: bytes,
        kind: str,
        cache: bool = False,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        types = {
            "html": b"text/html; charset=utf-8",
            "json": b"application/json",
            "css": b"text/css; charset=utf-8",
            "svg": b"image/svg+xml",
        }
        headers = [(b"content-type", types[kind]), (b"content-length", str(len(body)).encode())]
        headers += [
            (k, b"max-age=3600") if cache and k == b"cache-control" else (k, v)
            for k, v in SECURITY_HEADERS
        ]
        headers += extra or []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def redirect(
        self, send: Any, to: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> int:
        return await self.send(
            send, 303, b"", "html", extra=[(b"location", to.encode()), *(extra or [])]
        )


def route_name(path: str) -> str:
    """A low-cardinality label for metrics."""
    if path == "/":
        return "overview"
    if path.startswith("/api/"):
        return "api"
    first = path.strip("/").split("/", 1)[0]
    if path.startswith("/runs/"):
        return "run"
    return first if first in ("runs", "feeds", "charts", "metrics", "login", "static") else "other"


def ui_token(project: Any, host: str) -> str | None:
    """The token a status page on `host` requires: none on loopback; elsewhere [ui] token,
    else [ingest] admin_token, else a ConfigError (it never serves unprotected off loopback)."""
    from courier.errors import ConfigError

    if is_loopback(host):
        return None
    token = project.settings.ui.token or project.settings.ingest.admin_token
    if not token:
        raise ConfigError(
            f"--host {host} makes the status page reachable from other machines; set "
            '[ui] token = "${COURIER_UI_TOKEN}" (or [ingest] admin_token) in '
            "config/courier.toml, or keep the default --host 127.0.0.1",
            project.root / "config" / "courier.toml",
            "ui.token",
        )
    return str(token)


def create_app(context: Any, host: str, in_scheduler: bool = False) -> StatusApp:
    project = context.project
    token = ui_token(project, host)
    reader = StatusReader(
        context, in_scheduler=in_scheduler, refresh_seconds=project.settings.ui.refresh_seconds
    )
    return StatusApp(reader, token)


class BackgroundServer:
    """The status page served by uvicorn on a thread of another command's process
    (`courier scheduler --ui-port`)."""

    def __init__(self, app: StatusApp, host: str, port: int):
        import uvicorn

        config = uvicorn.Config(
            app, host=host, port=port, lifespan="on", log_level="warning", access_log=False,
            server_header=False, loop="asyncio",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="courier-ui-http", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        from courier.errors import ConfigError

        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise ConfigError("the status page could not start (is the port in use?)")
            if time.monotonic() > deadline:
                raise ConfigError("the status page did not start within 30 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
