"""API keys: header-key auth and token exchange for producers that do not hold stream tokens.

    store = KeyStore.for_project(project)
    key_id, secret = store.create("shop-app", ["activity-events"])   # the secret, once
    store.revoke("shop-app")

The store is one small JSON file (.courier/apikeys.json), replaced atomically (temp file +
os.replace) so `courier apikey` can change it while `courier serve` runs: each server process
re-reads it when its inode, size or mtime changes (one os.stat per key-authenticated
request), so a revoked key answers 401 on its very next request. Only a salted scrypt hash of
each secret is stored; a verified secret is remembered by its SHA-256 so the costly scrypt
runs once per key and process, and every comparison uses hmac.compare_digest. The scrypt runs
in one worker thread, never on the event loop, at most MAX_DERIVING at once (503 beyond);
wrong secrets are counted per key id and per client address, and past FAILURES within
FAILURE_WINDOW seconds either answers 429 + Retry-After without deriving anything.

On the wire (`Access`, used by courier/ingest/app.py):
    GET /api/token   Authorization: Basic base64(key id:secret)
                     -> {"access_token": JWT, "token_type": "Bearer", "expires_in": N}
    ingest requests  Authorization: Bearer <that JWT>, or the key itself in headers
                     X-App-Id / X-App-Secret (names per stream: [api_keys] in the stream file)
The JWT carries `key` (the key id) and `streams` (its scope), is signed with the streams'
[auth] keys (tokens.py) and is refused as soon as its key is revoked. A client of a
multi-tenant producer names itself with the `client_id` query parameter or the stream's
client header (X-Client-Instance); streams with `envelope = true` record it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from courier.errors import ConfigError, IngestError, not_found
from courier.ingest.ratelimit import retry_after
from courier.ingest.tokens import StreamKeys, numeric_dates
from courier.ingest.wal import write_json_atomic

if TYPE_CHECKING:
    from courier.project import Project

STORE = ".courier/apikeys.json"
TOKEN_SECONDS = 3600
DERIVERS = 1  # a thread deriving scrypt hashes (~100-200 ms of CPU each, off the event loop)
MAX_DERIVING = 8  # derivations running or queued per process; more answer 503 + Retry-After
FAILURES = 5  # wrong secrets per key id, and per client address, within ...
FAILURE_WINDOW = 60.0  # ... these seconds; then 429 + Retry-After until the oldest expires
KEY_PREFIX = "ck_"
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
LEEWAY = 30.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, maxmem=64 << 20, **SCRYPT)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ApiKey:
    name: str
    id: str
    streams: tuple[str, ...]
    salt: bytes
    hash: bytes
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "streams": list(self.streams),
            "salt": self.salt.hex(),
            "hash": self.hash.hex(),
            "kdf": "scrypt",
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ApiKey:
        return cls(
            name=doc["name"],
            id=doc["id"],
            streams=tuple(doc["streams"]),
            salt=bytes.fromhex(doc["salt"]),
            hash=bytes.fromhex(doc["hash"]),
            created_at=doc["created_at"],
            revoked_at=doc.get("revoked_at"),
        )


class KeyStore:
    """The API keys of a project: one JSON file, re-read when it changes on disk."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.by_name: dict[str, ApiKey] = {}
        self.by_id: dict[str, ApiKey] = {}

    @classmethod
    def for_project(cls, project: Project) -> KeyStore:
        return cls(project.path(STORE))

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            changed = self._stamp is not None
            self._stamp = None
            self.by_name, self.by_id = {}, {}
            return changed
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return False
        try:
            doc = json.loads(self.path.read_text())
            keys = [ApiKey.from_json(k) for k in doc.get("keys", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the API key store is unreadable ({exc}); restore it or remove it and create "
                "the keys again with `courier apikey create`",
                self.path,
            ) from None
        self._stamp = stamp
        self.by_name = {k.name: k for k in keys}
        self.by_id = {k.id: k for k in keys}
        return True

    def _save(self) -> None:
        write_json_atomic(self.path, {"keys": [k.to_json() for k in self.by_name.values()]})
        self._stamp = None

    def create(self, name: str, streams: list[str]) -> tuple[ApiKey, str]:
        """A new key; its secret is returned here and never stored."""
        self.refresh()
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"API key name {name!r}: use letters, digits, '_', '.' and '-'")
        if name in self.by_name:
            raise ConfigError(
                f"an API key named {name!r} already exists: delete it first "
                f"(`courier apikey delete {name}`) or pick another name"
            )
        if not streams:
            raise ConfigError("an API key needs at least one stream: --stream ID")
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        key = ApiKey(
            name=name,
            id=KEY_PREFIX + secrets.token_hex(10),
            streams=tuple(dict.fromkeys(streams)),
            salt=salt,
            hash=hash_secret(secret, salt),
            created_at=_now(),
        )
        self.by_name[name] = key
        self._save()
        return key, secret

    def _named(self, name: str) -> ApiKey:
        self.refresh()
        key = self.by_name.get(name)
        if key is None:
            raise not_found("API key", name, self.by_name)
        return key

    def delete(self, name: str) -> ApiKey:
        """Remove key NAME from the store (revoked or not): it and its tokens stop working,
        and the name is free again."""
        key = self._named(name)
        del self.by_name[name]
        self._save()
        return key

    def revoke(self, name: str) -> ApiKey:
        key = self._named(name)
        if key.active:
            key = ApiKey(**{**key.__dict__, "revoked_at": _now()})
            self.by_name[name] = key
            self._save()
        return key

    def keys(self) -> list[ApiKey]:
        self.refresh()
        return sorted(self.by_name.values(), key=lambda k: k.name)


class FailureThrottle:
    """Counts failed secrets per name ("key:<id>", "addr:<ip>"): after `limit` failures within
    `window` seconds, `check` answers 429 with Retry-After until the oldest one is older than
    the window. Bounded: at most `max_names` names are remembered (the oldest go first)."""

    def __init__(
        self, limit: int = FAILURES, window: float = FAILURE_WINDOW, max_names: int = 10_000
    ):
        self.limit = limit
        self.window = window
        self.max_names = max_names
        self._failures: dict[str, deque[float]] = {}

    def check(self, *names: str, now: float | None = None) -> None:
        current = time.monotonic() if now is None else now
        for name in names:
            times = self._failures.get(name)
            if times is None:
                continue
            while times and times[0] <= current - self.window:
                times.popleft()
            if len(times) >= self.limit:
                wait = times[0] + self.window - current
                what = "API key" if name.startswith("key:") else "client address"
                raise IngestError(
                    429,
                    f"too many wrong secrets for this {what} ({len(times)} in "
                    f"{self.window:g} s): retry after the time in Retry-After",
                    {"retry-after": retry_after(wait)},
                )

    def fail(self, *names: str, now: float | None = None) -> None:
        current = time.monotonic() if now is None else now
        for name in names:
            times = self._failures.pop(name, None)  # re-inserted: the newest last
            if times is None:
                times = deque(maxlen=self.limit)
                while len(self._failures) >= self.max_names:
                    del self._failures[next(iter(self._failures))]
            times.append(current)
            self._failures[name] = times


def _unauthorized(message: str, scheme: str = "Bearer") -> IngestError:
    return IngestError(401, message, {"www-authenticate": f'{scheme} realm="courier"'})


def _same_signer(a: StreamKeys, b: StreamKeys) -> bool:
    if a.algorithm != b.algorithm:
        return False
    if a.algorithm == "HS256":
        return hmac.compare_digest(bytes(a.verify_key), bytes(b.verify_key))
    return bool(a.verify_key.public_numbers() == b.verify_key.public_numbers())


def client_address(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def query_value(scope: dict[str, Any], name: str) -> str | None:
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return None
    values = parse_qs(raw.decode("latin-1")).get(name)
    return values[0] if values else None


class Access:
    """API-key authentication for one server process."""

    def __init__(self, store: KeyStore, keys: dict[str, StreamKeys], streams: dict[str, Any]):
        self.store = store
        self.keys = keys  # stream -> signing/verifying keys (tokens.py)
        self.headers = {
            sid: (
                s.api_keys.id_header.lower().encode(),
                s.api_keys.secret_header.lower().encode(),
                s.api_keys.client_header.lower().encode(),
            )
            for sid, s in streams.items()
        }
        self._verified: dict[str, bytes] = {}  # key id -> sha256 of its verified secret
        self._tokens: dict[bytes, tuple[float, str, tuple[str, ...]]] = {}  # token -> claims
        self.throttle = FailureThrottle()
        self._pool: ThreadPoolExecutor | None = None
        self._deriving = 0

    def _refresh(self) -> None:
        if self.store.refresh():
            self._verified.clear()
            self._tokens.clear()

    @property
    def active(self) -> bool:
        self._refresh()
        return bool(self.store.by_id)

    async def check_secret(
        self, key_id: str, secret: str, scheme: str = "Bearer", client: str | None = None
    ) -> ApiKey:
        """The key, when `secret` is its secret and it is not revoked; 401 otherwise.

        A secret verified before costs a SHA-256; a new one an scrypt derivation in a small
        thread pool (never on the event loop), at most MAX_DERIVING at once (503 beyond).
        Wrong secrets are counted per key id and per client address: past FAILURES within
        FAILURE_WINDOW seconds, either answers 429 + Retry-After without deriving anything."""
        self._refresh()
        names = (f"key:{key_id}", f"addr:{client or '?'}")
        key = self.store.by_id.get(key_id)
        if key is None:
            self.throttle.check(names[1])
            self.throttle.fail(names[1])
            raise _unauthorized(
                "unknown API key id: create one with `courier apikey create`", scheme
            )
        if not key.active:
            raise _unauthorized(f"API key {key_id} was revoked", scheme)
        digest = hashlib.sha256(secret.encode()).digest()
        known = self._verified.get(key_id)
        if known is not None and hmac.compare_digest(known, digest):
            return key
        self.throttle.check(*names)
        if self._deriving >= MAX_DERIVING:
            raise IngestError(
                503,
                "too many API-key secrets being checked at once: retry after the time in "
                "Retry-After (or exchange the key for a token at /api/token once)",
                {"retry-after": "1"},
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(DERIVERS, thread_name_prefix="scrypt")
        import asyncio  # loaded already by the server; not at the top, for the CLI's start

        self._deriving += 1
        try:
            derived = await asyncio.get_running_loop().run_in_executor(
                self._pool, hash_secret, secret, key.salt
            )
        finally:
            self._deriving -= 1
        if not hmac.compare_digest(derived, key.hash):
            self.throttle.fail(*names)
            raise _unauthorized(f"wrong secret for API key {key_id}", scheme)
        self._verified[key_id] = digest
        return key

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    # -- GET /api/token ---------------------------------------------------------------------
    async def exchange(self, scope: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        import jwt  # imported when used: see tokens.create_token

        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
        if authorization[:6].lower() != b"basic ":
            raise _unauthorized(
                "send the API key with HTTP Basic auth: Authorization: Basic base64(key id:secret)",
                "Basic",
            )
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthorized("the Basic credentials are not valid base64", "Basic") from None
        key_id, sep, secret = decoded.partition(":")
        if not sep:
            raise _unauthorized("the Basic credentials must be key id:secret", "Basic")
        key = await self.check_secret(key_id, secret, "Basic", client_address(scope))
        streams = [s for s in key.streams if s in self.keys]
        wanted = query_value(scope, "stream")
        if wanted is not None:
            if wanted not in streams:
                raise IngestError(403, f"API key {key.id} is not scoped to stream {wanted!r}")
            streams = [wanted]
        if not streams:
            raise IngestError(403, f"none of API key {key.id}'s streams is served here")
        first = self.keys[streams[0]]
        if not all(_same_signer(first, self.keys[s]) for s in streams[1:]):
            raise IngestError(
                400,
                f"the streams of API key {key.id} sign tokens with different keys: ask for "
                "one stream's token with ?stream=ID",
            )
        if first.sign_key is None:
            raise IngestError(
                409,
                f"stream {streams[0]!r} has no auth.private_key: tokens can be verified "
                "here but not signed",
            )
        issued = time.time() if now is None else now
        claims = {
            "key": key.id,
            "streams": streams,
            "iat": int(issued),
            "exp": int(issued) + TOKEN_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, first.sign_key, algorithm=first.algorithm)
        return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS}

    # -- ingest requests --------------------------------------------------------------------
    async def authenticate(
        self, stream_id: str, authorization: bytes | None, scope: dict[str, Any]
    ) -> tuple[str | None, str]:
        """(client id, source) for a request carrying an API-key token or the key in headers."""
        id_header, secret_header, client_header = self.headers[stream_id]
        key_id = secret = client = None
        for name, value in scope["headers"]:
            if name == id_header:
                key_id = value
            elif name == secret_header:
                secret = value
            elif name == client_header:
                client = value
        client_id = query_value(scope, "client_id")
        if client_id is None and client is not None:
            client_id = client.decode("latin-1")
        if key_id is not None:
            if secret is None:
                raise _unauthorized(f"missing {secret_header.decode()} header with the key id")
            key = await self.check_secret(
                key_id.decode("latin-1"),
                secret.decode("latin-1"),
                client=client_address(scope),
            )
            if stream_id not in key.streams:
                raise _unauthorized(f"API key {key.id} is not scoped to stream {stream_id!r}")
            return client_id, f"apikey:{key.name}"
        if authorization is None or authorization[:7].lower() != b"bearer ":
            raise _unauthorized(
                "missing credentials: send Authorization: Bearer <token> (with the "
                "X-Amperity-Tenant header for stream tokens), or an API key in the "
                f"{id_header.decode()} and {secret_header.decode()} headers"
            )
        key = self.verify_token(stream_id, authorization[7:].strip())
        return client_id, f"apikey:{key.name}"

    def verify_token(self, stream_id: str, raw: bytes) -> ApiKey:
        import jwt

        self._refresh()
        cached = self._tokens.get(raw)
        if cached is not None and time.time() <= cached[0] + LEEWAY:
            key_id, scoped = cached[1], cached[2]
        else:
            keys = self.keys.get(stream_id)
            if keys is None:
                raise _unauthorized(f"stream {stream_id!r} cannot verify tokens")
            try:
                claims = jwt.decode(
                    raw,
                    keys.verify_key,
                    algorithms=[keys.algorithm],
                    options={"require": ["exp", "key", "streams"]},
                    leeway=LEEWAY,
                )
            except jwt.ExpiredSignatureError:
                raise _unauthorized(
                    "the token has expired: get a new one from /api/token"
                ) from None
            except jwt.PyJWTError as exc:
                raise _unauthorized(f"invalid token: {exc}") from None
            numeric_dates(claims)
            key_id = str(claims["key"])
            listed = claims["streams"]
            scoped = tuple(str(s) for s in listed) if isinstance(listed, list) else ()
            if len(self._tokens) > 8192:
                self._tokens.clear()
            self._tokens[raw] = (float(claims["exp"]), key_id, scoped)
        if stream_id not in scoped:
            raise _unauthorized(f"the token is not scoped to stream {stream_id!r}")
        key = self.store.by_id.get(key_id)
        if key is None or not key.active:
            raise _unauthorized(f"API key {key_id} was revoked or is unknown")
        return key


def envelope(
    records: list[bytes], client_id: str | None, source: str, received_at: float | None = None
) -> list[bytes]:
    """Each NDJSON record wrapped as {"received_at","client_id","source","payload"}."""
    at = datetime.fromtimestamp(time.time() if received_at is None else received_at, UTC)
    head = (
        b'{"received_at":'
        + orjson.dumps(at.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        + b',"client_id":'
        + orjson.dumps(client_id)
        + b',"source":'
        + orjson.dumps(source)
        + b',"payload":'
    )
    return [head + r.rstrip(b"\n") + b"}\n" for r in records]
