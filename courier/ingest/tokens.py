"""Stream tokens: JWTs with `tenant`, `stream` and `exp` claims, HS256 or RS256 per stream.

Verification pins the stream's one algorithm (so `alg: none` and HS/RS confusion fail), needs
all three claims, and checks them against the stream. A verified token is cached by its exact
text, so a busy client costs one dictionary lookup per request; its expiry is still checked
on every request.

Key material comes from the stream's [auth] (usually `${ENV}` references): `secret` for HS256
(at least 32 bytes), `public_key` (verify) and `private_key` (sign) for RS256, each either PEM
text or the path of a PEM file (relative to the project root).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from courier.config.models import StreamConfig
from courier.errors import ConfigError, IngestError

MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
REQUIRED_CLAIMS = ["exp", "stream", "tenant"]


@dataclass(frozen=True)
class StreamKeys:
    """What signs and verifies one stream's tokens."""

    stream: str
    tenant: str
    algorithm: str
    verify_key: Any
    sign_key: Any | None


def _pem(value: str, root: Path) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.replace("\\n", "\n").encode()
    path = Path(text)
    path = path if path.is_absolute() else root / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"not PEM text and not a readable PEM file ({path}: {exc})") from None


def load_keys(
    stream: StreamConfig, tenant: str, root: Path, location: Path | None = None
) -> StreamKeys:
    """The stream's keys; ConfigError naming the [auth] key when one is missing or unusable."""
    auth = stream.auth
    if auth.algorithm == "HS256":
        if not auth.secret:
            raise ConfigError(
                "auth.secret is not set (is its environment variable exported?); HS256 "
                'needs a secret, e.g. secret = "${COURIER_JWT_SECRET}"',
                location,
                "auth.secret",
            )
        secret = auth.secret.encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"auth.secret is {len(secret)} bytes; HS256 needs at least {MIN_SECRET_BYTES} "
                "(generate one with: python -c 'import secrets; print(secrets.token_hex(32))')",
                location,
                "auth.secret",
            )
        return StreamKeys(stream.id, tenant, "HS256", secret, secret)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private: Any = None
    public: Any = None
    try:
        if auth.private_key:
            private = serialization.load_pem_private_key(_pem(auth.private_key, root), None)
            if not isinstance(private, rsa.RSAPrivateKey):
                raise ValueError("not an RSA private key")
            public = private.public_key()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"auth.private_key: {exc}", location, "auth.private_key") from None
    try:
        if auth.public_key:
            public = serialization.load_pem_public_key(_pem(auth.public_key, root))
            if not isinstance(public, rsa.RSAPublicKey):
                raise ValueError("not an RSA public key")
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"auth.public_key: {exc}", location, "auth.public_key") from None
    if public is None:
        raise ConfigError(
            "auth.public_key is not set (is its environment variable exported?); RS256 needs "
            "the public key (PEM text or file) to verify, e.g. "
            'public_key = "${COURIER_JWT_PUBLIC_KEY}"',
            location,
            "auth.public_key",
        )
    if public.key_size < MIN_RSA_BITS:
        raise ConfigError(
            f"the RSA key has {public.key_size} bits; use at least {MIN_RSA_BITS}",
            location,
            "auth.public_key",
        )
    return StreamKeys(stream.id, tenant, "RS256", public, private)


def create_token(keys: StreamKeys, expires_at: datetime, now: datetime | None = None) -> str:
    """A signed token for the stream; ConfigError when only the verifying key is configured."""
    import jwt  # here, not at the top: jwt pulls in ~80 ms of imports every command would pay

    if keys.sign_key is None:
        raise ConfigError(
            f"stream {keys.stream!r} uses RS256 and no auth.private_key is set: tokens can be "
            "verified here but not signed; set private_key (PEM text or file) to create them",
            key="auth.private_key",
        )
    issued = now or datetime.now(UTC)
    if expires_at <= issued:
        raise ValueError(f"expiry {expires_at.isoformat()} is not in the future")
    claims = {
        "tenant": keys.tenant,
        "stream": keys.stream,
        "iat": int(issued.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, keys.sign_key, algorithm=keys.algorithm)


def _unauthorized(message: str) -> IngestError:
    return IngestError(401, message, {"www-authenticate": 'Bearer realm="courier"'})


TIME_CLAIMS = ("exp", "nbf", "iat")


def numeric_dates(claims: dict[str, Any]) -> None:
    """RFC 7519 times (exp, nbf, iat) are NumericDate: a JSON number, never a string (PyJWT
    reads "9999999999" as a number) nor a boolean; IngestError(401) naming the claim."""
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _unauthorized(
                f"invalid token: the {name!r} claim must be a number (seconds since the epoch), "
                f"not {type(value).__name__}"
            )


REVOKED = ".courier/revoked-tokens.json"


class Denylist:
    """Revoked stream tokens by their `jti`, one small JSON file (`courier token revoke`),
    re-read when it changes (one os.stat per check), so a revoked token answers 401 on its
    next request in every server process. Bounded: an entry is dropped once its token has
    expired (it could not be used anyway)."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.revoked: dict[str, dict[str, Any]] = {}  # jti -> {stream, exp, revoked_at}

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self.revoked = None, {}
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        try:
            doc = json.loads(self.path.read_text())
            revoked = {str(e["jti"]): e for e in doc.get("tokens", [])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the revoked-token list is unreadable ({exc}): restore it, or remove it and "
                "revoke the tokens again with `courier token revoke`",
                self.path,
            ) from None
        self._stamp, self.revoked = stamp, revoked

    def is_revoked(self, jti: str | None) -> bool:
        if jti is None:
            return False
        self.refresh()
        return jti in self.revoked

    def revoke(self, jti: str, stream: str, exp: float, now: float | None = None) -> None:
        at = time.time() if now is None else now
        self.refresh()
        kept = [e for e in self.revoked.values() if float(e.get("exp", 0)) + 60 > at]
        kept = [e for e in kept if e["jti"] != jti]
        kept.append({"jti": jti, "stream": stream, "exp": exp, "revoked_at": int(at)})
        from courier.ingest.wal import write_json_atomic

        write_json_atomic(self.path, {"tokens": kept})
        self._stamp = None


def token_claims(keys: StreamKeys, token: str) -> dict[str, Any]:
    """The claims of a token this stream signed (expired or not); ConfigError otherwise."""
    import jwt

    try:
        return dict(
            jwt.decode(
                token.strip(),
                keys.verify_key,
                algorithms=[keys.algorithm],
                options={"verify_exp": False},
            )
        )
    except jwt.PyJWTError as exc:
        raise ConfigError(f"not a token of stream {keys.stream!r}: {exc}") from None


class TokenVerifier:
    """Verifies bearer tokens for the streams it holds keys for."""

    def __init__(
        self,
        keys: dict[str, StreamKeys],
        leeway: float = 30.0,
        cache_size: int = 8192,
        denylist: Denylist | None = None,
    ):
        self.keys = keys
        self.leeway = leeway
        self.cache_size = cache_size
        self.denylist = denylist
        self._cache: dict[str, dict[bytes, tuple[float, str | None]]] = {}  # -> (exp, jti)

    def verify(self, stream_id: str, token: bytes | str) -> None:
        """Raise IngestError(401) unless `token` is valid now for `stream_id` and its tenant."""
        import jwt

        raw = token.strip() if isinstance(token, bytes) else token.strip().encode("latin-1")
        cache = self._cache.get(stream_id)
        if cache is None:
            cache = self._cache[stream_id] = {}
        cached = cache.get(raw)
        if cached is not None:
            exp, jti = cached
            if time.time() > exp + self.leeway:
                del cache[raw]
                raise _unauthorized("the token has expired: create a new one")
            if self.denylist is not None and self.denylist.is_revoked(jti):
                raise _unauthorized("the token was revoked: create a new one")
            return
        keys = self.keys[stream_id]
        try:
            claims = jwt.decode(
                raw,
                keys.verify_key,
                algorithms=[keys.algorithm],
                options={"require": REQUIRED_CLAIMS},
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired: create a new one") from None
        except jwt.InvalidAlgorithmError:
            raise _unauthorized(
                f"the token's algorithm is not allowed: stream {stream_id!r} accepts "
                f"{keys.algorithm} only"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        numeric_dates(claims)
        if claims.get("stream") != stream_id:
            raise _unauthorized(f"the token is for another stream, not {stream_id!r}")
        if claims.get("tenant") != keys.tenant:
            raise _unauthorized("the token is for another tenant")
        jti = claims.get("jti")
        jti = str(jti) if jti is not None else None
        if self.denylist is not None and self.denylist.is_revoked(jti):
            raise _unauthorized("the token was revoked: create a new one")
        if len(cache) >= self.cache_size:
            cache.clear()
        cache[raw] = (float(claims["exp"]), jti)
