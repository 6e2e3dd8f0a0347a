"""The ingest API as a plain ASGI app (no framework: one route table, bytes in, bytes out).

    POST /stream/v0/data/{stream_id}            a payload -> 202 once fsynced in the log
    GET  /stream/v0/ws/{stream_id}              websocket: a payload per message, acks once
                                                fsynced (courier/ingest/websocket.py)
    POST /api/v0/admin/api-keys/{key}/tokens    a refreshed token for stream `key` (admin)
    GET  /healthz                               200 while accepting, 503 with the problems
                                                (detail only with the admin token)

Checks run cheapest first and the body is read last: 404 unknown stream, 401 token/tenant,
400 content type, 429 rate limit (only authenticated requests spend it), 413 from
Content-Length (before reading a byte of the body), then the body (413 again as soon as it
grows past the limit, 408 when it takes longer than body_timeout), 400 malformed payload,
503 when the log is full, 202 after the fsync.
Refusals that leave a body unread close the connection, so nothing more is read.

`courier serve` runs it under uvicorn (httptools + uvloop) through `create_app()`, the
factory every worker process calls: each builds its own IngestService (own writer id and
log folder), so several processes serve the same streams without sharing a file.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from courier.errors import ConfigError, CourierError, IngestError
from courier.ingest import apikeys, http, webhooks, websocket
from courier.ingest.service import IngestService, StreamRuntime
from courier.ingest.tokens import create_token
from courier.ingest.wal import Pending
from courier.project import Project
from courier.validate import load_project

log = logging.getLogger("courier.ingest")

DATA_PREFIX = "/stream/v0/data/"
ADMIN_PREFIX = "/api/v0/admin/api-keys/"
ADMIN_SUFFIX = "/tokens"
MAX_TOKEN_DAYS = 366
ADMIN_BODY = 4096
SWITCH_INTERVAL = 0.0005
BEARER = b"Bearer "

JSON_TYPES = (b"application/json",)
XML_TYPES = (b"application/xml", b"text/xml")

# 202 (as Amperity's streaming ingest answers) with a small JSON body naming the payload:
# {"status": "accepted", "id": "<writer>-<n>"}. The writer is the one in the landed part
# names (part-{writer}-{seq}), so a producer that logs the id can tell support which server
# process took it.
ACCEPTED_HEADERS = [(b"content-type", b"application/json")]


async def send_accepted(send: Any, accepted_id: str) -> None:
    body = b'{"status":"accepted","id":"' + accepted_id.encode() + b'"}'
    headers = [*ACCEPTED_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


Scope = dict[str, Any]


def _media_type(value: bytes) -> tuple[bytes, bytes | None]:
    """b'application/json; charset=UTF-8' -> (b'application/json', b'utf-8')."""
    kind, _, params = value.partition(b";")
    charset = None
    for param in params.split(b";"):
        name, _, v = param.partition(b"=")
        if name.strip().lower() == b"charset":
            charset = v.strip().strip(b'"').lower()
    return kind.strip().lower(), charset


def _is_json(kind: bytes) -> bool:
    return kind in JSON_TYPES or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def _is_xml(kind: bytes) -> bool:
    return kind in XML_TYPES or (kind.startswith(b"application/") and kind.endswith(b"+xml"))


async def respond(
    send: Any,
    status: int,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> None:
    body = orjson.dumps(payload)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    for name, value in (headers or {}).items():
        raw.append((name.lower().encode(), value.encode()))
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Any, error: IngestError, close: bool = False) -> None:
    await respond(send, error.status, {"error": str(error)}, error.headers, close)


def internal_error(exc: Exception, what: str) -> IngestError:
    """A 500 for a fault of ours, logged (a CourierError in its one line, anything else with
    its traceback); the client is told only to see the server log: no paths, no keys."""
    if isinstance(exc, CourierError):  # e.g. a key store broken while serving
        log.error("ingest: %s failed: %s", what, exc)
    else:
        log.error("ingest: %s failed", what, exc_info=exc)
    return IngestError(500, "internal error; see the server log")


class BodyTooLarge(Exception):
    pass


class BodyDeadlines:
    """Body read timeouts for many requests at once: one watchdog task instead of a timer
    per request. A request reading its body past its deadline is cancelled into TimeoutError.
    """

    def __init__(self) -> None:
        self.deadlines: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.task: asyncio.Task[None] | None = None

    def start(self, tick: float) -> None:
        self.task = asyncio.get_running_loop().create_task(self._watch(tick))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _watch(self, tick: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for task, deadline in list(self.deadlines.items()):
                if deadline <= now and task not in self.expired:
                    self.expired.add(task)
                    task.cancel()

    async def read(self, receive: Any, limit: int, timeout: float) -> bytes | None:
        """The whole body, or None when the client went away; BodyTooLarge / TimeoutError."""
        task = asyncio.current_task()
        assert task is not None
        self.deadlines[task] = task.get_loop().time() + timeout
        try:
            return await _receive_body(receive, limit)
        except asyncio.CancelledError:
            if task not in self.expired:
                raise
            self.expired.discard(task)
            task.uncancel()
            raise TimeoutError from None
        finally:
            self.deadlines.pop(task, None)


async def _receive_body(receive: Any, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


def _resolve(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in waiters:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


class IngestApp:
    """ASGI callable. Builds its service at lifespan startup (or on the first request)."""

    def __init__(self, project: Project, workers: int = 1):
        self.project = project
        self.workers = workers
        self.settings = project.settings.ingest
        self.tenant_header = self.settings.tenant_header.lower().encode()
        self.max_body = self.settings.max_body_bytes
        self.body_timeout = self.settings.body_timeout
        self.service: IngestService | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped = False
        self.bodies = BodyDeadlines()
        self.outbox: list[Pending] = []  # payloads of this loop iteration, for the log
        self.access: apikeys.Access | None = None  # API keys (courier/ingest/apikeys.py)
        self.webhooks: dict[str, webhooks.WebhookVerifier] = {}  # signed webhooks, per stream
        self._accepted = itertools.count(1)

    def accepted_id(self) -> str:
        """The id of the next 202: this writer and a per-process count."""
        writer = self.service.writer if self.service is not None else "courier"
        return f"{writer}-{next(self._accepted)}"

    # -- lifecycle --------------------------------------------------------------------------
    def startup(self) -> None:
        # The committer thread needs the GIL right after each fsync; the default 5 ms switch
        # interval would add up to 5 ms to every group commit while the loop is busy.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.loop = asyncio.get_running_loop()
        self.webhooks = webhooks.verifiers(self.project)
        service = IngestService(self.project, workers=self.workers)
        loop = self.loop

        def on_commit(waiters: list[Any], error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_resolve, waiters, error)

        service.on_commit = on_commit
        service.start()
        self.access = apikeys.Access(
            apikeys.KeyStore.for_project(self.project), service.verifier.keys, self.project.streams
        )
        self.service = service
        self.bodies.start(min(1.0, self.body_timeout / 4))
        log.info(
            "ingest writer %s: %d stream(s), log %s",
            service.writer,
            len(service.streams),
            service.root,
        )

    async def shutdown(self) -> None:
        service, self.service = self.service, None
        self.stopped = True
        self.bodies.stop()
        if self.access is not None:
            self.access.close()
        if service is not None:
            await asyncio.to_thread(service.stop, self.settings.shutdown_timeout)

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except CourierError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    # -- routing ----------------------------------------------------------------------------
    async def http(self, scope: Scope, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if self.service is None:
            if self.stopped:
                await refuse(send, IngestError(503, "shutting down", {"retry-after": "1"}), True)
                return
            self.startup()  # a server without lifespan support
        try:
            if path.startswith(DATA_PREFIX):
                if method != "POST":
                    raise IngestError(405, "use POST to send a payload", {"allow": "POST"})
                await self.ingest(path[len(DATA_PREFIX) :], scope, receive, send)
            elif path == "/healthz":
                if method not in ("GET", "HEAD"):
                    raise IngestError(405, "use GET", {"allow": "GET, HEAD"})
                detail = self.is_admin(scope)  # paths and pids only for the admin token
                health = self.service.health(detail)  # type: ignore[union-attr]
                await respond(send, 200 if health["status"] == "ok" else 503, health)
            elif path.startswith(webhooks.PREFIX):
                if method != "POST":
                    raise IngestError(405, "use POST to deliver a webhook", {"allow": "POST"})
                await webhooks.handle(self, path[len(webhooks.PREFIX) :], scope, receive, send)
            elif path == "/api/token":
                if method != "GET":
                    raise IngestError(405, "use GET with Basic auth", {"allow": "GET"})
                await respond(send, 200, await self.access.exchange(scope))  # type: ignore[union-attr]
            elif path.startswith(ADMIN_PREFIX) and path.endswith(ADMIN_SUFFIX):
                if method != "POST":
                    raise IngestError(405, "use POST to refresh a token", {"allow": "POST"})
                key = path[len(ADMIN_PREFIX) : -len(ADMIN_SUFFIX)]
                await self.refresh_token(key, scope, receive, send)
            else:
                raise IngestError(404, f"no such endpoint: {method} {path}")
        except IngestError as exc:
            await refuse(send, exc, close=exc.status in (408, 413))
        except Exception as exc:
            await refuse(send, internal_error(exc, f"{method} {path}"), close=True)

    async def websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        if not path.startswith(websocket.PREFIX) or self.service is None:
            await send({"type": "websocket.close", "code": 1008 if self.service else 1013})
            return  # refused at the upgrade: 403
        await websocket.handle(self, path[len(websocket.PREFIX) :], scope, receive, send)

    async def read_body(
        self, stream: StreamRuntime, length: bytes | None, receive: Any
    ) -> bytes | None:
        """The request body within the size and time limits (413, 408); None when the client
        left. The caller takes the rate limit (429) once the sender is authenticated: a
        request that fails its credentials never spends the stream's budget."""
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise IngestError(400, "Content-Length is not a number") from None
            if declared > self.max_body:
                raise IngestError(
                    413, f"the body is {declared} bytes; the limit is {self.max_body} bytes"
                )
        try:
            return await self.bodies.read(receive, self.max_body, self.body_timeout)
        except BodyTooLarge:
            raise IngestError(
                413, f"the body is larger than the limit of {self.max_body} bytes"
            ) from None
        except TimeoutError:
            raise IngestError(
                408, f"the body did not arrive within {self.body_timeout:g} seconds"
            ) from None

    # -- POST /stream/v0/data/{stream_id} ---------------------------------------------------
    async def ingest(self, stream_id: str, scope: Scope, receive: Any, send: Any) -> None:
        service: IngestService = self.service  # type: ignore[assignment]
        stream = service.streams.get(stream_id)
        if stream is None:
            raise IngestError(404, f"unknown stream {stream_id!r}")
        authorization = tenant = content_type = length = None
        tenant_header = self.tenant_header
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == tenant_header:
                tenant = value
        client_id, source = await self.authenticate(stream, authorization, tenant, scope)
        self.check_content_type(stream, content_type)
        stream.admit()
        body = await self.read_body(stream, length, receive)
        if body is None:
            return  # the client left; nothing to answer
        records = service.records(stream, body)
        if stream.config.envelope:
            records = apikeys.envelope(records, client_id, source)
        future: asyncio.Future[None] = self.loop.create_future()  # type: ignore[union-attr]
        self.enqueue(service.prepare(stream, records, future))
        await future
        await send_accepted(send, self.accepted_id())

    def enqueue(self, pending: Pending) -> None:
        """To the log with everything else of this loop iteration (one lock, one wake-up)."""
        outbox = self.outbox
        outbox.append(pending)
        if len(outbox) == 1:
            self.loop.call_soon(self.hand_over)  # type: ignore[union-attr]

    def hand_over(self) -> None:
        items, self.outbox = self.outbox, []
        try:
            self.service.wal.submit_many(items)  # type: ignore[union-attr]
        except IngestError as exc:
            _resolve([i.waiter for i in items], exc)
        except Exception as exc:  # never leave a request waiting
            log.exception("ingest: handing payloads to the log failed")
            _resolve([i.waiter for i in items], IngestError(500, f"internal error: {exc}"))

    async def authenticate(
        self,
        stream: StreamRuntime,
        authorization: bytes | None,
        tenant: bytes | None,
        scope: Scope | None = None,
    ) -> tuple[str | None, str]:
        """(client id, source); stream tokens need the tenant header, API keys do not."""
        access = self.access
        if scope is not None and access is not None and tenant is None and access.active:
            return await access.authenticate(stream.id, authorization, scope)
        try:
            self._authenticate(stream, authorization, tenant)
        except IngestError:
            if scope is None or access is None or not access.active:
                raise
            try:
                return await access.authenticate(stream.id, authorization, scope)
            except IngestError as second:
                if second.status in (429, 503):  # throttled or busy: say so, not 401
                    raise second from None
            raise
        if scope is None or not stream.config.envelope:
            return None, "api"
        client = apikeys.query_value(scope, "client_id")
        if client is None:
            header = stream.config.api_keys.client_header.lower().encode()
            client = next((v.decode("latin-1") for k, v in scope["headers"] if k == header), None)
        return client, "api"

    def _authenticate(
        self, stream: StreamRuntime, authorization: bytes | None, tenant: bytes | None
    ) -> None:
        if authorization is None or (
            not authorization.startswith(BEARER) and authorization[:7].lower() != b"bearer "
        ):
            raise IngestError(
                401,
                "missing bearer token: send Authorization: Bearer <token>",
                {"www-authenticate": 'Bearer realm="courier"'},
            )
        if tenant != stream.tenant_bytes:
            which = "missing" if tenant is None else "wrong"
            raise IngestError(
                401,
                f"{which} {self.settings.tenant_header} header: send the stream's tenant id",
                {"www-authenticate": 'Bearer realm="courier"'},
            )
        self.service.verifier.verify(stream.id, authorization[7:])  # type: ignore[union-attr]

    @staticmethod
    def check_content_type(stream: StreamRuntime, content_type: bytes | None) -> None:
        if content_type == b"application/json" and stream.payload == "json":
            return  # the common case
        expected = "application/json" if stream.payload == "json" else "application/xml"
        if content_type is None:
            raise IngestError(400, f"missing Content-Type: stream {stream.id!r} takes {expected}")
        kind, charset = _media_type(content_type)
        if stream.payload == "json":
            if not _is_json(kind):
                raise IngestError(
                    400,
                    f"wrong payload type {kind.decode('latin-1')!r}: stream {stream.id!r} "
                    f"takes {expected}",
                )
            if charset not in (None, b"utf-8", b"utf8"):
                raise IngestError(400, "JSON payloads must be UTF-8 (charset=utf-8)")
        elif not _is_xml(kind):
            raise IngestError(
                400,
                f"wrong payload type {kind.decode('latin-1')!r}: stream {stream.id!r} "
                f"takes {expected}",
            )

    def is_admin(self, scope: Scope) -> bool:
        """The request carries the admin token (Authorization: Bearer <[ingest] admin_token>)."""
        admin = self.settings.admin_token
        if not admin:
            return False
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
        presented = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else b""
        return bool(presented) and hmac.compare_digest(presented, admin.encode())

    # -- POST /api/v0/admin/api-keys/{key}/tokens -------------------------------------------
    async def refresh_token(self, key: str, scope: Scope, receive: Any, send: Any) -> None:
        service: IngestService = self.service  # type: ignore[assignment]
        if not self.settings.admin_token:
            raise IngestError(
                401, "the admin API is disabled: set [ingest] admin_token in config/courier.toml"
            )
        if not self.is_admin(scope):
            raise IngestError(
                401,
                "admin token missing or wrong: send Authorization: Bearer <admin token>",
                {"www-authenticate": 'Bearer realm="courier-admin"'},
            )
        stream = service.streams.get(key)
        if stream is None:
            raise IngestError(404, f"unknown api key (stream) {key!r}")
        try:
            body = await self.bodies.read(receive, ADMIN_BODY, self.body_timeout)
        except BodyTooLarge:
            raise IngestError(413, f"the body is larger than {ADMIN_BODY} bytes") from None
        except TimeoutError:
            raise IngestError(408, "the body did not arrive in time") from None
        if body is None:
            return
        now = datetime.now(UTC)
        expires_at = parse_expiry(body, now)
        keys = service.verifier.keys[key]
        try:
            token = create_token(keys, expires_at, now)
        except ConfigError as exc:
            raise IngestError(409, str(exc)) from None
        await respond(
            send,
            201,
            {
                "token": token,
                "stream": key,
                "tenant": stream.tenant,
                "expires-at": expires_at.isoformat().replace("+00:00", "Z"),
            },
        )


def parse_expiry(body: bytes, now: datetime) -> datetime:
    """{"expires-at": "2026-12-31T00:00:00Z"} -> that time (UTC); 400 when unusable."""
    try:
        doc = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IngestError(400, 'expected a JSON object like {"expires-at": "2026-12-31T00:00:00Z"}')
    raw = doc.get("expires-at")
    if raw is None:
        raise IngestError(400, 'missing "expires-at": an ISO 8601 time like 2026-12-31T00:00:00Z')
    try:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            expires = datetime.fromtimestamp(raw, tz=UTC)
        else:
            expires = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise IngestError(
            400, f'"expires-at" {raw!r} is not an ISO 8601 time like 2026-12-31T00:00:00Z'
        ) from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if expires <= now:
        raise IngestError(400, f'"expires-at" {raw!r} is not in the future')
    if expires > now + timedelta(days=MAX_TOKEN_DAYS):
        raise IngestError(400, f'"expires-at" is more than {MAX_TOKEN_DAYS} days away')
    return expires.astimezone(UTC)


def create_app() -> IngestApp:
    """The uvicorn factory: the project from COURIER_PROJECT (set by `courier serve`)."""
    project = load_project(os.environ.get("COURIER_PROJECT"))
    workers = int(os.environ.get("COURIER_INGEST_WORKERS", "1"))
    settings = project.settings.ingest
    http.LIMITS = http.Limits(  # for this process's connections (courier/ingest/http.py)
        header_timeout=settings.header_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        max_connections=http.connection_cap(settings.max_connections),
        max_connections_per_client=settings.max_connections_per_client,
    )
    return IngestApp(project, workers=workers)
