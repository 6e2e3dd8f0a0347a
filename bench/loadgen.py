"""A load generator for the ingest API: many keep-alive connections, exact accounting.

    python -m bench.loadgen --url http://127.0.0.1:8080/stream/v0/data/web-events \\
        --token TOKEN --connections 128 --duration 15 --size 1024 --acked acked.txt
    python -m bench.loadgen --url ws://127.0.0.1:8080/stream/v0/ws/web-events \\
        --token TOKEN --connections 16 --window 256 ...

With a ws:// URL each connection is a websocket that keeps up to --window messages in flight
(the protocol acks them in order, once fsynced); latency is send to ack.

Every payload is a JSON object with a unique "id" ({prefix}-{connection}-{sequence}) padded
to --size bytes. Each connection sends one request at a time and, when time is up, finishes
the request in flight, so the count of 202s is exact. With --acked, the ids that got a 202 are
written one per line (the crash tests compare them with what landed). Prints one JSON summary:
requests, status counts, errors, payloads/s, latency p50/p90/p99/max in milliseconds.

Raw asyncio protocols on uvloop (when installed) keep the client cheap, so on a small machine
most of the CPU stays with the server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Result:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    sent: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; `request()` sends and awaits one response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._check()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def _check(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        close = b"\r\nconnection: close" in head
        del self.buffer[:total]
        self.waiter.set_result((status, close))

    async def request(self, data: bytes) -> tuple[int, bool]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


def build_request(
    path: str, host: str, token: str, tenant: str, content_type: str, body: bytes
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"X-Amperity-Tenant: {tenant}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def payload_id(prefix: str, connection: int, seq: int) -> str:
    """The unique id of a payload; a fixed width for a connection (one template serves all)."""
    return f"{prefix}-{connection:04d}-{seq:09d}"


def payload(ident: str, size: int) -> bytes:
    base = {"id": ident, "kind": "bench", "at": "2026-11-22T07:30:00Z", "pad": ""}
    filler = max(0, size - len(json.dumps(base, separators=(",", ":"))))
    base["pad"] = "x" * filler
    return json.dumps(base, separators=(",", ":")).encode()


async def _worker(
    n: int, args: argparse.Namespace, url: Any, deadline: float, result: Result
) -> None:
    loop = asyncio.get_running_loop()
    conn: _Connection | None = None
    seq = 0
    host = url.hostname or "127.0.0.1"
    port = url.port or 80
    # ids have a fixed width, so one template serves every request of this connection
    width = len(payload_id(args.prefix, n, 0))
    before, after = build_request(
        url.path,
        f"{host}:{port}",
        args.token,
        args.tenant,
        args.content_type,
        payload("#" * width, args.size),
    ).split(b"#" * width)
    while time.monotonic() < deadline and (args.requests == 0 or result.sent < args.requests):
        if conn is None or conn.closed:
            try:
                _, conn = await loop.create_connection(_Connection, host, port)
            except OSError:
                result.error("connect")
                conn = None
                if args.stop_on_error:
                    return
                await asyncio.sleep(0.05)
                continue
        ident = payload_id(args.prefix, n, seq)
        seq += 1
        data = before + ident.encode() + after
        result.sent += 1
        started = time.perf_counter()
        try:
            status, close = await conn.request(data)
        except (ConnectionError, OSError):
            result.error("connection")
            conn = None
            if args.stop_on_error:
                return
            continue
        result.latencies.append(time.perf_counter() - started)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == 202:
            result.acked.append(ident)
        if close:
            assert conn.transport is not None
            conn.transport.close()
            conn = None
    if conn is not None and conn.transport is not None:
        conn.transport.close()


async def _ws_worker(n: int, args: argparse.Namespace, deadline: float, result: Result) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    width = len(payload_id(args.prefix, n, 0))
    before, after = payload("#" * width, args.size).decode().split("#" * width)
    headers = {"Authorization": f"Bearer {args.token}", "X-Amperity-Tenant": args.tenant}
    sent_at: dict[int, float] = {}
    window = asyncio.Semaphore(args.window)

    async def read_acks(ws: Any) -> None:
        try:
            async for message in ws:
                doc = json.loads(message)
                seq = doc.get("ack", doc.get("nack"))
                if seq is None:
                    result.error(f"closed: {doc.get('error')}")
                    return
                result.latencies.append(time.perf_counter() - sent_at.pop(seq))
                status = 202 if "ack" in doc else int(doc["status"])
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == 202:
                    result.acked.append(payload_id(args.prefix, n, seq))
                window.release()
                if finished.is_set() and not sent_at:
                    return
        finally:
            window.release()  # a sender waiting for room sees that the reader is done

    finished = asyncio.Event()
    try:
        async with connect(
            args.url, additional_headers=headers, compression=None, max_size=None
        ) as ws:
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                result.error(f"refused: {ready.get('error')}")
                return
            reader = asyncio.get_running_loop().create_task(read_acks(ws))
            seq = 0
            while time.monotonic() < deadline and not reader.done():
                await window.acquire()
                if reader.done():
                    break
                seq += 1
                sent_at[seq] = time.perf_counter()
                result.sent += 1
                await ws.send(before + payload_id(args.prefix, n, seq) + after)
            finished.set()
            if sent_at:
                await asyncio.wait_for(reader, 30)  # the acks of the messages in flight
            else:
                reader.cancel()
    except (OSError, WebSocketException, TimeoutError) as exc:
        result.error(type(exc).__name__)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    result = Result()
    started = time.monotonic()
    deadline = started + args.duration
    websocket = url.scheme in ("ws", "wss")
    await asyncio.gather(
        *(
            _ws_worker(n, args, deadline, result)
            if websocket
            else _worker(n, args, url, deadline, result)
            for n in range(args.connections)
        )
    )
    elapsed = time.monotonic() - started
    lat = sorted(result.latencies)
    if args.acked:
        Path(args.acked).write_text("".join(i + "\n" for i in result.acked))
    accepted = result.statuses.get(202, 0)
    return {
        "requests": result.sent,
        "responses": len(lat),
        "accepted": accepted,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": result.errors,
        "seconds": round(elapsed, 3),
        "payloads_per_s": round(accepted / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            "p50": round(percentile(lat, 0.50) * 1e3, 2),
            "p90": round(percentile(lat, 0.90) * 1e3, 2),
            "p99": round(percentile(lat, 0.99) * 1e3, 2),
            "max": round((lat[-1] if lat else 0.0) * 1e3, 2),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument(
        "--url",
        required=True,
        help="http://HOST:PORT/stream/v0/data/STREAM or ws://HOST:PORT/stream/v0/ws/STREAM",
    )
    parser.add_argument("--token", required=True)
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--requests", type=int, default=0, help="stop after this many (0: none)")
    parser.add_argument(
        "--window", type=int, default=256, help="websocket: messages in flight per connection"
    )
    parser.add_argument("--size", type=int, default=1024, help="payload bytes")
    parser.add_argument("--prefix", default="p", help="payload id prefix")
    parser.add_argument("--acked", help="write the ids that got a 202 to this file")
    parser.add_argument(
        "--stop-on-error", action="store_true", help="a connection stops at its first error"
    )
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        summary = asyncio.run(run(args))
    else:
        summary = uvloop.run(run(args))
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
