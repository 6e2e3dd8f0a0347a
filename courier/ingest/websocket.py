"""Websocket ingest: `GET /stream/v0/ws/{stream_id}` upgraded, one payload per message.

Protocol (a client keeps one connection open and sends without waiting):

- Auth: the upgrade request's headers, as for POST (Bearer token + tenant header, or API-key
  headers), or else the first message: `{"token": "<JWT>", "tenant": "acme"}` (API keys:
  `{"app_id": ..., "app_secret": ...}`, header names as the stream configures them).
  The server answers `{"type": "ready", "stream": ID, "max_message_bytes": N}`.
- Each text (or binary) message is one payload of the stream's type: a JSON object (or an
  array with `batch_arrays`: each element a record, all or none), or an XML document.
  With the subprotocol `courier.v0`, a message is framed as `{"id": ..., "payload": ...}`
  (an XML payload as a JSON string) and the acknowledgement carries the client's id;
  without it, a message's id is its 1-based number on the connection.
- `{"ack": ID}` is sent only once the payload is fsynced in the write-ahead log, in the
  order the messages came. `{"nack": ID, "status": 429|503, "error": ..., "retry_after": S}`
  means not landed, send it again later; the connection stays open.
- The credentials are checked again every REVALIDATE seconds while the connection is open:
  a stream token revoked (`courier token revoke`) or expired, or an API key revoked or
  removed, closes it (1008, the 401's reason) after the acks of the messages before.
- Fatal problems are sent as `{"error": ..., "status": N, "id": ID}` after the acks of all
  earlier messages, then the connection closes: 1008 auth (401) or unknown stream (404),
  1007 invalid payload (400), 1009 message over the body limit (413), 1011 internal error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from courier.errors import IngestError
from courier.ingest import apikeys, payloads

if TYPE_CHECKING:
    from courier.ingest.app import IngestApp
    from courier.ingest.service import StreamRuntime

log = logging.getLogger("courier.ingest")

PREFIX = "/stream/v0/ws/"
SUBPROTOCOL = "courier.v0"
MAX_IN_FLIGHT = 4096  # unacknowledged messages per connection before reading pauses
AUTH_TIMEOUT = 10.0  # seconds for the first message when the upgrade carried no credentials
REVALIDATE = 1.0  # seconds between checks that an open connection's credentials still hold

CLOSE_CODES = {400: 1007, 401: 1008, 403: 1008, 404: 1008, 413: 1009}

Scope = dict[str, Any]
END = (None, None, None)  # the reader is done: the writer closes normally


class Fatal(Exception):
    """Ends the connection once the acks before it are sent."""

    def __init__(self, error: IngestError, message_id: Any = None):
        super().__init__(str(error))
        self.error = error
        self.message_id = message_id


def _message_bytes(message: dict[str, Any]) -> bytes:
    text = message.get("text")
    if text is not None:
        return text.encode()  # type: ignore[no-any-return]
    return message.get("bytes") or b""


class Connection:
    """One websocket: a reader that hands payloads to the log, a writer that sends acks."""

    def __init__(self, app: IngestApp, scope: Scope, receive: Any, send: Any):
        self.app = app
        self.scope = scope
        self.receive = receive
        self.send = send
        self.framed = SUBPROTOCOL in scope.get("subprotocols", [])
        # (message id, its commit future, or what went wrong instead): in message order
        self.acks: asyncio.Queue[tuple[Any, asyncio.Future[None] | None, Problem]] = asyncio.Queue(
            MAX_IN_FLIGHT
        )
        self.closed = False
        self.refused: IngestError | None = None  # the credentials stopped holding
        self.stream_id = ""
        # the bytes of each message queued with a commit future, in the same order (metrics)
        self.sizes: collections.deque[int] = collections.deque()
        self.metrics = getattr(app, "metrics", None)  # set by courier.metrics' wrapper

    async def _send_json(self, doc: dict[str, Any]) -> None:
        await self.send({"type": "websocket.send", "text": orjson.dumps(doc).decode()})

    async def _close(self, error: IngestError, message_id: Any = None) -> None:
        doc: dict[str, Any] = {"error": str(error), "status": error.status}
        if message_id is not None:
            doc["id"] = message_id
        await self._send_json(doc)
        await self.send({"type": "websocket.close", "code": CLOSE_CODES.get(error.status, 1011)})
        self.closed = True

    # -- the connection -------------------------------------------------------------------
    async def serve(self, stream_id: str) -> None:
        if (await self.receive())["type"] != "websocket.connect":
            return
        await self.send(
            {"type": "websocket.accept", "subprotocol": SUBPROTOCOL if self.framed else None}
        )
        self.stream_id = stream_id
        writer = asyncio.get_running_loop().create_task(self._write_acks())
        try:
            stream = self.app.service.streams.get(stream_id)  # type: ignore[union-attr]
            if stream is None:
                raise Fatal(IngestError(404, f"unknown stream {stream_id!r}"))
            client_id, source, recheck = await self._authenticate(stream)
            await self._send_json(
                {"type": "ready", "stream": stream.id, "max_message_bytes": self.app.max_body}
            )
            watcher = asyncio.get_running_loop().create_task(self._watch(recheck))
            try:
                await self._read_payloads(stream, client_id, source)
            finally:
                watcher.cancel()
        except Fatal as fatal:
            await self.acks.put((fatal.message_id, None, fatal))
        except Disconnected:
            writer.cancel()  # the payloads handed over still land; nobody is left to ack
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            return
        except Exception as exc:
            from courier.ingest.app import internal_error  # app imports this module

            problem = internal_error(exc, f"websocket on stream {stream_id!r}")
            await self.acks.put((None, None, Fatal(problem)))
        except BaseException:  # the server is stopping
            writer.cancel()
            raise
        await self.acks.put(END)
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def _next(self) -> bytes:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise Disconnected
        return _message_bytes(message)

    async def _watch(self, recheck: Any) -> None:
        """Checks the credentials again every REVALIDATE s (a cache hit and an os.stat of the
        revoked-token list and key store); once they fail, no further message is taken and
        the connection closes with the reason after the acks before it."""
        while True:
            await asyncio.sleep(REVALIDATE)
            try:
                await recheck()
            except IngestError as exc:
                if exc.status in (429, 503):
                    continue  # busy or throttled: not a verdict on the credentials
                self.refused = exc
                await self.acks.put((None, None, Fatal(exc)))
                return
            except Exception:  # e.g. a key store being rewritten by hand: try again
                log.exception("websocket: the credentials could not be checked again")

    async def _authenticate(self, stream: StreamRuntime) -> tuple[str | None, str, Any]:
        """(client id, source, a coroutine function that checks the credentials again)."""
        app = self.app
        headers = self.scope["headers"]
        authorization = tenant = None
        access = app.access
        key_headers = access.headers.get(stream.id, ()) if access is not None else ()
        has_key = False
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == app.tenant_header:
                tenant = value
            elif name in key_headers[:1]:
                has_key = True
        if authorization is None and not has_key:
            try:
                first = await asyncio.wait_for(self._next(), AUTH_TIMEOUT)
            except TimeoutError:
                raise Fatal(
                    IngestError(401, "no credentials within 10 s: send the token first")
                ) from None
            headers, authorization, tenant = self._credentials(stream, first)
        scope = {**self.scope, "headers": headers}

        async def recheck() -> tuple[str | None, str]:
            return await app.authenticate(stream, authorization, tenant, scope)

        try:
            client_id, source = await recheck()
        except IngestError as exc:
            raise Fatal(exc) from None
        return client_id, source, recheck

    def _credentials(
        self, stream: StreamRuntime, first: bytes
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None, bytes | None]:
        """A first message {"token", "tenant"} or {"app_id", "app_secret"} as headers."""
        try:
            doc = orjson.loads(first)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise Fatal(
                IngestError(
                    401,
                    "missing credentials: send Authorization (and the tenant header) with the "
                    'upgrade, or first a message {"token": "<JWT>", "tenant": "<tenant>"}',
                )
            )
        headers = list(self.scope["headers"])
        authorization = tenant = None
        if isinstance(doc.get("token"), str):
            authorization = b"Bearer " + doc["token"].encode()
        if isinstance(doc.get("tenant"), str):
            tenant = doc["tenant"].encode()
            headers.append((self.app.tenant_header, tenant))
        access = self.app.access
        if access is not None:
            id_header, secret_header, client_header = access.headers[stream.id]
            for field, header in (
                ("app_id", id_header),
                ("app_secret", secret_header),
                ("client_id", client_header),
            ):
                if isinstance(doc.get(field), str):
                    headers.append((header, doc[field].encode()))
        return headers, authorization, tenant

    async def _read_payloads(
        self, stream: StreamRuntime, client_id: str | None, source: str
    ) -> None:
        app = self.app
        service = app.service
        assert service is not None
        loop = asyncio.get_running_loop()
        number = 0
        while not self.closed:
            raw = await self._next()
            if self.refused is not None:
                return  # the watcher has queued the close: nothing more is taken
            number += 1
            message_id: Any = number
            if len(raw) > app.max_body:
                raise Fatal(
                    IngestError(
                        413, f"the message is {len(raw)} bytes; the limit is {app.max_body} bytes"
                    ),
                    message_id,
                )
            try:
                if self.framed:
                    message_id, records = self._framed(stream, raw, number)
                else:
                    records = service.records(stream, raw)
            except IngestError as exc:
                raise Fatal(exc, message_id) from None
            try:
                stream.admit("send this message again after retry_after seconds")
            except IngestError as exc:
                await self.acks.put((message_id, None, exc))
                continue
            if stream.config.envelope:
                records = apikeys.envelope(records, client_id, source)
            future: asyncio.Future[None] = loop.create_future()
            try:
                pending = service.prepare(stream, records, future)
            except IngestError as exc:  # the log is full: 503, try again later
                await self.acks.put((message_id, None, exc))
                continue
            app.enqueue(pending)
            self.sizes.append(len(raw))
            await self.acks.put((message_id, future, None))

    def _framed(self, stream: StreamRuntime, raw: bytes, number: int) -> tuple[Any, list[bytes]]:
        frame = payloads.parse_json(raw)
        if not isinstance(frame, dict) or "payload" not in frame:
            raise IngestError(
                400,
                f'message {number}: with subprotocol {SUBPROTOCOL} send {{"id": ..., '
                '"payload": ...}',
            )
        message_id = frame.get("id", number)
        payload = frame["payload"]
        if stream.payload == "json":
            return message_id, payloads.value_records(payload, stream.config.batch_arrays)
        if not isinstance(payload, str):
            raise IngestError(400, f"message {message_id}: an XML payload must be a JSON string")
        return message_id, self.app.service.records(stream, payload.encode())  # type: ignore[union-attr]

    async def _write_acks(self) -> None:
        """Acks in message order, each once its payload is fsynced; a fatal error last.

        After closing, it keeps taking (and dropping) what the reader queues until the
        reader's END, so the reader never waits on a full queue.
        """
        while True:
            item = await self.acks.get()
            if item is END:
                if not self.closed:
                    await self.send({"type": "websocket.close", "code": 1000})
                return
            if self.closed:
                continue
            message_id, future, problem = item
            if isinstance(problem, Fatal):
                await self._close(problem.error, problem.message_id)
                continue
            nbytes = self.sizes.popleft() if future is not None else 0
            if future is not None:
                try:
                    await future
                except IngestError as exc:
                    problem = exc
                except Exception as exc:  # never leave a message unanswered
                    log.exception("websocket: message %r failed", message_id)
                    problem = IngestError(500, f"internal error: {exc}")
            if problem is None:
                if self.metrics is not None:  # counted as a POST body is: once accepted
                    self.metrics.accepted_bytes(self.stream_id, nbytes)
                await self._send_json({"ack": message_id})
            elif problem.status in (429, 503):
                nack: dict[str, Any] = {
                    "nack": message_id,
                    "status": problem.status,
                    "error": str(problem),
                }
                if "retry-after" in problem.headers:
                    nack["retry_after"] = int(problem.headers["retry-after"])
                await self._send_json(nack)
            else:
                await self._close(problem, message_id)


class Disconnected(Exception):
    """The client closed the connection."""


Problem = IngestError | Fatal | None  # a nack (429/503), a fatal error, or fine


async def handle(app: IngestApp, stream_id: str, scope: Scope, receive: Any, send: Any) -> None:
    try:
        await Connection(app, scope, receive, send).serve(stream_id)
    except OSError:
        pass  # the client went away mid-send
