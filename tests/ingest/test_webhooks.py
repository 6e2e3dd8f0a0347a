"""Signed webhooks: the GitHub and Stripe presets with fixtures computed the way those services
document their signatures, a custom scheme, and `courier serve` answering on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from courier.config.models import WebhookConfig
from courier.errors import IngestError
from courier.ingest.webhooks import WebhookVerifier
from tests.ingest.helpers import Server, environment, landed_json, make_project, wait_until

GITHUB_SECRET = "gh-secret-for-tests"
STRIPE_SECRET = "whsec_test_0123456789"
CUSTOM_SECRET = "custom-secret"

STREAMS = {
    "github": 'payload = "json"\n[webhook]\npreset = "github"\nsecret = "${T_GITHUB_SECRET}"\n',
    "stripe": (
        'payload = "json"\nenvelope = true\n[webhook]\npreset = "stripe"\n'
        'secret = "${T_STRIPE_SECRET}"\n'
    ),
    "custom": (
        'payload = "json"\n[webhook]\nsecret = "${T_CUSTOM_SECRET}"\nheader = "X-Sig"\n'
        'algorithm = "sha1"\nencoding = "base64"\nprefix = "v0="\n'
        'timestamp_header = "X-Sig-Timestamp"\ntolerance = 60\n'
        'signed_payload = "v0:{timestamp}:{body}"\n'
    ),
    "plain": 'payload = "json"\n',
}


def github_signature(secret: str, body: bytes) -> str:
    """GitHub: X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(secret, raw body)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def stripe_header(secret: str, body: bytes, t: int) -> str:
    """Stripe: Stripe-Signature = "t=<t>,v1=" + hex HMAC-SHA256(secret, f"{t}." + raw body)."""
    signed = f"{t}.".encode() + body
    return f"t={t},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


# -- the schemes, in process --------------------------------------------------------------------


def test_github_documented_example() -> None:
    # The example in GitHub's "Validating webhook deliveries" documentation.
    verifier = WebhookVerifier.from_config(
        "s", WebhookConfig(preset="github", secret="It's a Secret to Everybody")
    )
    expected = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    verifier.verify([(b"x-hub-signature-256", expected)], b"Hello, World!", time.time())
    with pytest.raises(IngestError) as caught:
        verifier.verify([(b"x-hub-signature-256", expected)], b"Hello, World?", time.time())
    assert caught.value.status == 401


def test_stripe_scheme_tolerance_and_rolled_secrets() -> None:
    verifier = WebhookVerifier.from_config(
        "s", WebhookConfig(preset="stripe", secret=STRIPE_SECRET)
    )
    body = b'{"id":"evt_1","type":"charge.succeeded"}'
    now = 1_700_000_000
    good = stripe_header(STRIPE_SECRET, body, now).encode()
    verifier.verify([(b"stripe-signature", good)], body, now + 299)
    # two v1 signatures while a secret rolls (the old one first): accepted
    rolled = stripe_header("whsec_old", body, now) + "," + good.decode().split(",")[1]
    verifier.verify([(b"stripe-signature", rolled.encode())], body, now)
    for header, at in (
        (good, now + 301),  # replayed after the 300 s tolerance
        (good, now - 301),  # from the future
        (stripe_header("whsec_other", body, now).encode(), now),
        (b"v1=" + good.split(b"v1=")[1], now),  # no t=
        (good.replace(f"t={now}".encode(), f"t={now + 1}".encode()), now),  # t changed
    ):
        with pytest.raises(IngestError) as caught:
            verifier.verify([(b"stripe-signature", header)], body, at)
        assert caught.value.status == 401


def test_config_errors_name_the_key() -> None:
    from courier.errors import ConfigError

    with pytest.raises(ConfigError, match="webhook.secret"):
        WebhookVerifier.from_config("s", WebhookConfig(preset="github"))
    with pytest.raises(ConfigError, match="webhook.header"):
        WebhookVerifier.from_config("s", WebhookConfig(secret="x"))
    with pytest.raises(ConfigError, match="timestamp_header"):
        WebhookVerifier.from_config(
            "s", WebhookConfig(secret="x", header="X-S", signed_payload="{timestamp}.{body}")
        )


# -- against courier serve ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_project(tmp_path_factory.mktemp("webhooks") / "project", streams=STREAMS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T_GITHUB_SECRET", GITHUB_SECRET)
        mp.setenv("T_STRIPE_SECRET", STRIPE_SECRET)
        mp.setenv("T_CUSTOM_SECRET", CUSTOM_SECRET)
        srv = Server(root).start()
        try:
            yield srv
        finally:
            assert srv.stop() == 0


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def hook(client: httpx.Client, stream: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(
        f"/webhook/v0/{stream}",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )


def everything(root: Path) -> str:
    return "\n".join(json.dumps(r) for s in STREAMS for r in landed_json(root, s))


@pytest.mark.integration
def test_github_preset(server: Server, client: httpx.Client) -> None:
    body = b'{"action": "opened", "id": "gh-1", "repository": {"full_name": "o/r"}}'
    sig = github_signature(GITHUB_SECRET, body)
    assert hook(client, "github", body, **{"X-Hub-Signature-256": sig}).status_code == 202
    bad = b'{"action": "opened", "id": "gh-bad"}'
    for headers in (
        {"X-Hub-Signature-256": github_signature("wrong", bad)},
        {"X-Hub-Signature-256": sig},  # another body's signature
        {"X-Hub-Signature-256": sig.removeprefix("sha256=")},  # no prefix
        {"X-Hub-Signature": "sha1=" + hmac.new(GITHUB_SECRET.encode(), bad, "sha1").hexdigest()},
        {},
    ):
        r = hook(client, "github", bad, **headers)
        assert r.status_code == 401, r.text
        assert "nothing was landed" in r.json()["error"]
    r = hook(client, "github", bad)
    assert "missing X-Hub-Signature-256" in r.json()["error"]
    wait_until(lambda: any(r.get("id") == "gh-1" for r in landed_json(server.root, "github")))
    assert landed_json(server.root, "github") == [json.loads(body)]


@pytest.mark.integration
def test_stripe_preset_with_envelope_and_replay(server: Server, client: httpx.Client) -> None:
    body = b'{"id": "evt_1", "object": "event", "type": "charge.succeeded"}'
    now = int(time.time())
    r = hook(
        client, "stripe", body, **{"Stripe-Signature": stripe_header(STRIPE_SECRET, body, now)}
    )
    assert r.status_code == 202, r.text
    old = b'{"id": "evt_old", "object": "event"}'
    replay = stripe_header(STRIPE_SECRET, old, now - 400)  # correctly signed, 400 s ago
    r = hook(client, "stripe", old, **{"Stripe-Signature": replay})
    assert r.status_code == 401 and "tolerance" in r.json()["error"]
    wrong = stripe_header("whsec_wrong", old, now)
    assert hook(client, "stripe", old, **{"Stripe-Signature": wrong}).status_code == 401
    assert hook(client, "stripe", old).status_code == 401
    wait_until(lambda: landed_json(server.root, "stripe") != [], what="landing")
    [landed] = landed_json(server.root, "stripe")
    assert landed["payload"] == json.loads(body) and landed["source"] == "webhook:stripe"
    assert landed["client_id"] is None and landed["received_at"].endswith("Z")
    assert "evt_old" not in everything(server.root)


@pytest.mark.integration
def test_custom_scheme_sha1_base64_timestamp(server: Server, client: httpx.Client) -> None:
    body = b'{"id": "c-1"}'

    def sign(ts: int, payload: bytes) -> str:
        mac = hmac.new(CUSTOM_SECRET.encode(), f"v0:{ts}:".encode() + payload, hashlib.sha1)
        return "v0=" + base64.b64encode(mac.digest()).decode()

    now = int(time.time())
    ok = {"X-Sig": sign(now, body), "X-Sig-Timestamp": str(now)}
    assert hook(client, "custom", body, **ok).status_code == 202
    late = b'{"id": "c-late"}'
    r = hook(
        client,
        "custom",
        late,
        **{"X-Sig": sign(now - 120, late), "X-Sig-Timestamp": str(now - 120)},
    )
    assert r.status_code == 401 and "tolerance of 60 s" in r.json()["error"]
    r = hook(client, "custom", late, **{"X-Sig": sign(now, late)})
    assert r.status_code == 401 and "missing timestamp" in r.json()["error"]
    r = hook(client, "custom", late, **{"X-Sig": sign(now, late), "X-Sig-Timestamp": str(now + 1)})
    assert r.status_code == 401
    wait_until(lambda: landed_json(server.root, "custom") != [], what="landing")
    assert landed_json(server.root, "custom") == [{"id": "c-1"}]
    assert "c-late" not in everything(server.root)


@pytest.mark.integration
def test_streams_without_webhook_and_wrong_methods(server: Server, client: httpx.Client) -> None:
    r = hook(client, "plain", b"{}")
    assert r.status_code == 404 and "[webhook]" in r.json()["error"]
    assert hook(client, "nope", b"{}").status_code == 404
    assert client.get("/webhook/v0/github").status_code == 405
    body = b"not json"
    r = hook(
        client, "github", body, **{"X-Hub-Signature-256": github_signature(GITHUB_SECRET, body)}
    )
    assert r.status_code == 400  # signed, but not a payload: nothing landed


def test_serve_refuses_to_start_without_the_webhook_secret(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p",
        streams={"hooks": '[webhook]\npreset = "github"\nsecret = "${UNSET_HOOK_SECRET_XYZ}"\n'},
    )
    done = subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(root), "serve", "--port", "9"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    assert done.returncode == 1
    assert "UNSET_HOOK_SECRET_XYZ" in done.stderr and "webhook.secret" in done.stderr


def test_validate_names_webhook_and_header_problems(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p",
        streams={
            "literal": '[webhook]\npreset = "github"\nsecret = "in-the-repo"\n',
            "noheader": '[webhook]\nsecret = "${HOOK_SECRET}"\n',
            "badname": '[api_keys]\nid_header = "X App Id"\n',
            "xmlenv": 'payload = "xml"\nenvelope = true\n',
            "fine": '[webhook]\npreset = "stripe"\nsecret = "${UNSET_BUT_FINE}"\n',
        },
    )
    done = subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(root), "validate"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, done.stderr
    text = "\n".join(problems)
    assert "literal.toml [webhook.secret]: webhook.secret is written in the file" in text
    assert "noheader.toml [webhook.header]" in text
    assert "badname.toml [api_keys.id_header]: 'X App Id' is not an HTTP header name" in text
    assert "xmlenv.toml [envelope]" in text
