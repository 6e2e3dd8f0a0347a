"""uvicorn's httptools protocol with the limits a public endpoint needs (`courier serve`).

uvicorn cuts a keep-alive connection that stays idle (`timeout_keep_alive`) but nothing else:
a connection that never sends a byte, or drips its headers, stays open forever, and httptools
takes headers of any size and number. This protocol adds, per connection:

    header_timeout    the request line and headers must arrive within this many seconds of
                      the connection opening (or of the first byte of a keep-alive request):
                      408 and close otherwise (slowloris, idle sockets)
    max_header_bytes  request line + headers larger than this: 431 and close
    max_headers       more header fields than this: 431 and close
    max_connections   open connections per process; one more is answered 503 + Retry-After
                      and closed at once (before any fd limit is reached, so /healthz stays
                      reachable as soon as the idle ones are cut)
    max_connections_per_client
                      open connections (websockets included) from one client address per
                      process; one more is answered 503 and closed, so one address cannot
                      take every slot. The address is the TCP peer's: behind a proxy that
                      does not keep it, raise this to max_connections.

Bodies have their own deadline in the app (`body_timeout`, 408).
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FD_RESERVE = 64  # descriptors kept for the log, storage and the listening socket


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    max_header_bytes: int = 16 << 10
    max_headers: int = 100
    max_connections: int = 1000
    max_connections_per_client: int = 100


LIMITS = Limits()  # set by create_app() in each worker process, before any connection


def connection_cap(configured: int) -> int:
    """The connection limit, below the process's file limit (raised to its hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - FD_RESERVE))


def _response(status: int, reason: str, message: str, extra: bytes = b"") -> bytes:
    body = message.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


class HeaderLimit(Exception):
    pass


class GuardedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol + header deadline, header size/count limits, connection limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = LIMITS
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = False
        self._raw_header_bytes = 0

    # -- the connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                _response(
                    503,
                    "Service Unavailable",
                    "too many open connections: retry after the time in Retry-After",
                    b"retry-after: 1\r\n",
                )
            )
            return
        if self._from_this_client() > self.limits.max_connections_per_client:
            self._refuse(
                _response(
                    503,
                    "Service Unavailable",
                    f"too many open connections from {self.client[0] if self.client else '?'}: "
                    "close idle ones, or "
                    "retry after the time in Retry-After",
                    b"retry-after: 1\r\n",
                )
            )
            return
        self._in_headers = True
        self._arm()

    def _from_this_client(self) -> int:
        """Open connections from this one's address, this one included (websockets are in
        the same set: uvicorn's websocket protocols add themselves to it)."""
        if not self.client:
            return 0
        host = self.client[0]
        n = 0
        for conn in self.connections:
            client = getattr(conn, "client", None)
            if client and client[0] == host:
                n += 1
        return n

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the limits (a callback's exception reaches us as the __context__
        of httptools' HttpParserCallbackError)."""
        self._unset_keepalive_if_required()
        if not self._in_headers and (self.cycle is None or self.cycle.response_complete):
            self._in_headers = True  # the first bytes of a (keep-alive) request
            self._raw_header_bytes = 0
            if self._header_timer is None:
                self._arm()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            limit = exc.__context__
            if isinstance(limit, HeaderLimit):
                self._refuse(_response(431, "Request Header Fields Too Large", str(limit)))
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_headers:  # one header still arriving: httptools buffers it whole
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > self.limits.max_header_bytes:
                self._refuse(
                    _response(
                        431,
                        "Request Header Fields Too Large",
                        f"the request line and headers are over "
                        f"{self.limits.max_header_bytes} bytes",
                    )
                )

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if not self._in_headers:
            return  # a request is being served (its body has the app's deadline)
        self._refuse(
            _response(
                408,
                "Request Timeout",
                f"the request headers did not arrive within {self.limits.header_timeout:g} s",
            )
        )

    def _refuse(self, response: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()
        self.connections.discard(self)

    # -- parser callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._header_bytes = 0
        self._header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise HeaderLimit(f"more than {self.limits.max_headers} header fields")
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            raise HeaderLimit(
                f"the request line and headers are over {self.limits.max_header_bytes} bytes"
            )

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_headers = False
        super().on_headers_complete()
