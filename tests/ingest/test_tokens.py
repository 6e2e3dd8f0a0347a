"""Stream tokens: signing, pinned verification, claims, key loading."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from courier.config.models import StreamConfig
from courier.errors import ConfigError, IngestError
from courier.ingest.tokens import TokenVerifier, create_token, load_keys
from tests.ingest.helpers import SECRET, rsa_pems, token, unsigned_token

NOW = datetime.now(UTC)


def hs_stream(sid: str = "events", secret: str | None = SECRET) -> StreamConfig:
    return StreamConfig.model_validate({"id": sid, "auth": {"secret": secret}})


def rs_stream(public: str | None, private: str | None = None) -> StreamConfig:
    auth = {"algorithm": "RS256", "public_key": public, "private_key": private}
    return StreamConfig.model_validate({"id": "signed", "auth": auth})


def verifier(*streams: StreamConfig) -> TokenVerifier:
    return TokenVerifier({s.id: load_keys(s, "acme", Path(".")) for s in streams})


def unauthorized(v: TokenVerifier, stream: str, tok: str) -> str:
    with pytest.raises(IngestError) as info:
        v.verify(stream, tok)
    assert info.value.status == 401
    assert info.value.headers.get("www-authenticate")
    return str(info.value)


def test_hs256_round_trip_and_claims() -> None:
    keys = load_keys(hs_stream(), "acme", Path("."))
    tok = create_token(keys, NOW + timedelta(days=3), NOW)
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    assert claims["stream"] == "events" and claims["tenant"] == "acme"
    assert claims["exp"] == int((NOW + timedelta(days=3)).timestamp())
    v = verifier(hs_stream())
    v.verify("events", tok)
    v.verify("events", tok.encode())  # cached path, bytes as the server passes them
    v.verify("events", tok)


def test_rejections() -> None:
    v = verifier(hs_stream(), hs_stream("other"))
    assert "expired" in unauthorized(v, "events", token("events", days=-1))
    assert "another stream" in unauthorized(v, "events", token("other"))
    assert "another tenant" in unauthorized(v, "events", token("events", tenant="globex"))
    assert "'exp'" in unauthorized(v, "events", token("events", drop=("exp",)))
    assert "'stream'" in unauthorized(v, "events", token("events", drop=("stream",)))
    assert "invalid token" in unauthorized(v, "events", token("events", secret="x" * 40))
    assert "invalid token" in unauthorized(v, "events", "not-a-jwt")
    assert unauthorized(v, "events", unsigned_token("events"))
    # the same text as a valid token, one character changed in the signature
    good = token("events")
    assert unauthorized(v, "events", good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1])


def test_cached_token_still_expires() -> None:
    v = verifier(hs_stream())
    v.leeway = 0
    soon = token("events", exp=int(datetime.now(UTC).timestamp()) + 1)
    v.verify("events", soon)
    import time

    time.sleep(2.1)
    assert "expired" in unauthorized(v, "events", soon)


def test_rs256_pinned_no_hs_confusion(tmp_path: Path) -> None:
    private, public = rsa_pems()
    stream = rs_stream(public, private)
    keys = load_keys(stream, "acme", tmp_path)
    tok = create_token(keys, NOW + timedelta(days=1), NOW)
    assert jwt.get_unverified_header(tok)["alg"] == "RS256"
    v = TokenVerifier({"signed": keys})
    v.verify("signed", tok)
    # an HS256 token whose "secret" is the public key PEM: the classic confusion attack
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    exp = int((NOW + timedelta(days=1)).timestamp())
    body = jwt.utils.base64url_encode(
        json.dumps({"tenant": "acme", "stream": "signed", "exp": exp}).encode()
    )
    signing_input = header + b"." + body
    sig = hmac.new(public.encode(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + jwt.utils.base64url_encode(sig)).decode()
    assert "algorithm is not allowed" in unauthorized(v, "signed", forged)
    # keys from files, relative to the project root; verify-only cannot sign
    (tmp_path / "pub.pem").write_text(public)
    verify_only = load_keys(rs_stream("pub.pem"), "acme", tmp_path)
    TokenVerifier({"signed": verify_only}).verify("signed", tok)
    with pytest.raises(ConfigError, match="private_key"):
        create_token(verify_only, NOW + timedelta(days=1), NOW)


def test_key_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="auth.secret is not set"):
        load_keys(hs_stream(secret=None), "acme", tmp_path)
    with pytest.raises(ConfigError, match="at least 32"):
        load_keys(hs_stream(secret="short"), "acme", tmp_path)
    with pytest.raises(ConfigError, match="auth.public_key is not set"):
        load_keys(rs_stream(None), "acme", tmp_path)
    with pytest.raises(ConfigError, match="auth.public_key"):
        load_keys(rs_stream("missing.pem"), "acme", tmp_path)
    with pytest.raises(ConfigError, match="auth.public_key"):
        load_keys(
            rs_stream("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----"),
            "acme",
            tmp_path,
        )
