"""Ingest test plumbing: a project with streams, a real `courier serve`, landed records."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers import ServerError, free_port, wait_for_port

SECRET = "test-secret-0123456789abcdef-0123456789"  # 39 bytes: long enough for HS256
ADMIN = "admin-token-for-tests-only"
TENANT = "acme"
ADMIN_SETTING = 'admin_token = "${COURIER_ADMIN_TOKEN}"\n'  # a line for [ingest]
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}  # /healthz shows its detail to the admin

SETTINGS = """
[ingest]
roll_seconds = 0.3
body_timeout = 2
admin_token = "${COURIER_ADMIN_TOKEN}"
"""

STREAMS = {
    "events": 'payload = "json"\n',
    "batch": 'payload = "json"\nbatch_arrays = true\n',
    "pos": 'payload = "xml"\n',
    "limited": 'payload = "json"\nrate_limit = 2\n',
    "globex": 'payload = "json"\ntenant = "globex"\n',
}
HS_AUTH = '\n[auth]\nalgorithm = "HS256"\nsecret = "${COURIER_JWT_SECRET}"\n'
RS_AUTH = (
    '\n[auth]\nalgorithm = "RS256"\npublic_key = "${COURIER_JWT_PUBLIC_KEY}"\n'
    'private_key = "${COURIER_JWT_PRIVATE_KEY}"\n'
)

_RSA: rsa.RSAPrivateKey | None = None


def rsa_key() -> rsa.RSAPrivateKey:
    global _RSA
    if _RSA is None:
        _RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA


def rsa_pems() -> tuple[str, str]:
    key = rsa_key()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def environment() -> dict[str, str]:
    private, public = rsa_pems()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURIER_")}
    env.update(
        COURIER_JWT_SECRET=SECRET,
        COURIER_ADMIN_TOKEN=ADMIN,
        COURIER_JWT_PRIVATE_KEY=private,
        COURIER_JWT_PUBLIC_KEY=public,
    )
    return env


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def make_project(
    root: Path, settings: str = SETTINGS, streams: dict[str, str] | None = None
) -> Path:
    """A project with the test streams (HS256), plus `signed` (RS256)."""
    write(root, "config/courier.toml", settings)
    for sid, text in (streams if streams is not None else STREAMS).items():
        write(root, f"config/streams/{sid}.toml", text + HS_AUTH)
    if streams is None:
        write(root, "config/streams/signed.toml", 'payload = "json"\n' + RS_AUTH)
    return root


def token(
    stream: str,
    tenant: str = TENANT,
    days: float = 1,
    secret: str | bytes = SECRET,
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    body: dict[str, Any] = {
        "tenant": tenant,
        "stream": stream,
        "exp": int((datetime.now(UTC) + timedelta(days=days)).timestamp()),
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None and k not in drop}
    return jwt.encode(body, secret, algorithm=algorithm)


def unsigned_token(stream: str, tenant: str = TENANT) -> str:
    """alg: none — must never be accepted."""

    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    exp = int((datetime.now(UTC) + timedelta(days=1)).timestamp())
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'tenant': tenant, 'stream': stream, 'exp': exp})}."


def headers(stream: str, content_type: str = "application/json", **kw: Any) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token(stream, **kw)}",
        "X-Amperity-Tenant": kw.get("tenant", TENANT),
        "Content-Type": content_type,
    }


# -- the server -------------------------------------------------------------------------------


RUNNING: list[Server] = []  # every server started; tests/ingest/conftest.py kills leftovers


class Server:
    def __init__(
        self,
        root: Path,
        port: int | None = None,
        workers: int = 1,
        limits: dict[int, tuple[int, int]] | None = None,
    ):
        self.root = root
        self.port = port or free_port()
        self.workers = workers
        self.limits = limits or {}  # resource.RLIMIT_* -> (soft, hard) for the server process
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        cmd = [
            sys.executable, "-m", "courier", "--project", str(self.root), "serve",
            "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment(),
                start_new_session=True,  # its own process group: kill -9 takes the workers too
                preexec_fn=self._set_limits if self.limits else None,
            )
        RUNNING.append(self)
        try:
            wait_for_port(self.port, proc=self.proc, timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            raise ServerError("healthz never answered 200")
        except ServerError as exc:
            self.kill()
            raise ServerError(f"{exc}\n{self.log.read_text(errors='replace')[-3000:]}") from None

    def _set_limits(self) -> None:
        import resource

        for which, values in self.limits.items():
            resource.setrlimit(which, values)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM: graceful (commit, seal, upload); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """kill -9 the server and its workers (its process group), no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def health(self) -> dict[str, Any]:
        """/healthz as the admin sees it (with detail when the project has an admin token)."""
        return httpx.get(self.url + "/healthz", headers=ADMIN_HEADERS, timeout=5).json()


@contextmanager
def serving(root: Path, **kw: Any) -> Iterator[Server]:
    server = Server(root, **kw).start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            try:
                server.stop(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


# -- what landed ------------------------------------------------------------------------------


def landing(root: Path) -> Path:
    return root / ".courier" / "landing"


def part_files(root: Path, stream: str | None = None) -> list[Path]:
    base = landing(root) / stream if stream else landing(root)
    if not base.exists():
        return []
    return sorted(p for p in base.rglob("part-*") if p.is_file())


def landed_json(root: Path, stream: str) -> list[dict[str, Any]]:
    out = []
    for path in part_files(root, stream):
        assert path.suffix == ".ndjson"
        for line in path.read_bytes().splitlines():
            out.append(json.loads(line))
    return out


def landed_cbor(root: Path, stream: str) -> list[Any]:
    out = []
    for path in part_files(root, stream):
        assert path.suffix == ".cbor"
        data = path.read_bytes()
        import io

        fh = io.BytesIO(data)
        while fh.tell() < len(data):
            out.append(cbor2.load(fh))
    return out


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wal_segments(root: Path) -> list[Path]:
    wal = root / ".courier" / "wal"
    return sorted(wal.rglob("*.wal")) if wal.exists() else []
