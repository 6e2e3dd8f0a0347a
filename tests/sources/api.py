"""A small REST API on loopback imitating the services sources fetch from.

GET  /events?cursor=N&limit=L  records with seq > N, at most 10 (L) per page, and
                               {"meta": {"next_cursor"}}; every `throttle_every`-th
                               request answers 429 with Retry-After
GET  /linked?page=P            pages of 10 with a next link; each page repeats the last
                               record of the previous one (for dedupe)
GET  /html                     a web page
GET  /files?numFiles=N         {"files": [...]} at most min(N, 10) names
GET  /files/NAME               the content
DELETE /files/NAME             {"deleted": NAME}
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PAGE = 10


ACTIONS = ["viewed", "clicked", "added_to_cart", "searched"]


def event(seq: int) -> dict[str, Any]:
    """An actor/action event in the shape of the activity-events stream (samples/), so that
    config/sources/activity_poll.toml lands records the activity courier loads."""
    return {
        "id": f"ev-{seq:04d}",
        "seq": seq,
        "actor": {"type": "user", "id": f"u-{seq % 5}"},
        "action": {"name": ACTIONS[seq % len(ACTIONS)]},
        "context": {"name": "api", "attributes": {"n": seq % 7}},
        "object": {"type": "page", "id": f"p-{seq % 3}"},
        "metadata": {"localtimestamp": f"2026-11-22T{seq // 60 % 24:02d}:{seq % 60:02d}:00Z"},
    }


class FakeApi:
    def __init__(self, events: int = 25, throttle_every: int = 0, retry_after: str = "1"):
        self.events = [event(i) for i in range(1, events + 1)]
        self.throttle_every = throttle_every
        self.retry_after = retry_after
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.throttled = 0
        self.deleted: list[str] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.handle(self, "GET")

            def do_DELETE(self) -> None:
                api.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_events(self, n: int) -> None:
        with self.lock:
            start = len(self.events)
            self.events.extend(event(i) for i in range(start + 1, start + n + 1))

    # -- handling ----------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append(f"{method} {h.path}")
            count = len(self.requests)
            if self.throttle_every and count % self.throttle_every == 0:
                self.throttled += 1
                self.send(h, 429, {"error": "slow down"}, {"Retry-After": self.retry_after})
                return
            path = parts.path
            if path == "/events":
                after = int(query.get("cursor", "0"))
                limit = min(PAGE, int(query.get("limit", PAGE)))
                page = [e for e in self.events if e["seq"] > after][:limit]
                nxt = page[-1]["seq"] if page else after
                self.send(h, 200, {"data": page, "meta": {"next_cursor": str(nxt)}})
            elif path == "/linked":
                p = int(query.get("page", "1"))
                start = max(0, (p - 1) * PAGE - 1)  # repeats the previous page's last record
                page = self.events[start : p * PAGE]
                more = p * PAGE < len(self.events)
                self.send(
                    h, 200, {"items": page, "next": f"/linked?page={p + 1}" if more else None}
                )
            elif path == "/html":
                body = b"<!DOCTYPE html><html><body>Sign in</body></html>"
                self.send_raw(h, 200, body, "text/html; charset=utf-8")
            elif path == "/files" and method == "GET":
                n = min(PAGE, int(query.get("numFiles", PAGE)))
                self.send(h, 200, {"files": sorted(self.files)[:n]})
            elif path.startswith("/files/"):
                name = unquote(path[len("/files/") :])
                if name not in self.files:
                    self.send(h, 404, {"error": f"no file {name}"})
                elif method == "GET":
                    self.send_raw(h, 200, self.files[name], "application/octet-stream")
                else:
                    del self.files[name]
                    self.deleted.append(name)
                    self.send(h, 200, {"deleted": name})
            else:
                self.send(h, 404, {"error": "not found"})

    def send(self, h: BaseHTTPRequestHandler, status: int, doc: Any, headers: Any = None) -> None:
        self.send_raw(h, status, json.dumps(doc).encode(), "application/json", headers)

    def send_raw(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


def main() -> None:
    """`python -m tests.sources.api --port 8099`: serve the fake API until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--events", type=int, default=25)
    args = parser.parse_args()
    api = FakeApi(events=args.events)
    api.server.server_close()
    api.server = ThreadingHTTPServer(("127.0.0.1", args.port), api.server.RequestHandlerClass)
    api.url = f"http://127.0.0.1:{args.port}"
    print(f"fake source API on {api.url} ({args.events} events)", flush=True)
    try:
        api.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
