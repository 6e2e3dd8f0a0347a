"""Prometheus metrics of the long-running processes (`courier serve`, `courier scheduler`,
`courier ui`), in the text format through prometheus-client. Every name starts `courier_`.

`GET /metrics` needs no token on any of them: it carries counts and durations labelled by
stream, courier and status, never a path, a key, an error text or a secret (SPEC 9: nothing
private on an unauthenticated endpoint). Unknown stream ids sent by clients are counted as
`stream="unknown"`, so a client cannot make up label values.

Several `courier serve` workers: `use_multiprocess_dir()` (called by the CLI before any
worker starts) points PROMETHEUS_MULTIPROC_DIR at a fresh folder of this run; each worker
writes its values there (prometheus-client's multiprocess mode) and a scrape of any worker
returns the sum over all of them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

_lock = threading.Lock()
_registry: Any = None
_families: dict[str, Any] = {}


def use_multiprocess_dir() -> str:
    """Give this run's processes a fresh PROMETHEUS_MULTIPROC_DIR (removed at exit); must run
    before prometheus_client is imported in any of them."""
    path = tempfile.mkdtemp(prefix="courier-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def registry() -> Any:
    """The registry courier's metrics are defined in (no process_/python_ collectors: every
    exposed name starts with courier_)."""
    global _registry
    with _lock:
        if _registry is None:
            from prometheus_client import CollectorRegistry

            _registry = CollectorRegistry(auto_describe=True)
        return _registry


def family(kind: str, name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    """The metric `name`, created once per process."""
    with _lock:
        found = _families.get(name)
    if found is not None:
        return found
    import prometheus_client

    cls = getattr(prometheus_client, kind)
    if kind == "Gauge" and os.environ.get(MULTIPROC_ENV):
        kw.setdefault("multiprocess_mode", "livesum")
    metric = cls(name, doc, labels, registry=registry(), **kw)
    with _lock:
        return _families.setdefault(name, metric)


def exposition() -> bytes:
    """All metrics in the text format: this process's, or with a multiprocess folder, every
    process's that wrote there."""
    from prometheus_client import CollectorRegistry, generate_latest

    path = os.environ.get(MULTIPROC_ENV)
    if path and os.path.isdir(path):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=path)
        return bytes(generate_latest(merged))
    return bytes(generate_latest(registry()))


def process_exited() -> None:
    """A worker leaving: its live gauges stop counting (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


async def send_metrics(send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    body = exposition()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- courier serve ------------------------------------------------------------------------------


class IngestMetrics:
    """What `courier serve` exposes. The ASGI wrapper counts answers; a sampler thread copies
    the log's and the roller's state every second; the log reports each commit."""

    def __init__(self, streams: list[str]):
        self.streams = set(streams)
        self.payloads = family(
            "Counter", "courier_ingest_payloads", "Payloads answered, by stream and status code",
            ("stream", "code"),
        )  # fmt: skip
        self.bytes = family(
            "Counter", "courier_ingest_accepted_bytes",
            "Bytes of accepted payloads (POST bodies, acknowledged websocket messages)",
            ("stream",),
        )  # fmt: skip
        self.latency = family(
            "Histogram", "courier_ingest_request_seconds",
            "Time from request to answer (data route: includes the fsync)", ("route",),
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.batch = family(
            "Histogram", "courier_ingest_fsync_batch_payloads",
            "Payloads per group commit of the write-ahead log", buckets=BATCH_BUCKETS,
        )  # fmt: skip
        self.fsync = family(
            "Histogram", "courier_ingest_fsync_seconds",
            "Time of the fsyncs of one group commit", buckets=FSYNC_BUCKETS,
        )  # fmt: skip
        self.wal_bytes = family(
            "Gauge", "courier_ingest_wal_backlog_bytes",
            "Bytes in the write-ahead log not yet uploaded to storage",
        )  # fmt: skip
        self.upload_backlog = family(
            "Gauge", "courier_ingest_upload_backlog_segments",
            "Sealed log segments waiting for upload",
        )  # fmt: skip
        self.uploads = family(
            "Counter", "courier_ingest_roller_uploads", "Part files uploaded to storage"
        )
        self.upload_failures = family(
            "Counter", "courier_ingest_roller_upload_failures", "Failed upload attempts"
        )
        self._children: dict[tuple[str, int], Any] = {}
        self._data_latency = self.latency.labels("data")
        self._other_latency = self.latency.labels("other")
        self._seen = (0, 0)
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()

    def stream_label(self, stream: str) -> str:
        return stream if stream in self.streams else "unknown"

    def answered(self, stream: str | None, code: int, nbytes: int, seconds: float) -> None:
        if stream is None:
            self._other_latency.observe(seconds)
            return
        self.payload(stream, code)
        if code == 202:
            self.accepted_bytes(stream, nbytes)
        self._data_latency.observe(seconds)

    def accepted_bytes(self, stream: str, nbytes: int) -> None:
        """A POST body answered 202, or a websocket message acknowledged (its whole frame)."""
        self.bytes.labels(self.stream_label(stream)).inc(nbytes)

    def payload(self, stream: str, code: int) -> None:
        child = self._children.get((stream, code))
        if child is None:
            child = self._children[(stream, code)] = self.payloads.labels(
                self.stream_label(stream), str(code)
            )
        child.inc()

    def committed(self, payloads: int, fsync_seconds: float) -> None:
        try:
            self.batch.observe(payloads)
            self.fsync.observe(fsync_seconds)
        except Exception:  # noqa: S110 - metrics never fail a commit
            pass

    def sample(self, service: Any) -> None:
        """Copy the log's backlog and the roller's counts (deltas since the last sample)."""
        self.wal_bytes.set(service.used_bytes())
        roller = service.roller
        self.upload_backlog.set(roller.backlog)
        uploaded, failures = roller.uploaded, getattr(roller, "failures", 0)
        if uploaded > self._seen[0]:
            self.uploads.inc(uploaded - self._seen[0])
        if failures > self._seen[1]:
            self.upload_failures.inc(failures - self._seen[1])
        self._seen = (uploaded, failures)

    def start_sampling(self, service: Any, every: float = 1.0) -> None:
        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.sample(service)
                except Exception:  # noqa: S112 - a sample is retried next second
                    continue

        self.sample(service)
        self._stop.clear()
        self._sampler = threading.Thread(target=loop, name="courier-metrics", daemon=True)
        self._sampler.start()

    def stop_sampling(self, service: Any) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=5)
            self._sampler = None
        try:
            self.sample(service)
        except Exception:  # noqa: S110 - the service is going away
            pass


class IngestMetricsApp:
    """ASGI wrapper of the ingest app: serves GET /metrics and counts every other answer."""

    def __init__(self, app: Any, data_prefix: str = "/stream/v0/data/"):
        self.app = app
        self.prefix = data_prefix
        self.metrics = IngestMetrics(list(app.project.streams))
        app.metrics = self.metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/metrics" and scope["method"] in ("GET", "HEAD"):
            await send_metrics(send)
            return
        started = time.perf_counter()
        stream = path[len(self.prefix) :] if path.startswith(self.prefix) else None
        if stream is None:
            await self.app(scope, receive, send)
            self.metrics.answered(None, 0, 0, time.perf_counter() - started)
            return
        received = 0
        code = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            received += len(message.get("body", b""))
            return message

        async def watching_send(message: dict[str, Any]) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                self.metrics.answered(stream, code, received, time.perf_counter() - started)
            await send(message)

        await self.app(scope, counting_receive, watching_send)

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Payloads over the websocket route, counted by their answers: {"ack"} as 202,
        {"nack", "status"} and {"error", "status"} by that status (bytes: counted by the
        connection as it acknowledges, courier.ingest.websocket)."""
        path: str = scope["path"]
        prefix = "/stream/v0/ws/"
        if not path.startswith(prefix):
            await self.app(scope, receive, send)
            return
        stream = path[len(prefix) :]

        async def watching_send(message: dict[str, Any]) -> None:
            text = message.get("text") if message["type"] == "websocket.send" else None
            if text:
                if text.startswith('{"ack"'):
                    self.metrics.payload(stream, 202)
                elif '"status"' in text:
                    try:
                        doc = orjson.loads(text)
                        self.metrics.payload(stream, int(doc["status"]))
                    except (ValueError, KeyError, TypeError):
                        pass
            await send(message)

        await self.app(scope, receive, watching_send)

    async def lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app's lifespan; once its service runs, sample it and hear its commits."""
        service: Any = None

        async def on_send(message: dict[str, Any]) -> None:
            nonlocal service
            if message["type"] == "lifespan.startup.complete" and self.app.service is not None:
                service = self.app.service
                service.wal.on_batch = self.metrics.committed
                self.metrics.start_sampling(service)
            elif message["type"] == "lifespan.shutdown.complete":
                if service is not None:
                    self.metrics.stop_sampling(service)
                process_exited()
            await send(message)

        await self.app(scope, receive, on_send)


def create_ingest_app() -> IngestMetricsApp:
    """The uvicorn factory of `courier serve`: the ingest app with its metrics."""
    from courier.ingest.app import create_app

    return IngestMetricsApp(create_app())


# -- courier scheduler ------------------------------------------------------------------------


class SchedulerMetrics:
    def __init__(self) -> None:
        self.runs = family(
            "Counter", "courier_runs", "Courier runs finished, by courier and status",
            ("courier", "status"),
        )  # fmt: skip
        self.rows_loaded = family(
            "Counter", "courier_rows_loaded", "Rows loaded into feeds", ("courier",)
        )
        self.rows_rejected = family(
            "Counter", "courier_rows_rejected", "Rows rejected (quarantined)", ("courier",)
        )
        self.duration = family(
            "Histogram", "courier_run_seconds", "Duration of courier runs", ("courier",),
            buckets=RUN_BUCKETS,
        )  # fmt: skip
        self.group_runs = family(
            "Counter", "courier_group_runs", "Group runs finished, by group and status",
            ("group", "status"),
        )  # fmt: skip
        self.backlog_files = family(
            "Gauge", "courier_backlog_files", "Files landed but not loaded yet", ("courier",)
        )
        self.backlog_bytes = family(
            "Gauge", "courier_backlog_bytes", "Bytes landed but not loaded yet", ("courier",)
        )
        self.alerts_open = family("Gauge", "courier_alerts_open", "Alerts not answered yet")
        self.couriers = family(
            "Gauge", "courier_couriers", "Couriers by state (ok, late, failing, never_run)",
            ("state",),
        )  # fmt: skip

    def group_run(self, record: dict[str, Any]) -> None:
        """Count a finished group run and each courier run in it (GroupRunner.run's record)."""
        self.group_runs.labels(record.get("group") or "", record.get("status") or "").inc()
        for run in record.get("couriers") or []:
            self.courier_run(run)

    def courier_run(self, run: dict[str, Any]) -> None:
        courier, status = run.get("courier") or "", run.get("status") or ""
        self.runs.labels(courier, status).inc()
        feeds = run.get("feeds") or {}
        loaded = sum(int(c.get("loaded") or 0) for c in feeds.values())
        rejected = sum(int(c.get("rejected") or 0) for c in feeds.values())
        self.rows_loaded.labels(courier).inc(loaded if status == "succeeded" else 0)
        self.rows_rejected.labels(courier).inc(rejected if status == "succeeded" else 0)
        if run.get("run_id") and run.get("duration_s") is not None:
            self.duration.labels(courier).observe(float(run["duration_s"]))

    def overview(self, couriers: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
        """Backlog, alert and state gauges from a status snapshot."""
        states: dict[str, int] = {"ok": 0, "late": 0, "failing": 0, "never_run": 0, "running": 0}
        for row in couriers:
            backlog = row["backlog"]
            self.backlog_files.labels(row["courier"]).set(backlog.get("files", 0))
            self.backlog_bytes.labels(row["courier"]).set(backlog.get("bytes", 0))
            states[row["status"]] = states.get(row["status"], 0) + 1
        for state, n in states.items():
            self.couriers.labels(state).set(n)
        self.alerts_open.set(len(alerts))


# -- courier ui -------------------------------------------------------------------------------


class UiMetrics:
    def __init__(self) -> None:
        self.requests = family(
            "Counter", "courier_ui_requests", "Status page requests, by page and status code",
            ("page", "code"),
        )  # fmt: skip
        self.latency = family(
            "Histogram", "courier_ui_request_seconds", "Time to answer a status page request",
            ("page",), buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.snapshots = family(
            "Counter", "courier_ui_snapshots", "State snapshots taken, by outcome "
            "(ok, busy: a run held the database, failed)", ("outcome",),
        )  # fmt: skip
        self.snapshot_seconds = family(
            "Histogram", "courier_ui_snapshot_seconds", "Time to take a snapshot",
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.snapshot_hold = family(
            "Histogram", "courier_ui_database_hold_seconds",
            "How long a snapshot held the feed database (what a starting run may wait)",
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.snapshot_age = family(
            "Gauge", "courier_ui_snapshot_age_seconds", "Age of the snapshot being served"
        )
