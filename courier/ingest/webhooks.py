"""Signed webhooks: POST /webhook/v0/{stream_id} for services that sign what they send.

A stream takes webhooks when its file has a [webhook] table:

    [webhook]
    preset = "github"                      # or "stripe", or none and the fields below
    secret = "${GITHUB_WEBHOOK_SECRET}"    # the shared secret, from the environment
    header = "X-Signature"                 # where the signature is
    algorithm = "sha256"                   # HMAC-SHA256 (or sha1)
    encoding = "hex"                       # or base64
    prefix = "sha256="                     # before the signature, if the service adds one
    timestamp_header = "X-Timestamp"       # optional: signing time (unix seconds) ...
    tolerance = 300                        # ... refused when further than this from now
    signed_payload = "{timestamp}.{body}"  # what is signed (default: the raw body)
    delivery_header = "X-Delivery"         # the sender's delivery id: a repeat lands nothing
    dedupe_seconds = 604800                # ... within this long (default 7 days)

Presets, as the services document them:
    github  X-Hub-Signature-256: "sha256=" + hex HMAC-SHA256 of the raw body; deliveries
            deduplicated by X-GitHub-Delivery (a replayed capture answers 200 duplicate).
    stripe  Stripe-Signature: "t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">[,v1=...]",
            refused more than 300 s from now (any v1 may match: secrets roll).

The signature is checked over the raw bytes before anything is parsed, compared with
hmac.compare_digest; a missing, malformed or wrong signature, or a timestamp outside the
tolerance, answers 401 and lands nothing. A good request lands its JSON body like the ingest
API does (batch_arrays and envelope apply) and answers 202 once it is in the log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from courier.config.loader import ENV_REF
from courier.config.models import WebhookConfig
from courier.errors import ConfigError, ConfigErrors, IngestError
from courier.ingest import apikeys

if TYPE_CHECKING:
    from courier.project import Project

PREFIX = "/webhook/v0/"

PRESETS: dict[str, dict[str, Any]] = {
    "github": {
        "header": "X-Hub-Signature-256",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "sha256=",
        "delivery_header": "X-GitHub-Delivery",
    },
    "stripe": {
        "header": "Stripe-Signature",
        "algorithm": "sha256",
        "encoding": "hex",
        "tolerance": 300,
        "signed_payload": "{timestamp}.{body}",
    },
}


def _unauthorized(message: str) -> IngestError:
    return IngestError(401, f"webhook refused: {message}; nothing was landed")


@dataclass(frozen=True)
class WebhookVerifier:
    """Checks one stream's webhook signatures."""

    stream: str
    secret: bytes
    header: bytes
    algorithm: str
    encoding: str
    prefix: bytes
    timestamp_header: bytes | None
    tolerance: int
    signed_payload: str
    scheme: str  # "stripe" (t=,v1= in one header) or "plain"
    source: str
    header_name: str = ""  # as configured, for messages
    delivery_header: bytes | None = None  # the sender's delivery id (GitHub: X-GitHub-Delivery)
    dedupe_seconds: int = 7 * 86400

    @classmethod
    def from_config(cls, stream: str, config: WebhookConfig) -> WebhookVerifier:
        values = dict(PRESETS.get(config.preset or "", {}))
        values.update({k: getattr(config, k) for k in config.model_fields_set})
        if not config.secret:
            raise ConfigError(
                "webhook.secret is not set (is its environment variable exported?); set the "
                'shared secret, e.g. secret = "${COURIER_WEBHOOK_SECRET}"',
                key="webhook.secret",
            )
        header = values.get("header")
        if not header:
            raise ConfigError(
                'webhook.header is not set: name the signature header (or set preset = "github" '
                'or "stripe")',
                key="webhook.header",
            )
        template = values.get("signed_payload", "{body}")
        if template.count("{body}") != 1:
            raise ConfigError(
                "webhook.signed_payload must contain {body} once", key="webhook.signed_payload"
            )
        scheme = "stripe" if config.preset == "stripe" else "plain"
        timestamp_header = values.get("timestamp_header")
        if "{timestamp}" in template and scheme == "plain" and not timestamp_header:
            raise ConfigError(
                "webhook.signed_payload uses {timestamp}: set webhook.timestamp_header",
                key="webhook.timestamp_header",
            )
        return cls(
            stream=stream,
            secret=config.secret.encode(),
            header=header.lower().encode(),
            algorithm=values.get("algorithm", "sha256"),
            encoding=values.get("encoding", "hex"),
            prefix=values.get("prefix", "").encode(),
            timestamp_header=timestamp_header.lower().encode() if timestamp_header else None,
            tolerance=int(values.get("tolerance", 300)),
            signed_payload=template,
            scheme=scheme,
            source=f"webhook:{config.preset}" if config.preset else "webhook",
            header_name=header,
            delivery_header=(
                values["delivery_header"].lower().encode()
                if values.get("delivery_header")
                else None
            ),
            dedupe_seconds=config.dedupe_seconds,
        )

    def delivery_id(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        if self.delivery_header is None:
            return None
        for name, value in headers:
            if name == self.delivery_header:
                text = value.decode("latin-1").strip()
                return text or None
        return None

    def digest(self, body: bytes, timestamp: str | None = None) -> bytes:
        """The signature of `body` (at `timestamp`) as the sender writes it, prefix excluded."""
        head, _, tail = self.signed_payload.partition("{body}")
        ts = timestamp or ""
        message = (
            head.replace("{timestamp}", ts).encode()
            + body
            + tail.replace("{timestamp}", ts).encode()
        )
        mac = hmac.new(self.secret, message, getattr(hashlib, self.algorithm)).digest()
        return mac.hex().encode() if self.encoding == "hex" else base64.b64encode(mac)

    def _fresh(self, timestamp: bytes | str | None, now: float) -> str:
        if timestamp is None:
            raise _unauthorized("missing timestamp")
        try:
            text = timestamp.decode("latin-1") if isinstance(timestamp, bytes) else timestamp
            text = text.strip()
            at = int(text)
        except ValueError:
            raise _unauthorized(f"the timestamp {timestamp!r} is not unix seconds") from None
        if abs(now - at) > self.tolerance:
            raise _unauthorized(
                f"the timestamp is {int(now - at)} s from now, outside the tolerance of "
                f"{self.tolerance} s (a replay, or a clock that is off)"
            )
        return text

    def verify(self, headers: list[tuple[bytes, bytes]], body: bytes, now: float) -> None:
        signature = timestamp = None
        for name, value in headers:
            if name == self.header:
                signature = value
            elif name == self.timestamp_header:
                timestamp = value
        header = self.header_name or self.header.decode()
        if signature is None:
            raise _unauthorized(f"missing {header} signature header")
        if self.scheme == "stripe":
            self._verify_stripe(signature, body, now)
            return
        if self.prefix:
            if not signature.startswith(self.prefix):
                raise _unauthorized(
                    f"the {header} value does not start with {self.prefix.decode()!r}"
                )
            signature = signature[len(self.prefix) :]
        ts = self._fresh(timestamp, now) if self.timestamp_header is not None else None
        expected = self.digest(body, ts)
        given = signature.strip()
        if self.encoding == "hex":
            given = given.lower()
        if not hmac.compare_digest(expected, given):
            raise _unauthorized(f"the {header} signature does not match the body")

    def _verify_stripe(self, signature: bytes, body: bytes, now: float) -> None:
        timestamp: bytes | None = None
        candidates: list[bytes] = []
        for part in signature.split(b","):
            name, _, value = part.strip().partition(b"=")
            if name == b"t":
                timestamp = value
            elif name == b"v1":
                candidates.append(value.lower())
        if timestamp is None or not candidates:
            raise _unauthorized("the Stripe-Signature header lacks t= or v1=")
        expected = self.digest(body, self._fresh(timestamp, now))
        matched = False
        for candidate in candidates:  # every one compared: no early exit to time
            matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise _unauthorized("no v1 signature in Stripe-Signature matches the body")


def verifiers(project: Project) -> dict[str, WebhookVerifier]:
    """Every stream's webhook verifier; ConfigErrors naming each unusable [webhook]."""
    from courier.ingest.service import unset_references

    out: dict[str, WebhookVerifier] = {}
    errors: list[ConfigError] = []
    for sid, stream in project.streams.items():
        if stream.webhook is None:
            continue
        path = project.files.get(f"config/streams:{sid}")
        try:
            out[sid] = WebhookVerifier.from_config(sid, stream.webhook)
        except ConfigError as exc:
            names = unset_references(path, exc.key)
            message = str(exc)
            if names:
                message = (
                    f"{exc.key} comes from the environment variable {' and '.join(names)}, "
                    "which is not set: export it before starting courier"
                )
            errors.append(ConfigError(message, path, exc.key))
    if errors:
        raise ConfigErrors(errors)
    return out


DELIVERIES = ".courier/webhook-deliveries"
PRUNE_EVERY = 60.0
STALE_PENDING = 300.0  # a delivery marked pending this long belongs to a process that died


class Deliveries:
    """The delivery ids a stream has landed, for `dedupe_seconds`: one small file per id under
    .courier/webhook-deliveries/{stream}/, created with O_EXCL (so every server process of the
    project agrees) and fsynced. A delivery is marked "pending" before it lands and "done"
    (atomically replaced, fsynced) before its 202; a repeat of a done one lands nothing, one
    still pending is answered 409 + Retry-After, a failed landing removes its mark (the retry
    lands). Only a process dying between its log's fsync and the "done" mark (or a pending
    mark older than STALE_PENDING) lets a repeat land again."""

    def __init__(self, folder: Path, window: float):
        self.folder = folder
        self.window = window
        self._pruned = -1e9

    def _path(self, delivery: str) -> Path:
        return self.folder / hashlib.sha256(delivery.encode()).hexdigest()[:40]

    def claim(self, delivery: str, now: float | None = None) -> Path | None:
        """The mark to finish, or None when this delivery was landed already."""
        at = time.time() if now is None else now
        self._prune(at)
        path = self._path(delivery)
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                try:
                    state = path.read_bytes()
                    age = at - path.stat().st_mtime
                except FileNotFoundError:
                    continue  # its landing failed meanwhile: try again
                if state.startswith(b"done") and age <= self.window:
                    return None
                if state.startswith(b"pending") and age < STALE_PENDING:
                    raise IngestError(
                        409,
                        f"delivery {delivery!r} is being landed by another request: retry "
                        "after the time in Retry-After",
                        {"retry-after": "1"},
                    ) from None
                path.unlink(missing_ok=True)  # expired, or its process died
                continue
            try:
                os.write(fd, b"pending")
                os.fsync(fd)
            finally:
                os.close(fd)
            return path
        raise IngestError(409, f"delivery {delivery!r} is contended: retry", {"retry-after": "1"})

    @staticmethod
    def done(path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"done")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def release(path: Path) -> None:
        path.unlink(missing_ok=True)

    def _prune(self, now: float) -> None:
        """Bounded: ids older than the window go (at most every PRUNE_EVERY seconds)."""
        if now - self._pruned < PRUNE_EVERY or not self.folder.is_dir():
            return
        self._pruned = now
        for path in self.folder.iterdir():
            try:
                if now - path.stat().st_mtime > max(self.window, STALE_PENDING):
                    path.unlink()
            except FileNotFoundError:
                pass


def deliveries_for(app: Any, stream_id: str, verifier: WebhookVerifier) -> Deliveries:
    known: dict[str, Deliveries] = app.__dict__.setdefault("_deliveries", {})
    if stream_id not in known:
        folder = app.project.path(DELIVERIES) / stream_id
        known[stream_id] = Deliveries(folder, verifier.dedupe_seconds)
    return known[stream_id]


async def handle(app: Any, stream_id: str, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST /webhook/v0/{stream_id} on the IngestApp `app` (courier/ingest/app.py)."""
    import asyncio  # here: a command that only checks webhooks need not import it

    from courier.ingest.app import send_accepted

    service = app.service
    stream = service.streams.get(stream_id)
    if stream is None:
        raise IngestError(404, f"unknown stream {stream_id!r}")
    verifier: WebhookVerifier | None = app.webhooks.get(stream_id)
    if verifier is None:
        raise IngestError(
            404, f"stream {stream_id!r} takes no webhooks: add a [webhook] table to its file"
        )
    content_type = length = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            length = value
    app.check_content_type(stream, content_type)
    body = await app.read_body(stream, length, receive)
    if body is None:
        return
    verifier.verify(scope["headers"], body, time.time())
    delivery = verifier.delivery_id(scope["headers"])
    mark: Path | None = None
    if delivery is not None:  # after the signature: forged ids cannot block real ones
        deliveries = deliveries_for(app, stream_id, verifier)
        mark = await asyncio.to_thread(deliveries.claim, delivery)
        if mark is None:
            await send_duplicate(send, delivery)
            return
    try:
        stream.admit()  # only a signed delivery spends the stream's rate limit
        records = service.records(stream, body)
        if stream.config.envelope:
            records = apikeys.envelope(
                records, apikeys.query_value(scope, "client_id"), verifier.source
            )
        future: asyncio.Future[None] = app.loop.create_future()
        outbox = app.outbox
        outbox.append(service.prepare(stream, records, future))
        if len(outbox) == 1:
            app.loop.call_soon(app.hand_over)
        await future
        if mark is not None:
            await asyncio.to_thread(Deliveries.done, mark)
    except BaseException:
        if mark is not None:
            Deliveries.release(mark)  # not landed: the sender's retry must land
        raise
    await send_accepted(send, app.accepted_id())


async def send_duplicate(send: Any, delivery: str) -> None:
    """200: the sender may stop retrying; nothing is landed a second time."""
    body = orjson.dumps({"status": "duplicate", "delivery": delivery})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def check_webhooks(project: Project) -> list[ConfigError]:
    """`courier validate`: [webhook] and [api_keys] tables of the streams (registered in
    courier.project.CHECKS). A secret must be an ${ENV} reference; one whose variable is not set
    in this shell is fine here (`courier serve` refuses to start without it)."""
    from courier.ingest.checks import HEADER_NAME, raw_value

    errors: list[ConfigError] = []
    for sid, stream in project.streams.items():
        path = project.files.get(f"config/streams:{sid}")
        names = {
            "api_keys.id_header": stream.api_keys.id_header,
            "api_keys.secret_header": stream.api_keys.secret_header,
            "api_keys.client_header": stream.api_keys.client_header,
        }
        if stream.envelope and stream.payload != "json":
            errors.append(
                ConfigError(
                    'envelope = true needs payload = "json" (XML payloads land as CBOR trees)',
                    path,
                    "envelope",
                )
            )
        webhook = stream.webhook
        if webhook is not None:
            raw = raw_value(path, "webhook", "secret")
            if raw is None:
                errors.append(
                    ConfigError(
                        'webhook.secret is missing: set secret = "${WEBHOOK_SECRET_VARIABLE}"',
                        path,
                        "webhook.secret",
                    )
                )
            elif not (isinstance(raw, str) and ENV_REF.search(raw)):
                errors.append(
                    ConfigError(
                        "webhook.secret is written in the file: secrets stay out of the repo; "
                        'use secret = "${WEBHOOK_SECRET_VARIABLE}"',
                        path,
                        "webhook.secret",
                    )
                )
            try:  # everything but the secret, which may be unset in this shell
                WebhookVerifier.from_config(sid, webhook.model_copy(update={"secret": "x"}))
            except ConfigError as exc:
                errors.append(ConfigError(str(exc), path, exc.key))
            if webhook.header:
                names["webhook.header"] = webhook.header
            if webhook.timestamp_header:
                names["webhook.timestamp_header"] = webhook.timestamp_header
            if webhook.delivery_header:
                names["webhook.delivery_header"] = webhook.delivery_header
        for key, value in names.items():
            if not HEADER_NAME.match(value):
                errors.append(ConfigError(f"{value!r} is not an HTTP header name", path, key))
    return errors
