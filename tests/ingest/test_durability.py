"""Durability against the real server: kill -9 under load, storage outages, a full log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import httpx
import pytest

from bench.loadgen import payload
from tests.ingest.helpers import (
    ADMIN_HEADERS,
    ADMIN_SETTING,
    Server,
    environment,
    headers,
    landed_json,
    make_project,
    part_files,
    token,
    wait_until,
    wal_segments,
)
from tests.servers import MOTO_CREDENTIALS, free_port, moto_command, stop_process, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 600


def loadgen(
    server: Server, acked: Path, seconds: float, connections: int = 16
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "bench.loadgen",
        "--url", f"{server.url}/stream/v0/data/events", "--token", token("events", days=1),
        "--connections", str(connections), "--duration", str(seconds), "--size", str(SIZE),
        "--prefix", "k", "--acked", str(acked),
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment()
    )


def check_exactly_once(root: Path, acked: set[str]) -> list[str]:
    records = landed_json(root, "events")
    landed = [r["id"] for r in records]
    twice = [i for i, n in Counter(landed).items() if n > 1]
    assert not twice, f"landed more than once: {twice[:5]}"
    missing = acked - set(landed)
    assert not missing, f"{len(missing)} acknowledged payloads lost, e.g. {sorted(missing)[:5]}"
    for record in records:  # content, not only ids
        assert record == json.loads(payload(record["id"], SIZE))
    return landed


def test_kill_9_under_load_loses_nothing_acknowledged(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = make_project(
        tmp_path / "p", "[ingest]\nroll_seconds = 0.5\n", {"events": 'payload = "json"\n'}
    )
    port = free_port()
    first = Server(root, port=port, workers=2)
    first.start()
    acked = tmp_path / "acked.txt"
    gen = loadgen(first, acked, seconds=7)
    request.addfinalizer(gen.kill)
    time.sleep(2.5)
    first.kill()  # kill -9 mid-load, both workers, no goodbye
    orphaned = wal_segments(root)
    time.sleep(0.5)
    second = Server(root, port=port, workers=2).start()  # the load generator reconnects
    out, err = gen.communicate(timeout=60)
    assert gen.returncode == 0, err
    summary = json.loads(out)
    # on a busy machine the restart can outlast the load: the new server takes one more
    after = httpx.post(
        f"{second.url}/stream/v0/data/events",
        content=payload("k-after", SIZE),
        headers=headers("events"),
    )
    assert after.status_code == 202
    assert second.stop() == 0
    acknowledged = set(acked.read_text().split())
    assert len(acknowledged) == summary["accepted"] > 200, summary
    acknowledged.add("k-after")
    assert summary["errors"], f"the kill should have cut connections: {summary}"
    landed = check_exactly_once(root, acknowledged)
    assert len(landed) >= len(acknowledged)  # extra ones were written, never acknowledged
    assert not wal_segments(root) and not any((root / ".courier/wal").iterdir())
    writers = {p.name.rsplit("-", 1)[0] for p in part_files(root)}
    assert len(writers) >= 2, writers  # writers before the kill and after it
    assert orphaned  # the kill left segments behind; the restarted server landed them


def test_storage_down_202_continue_then_503_when_the_log_is_full(tmp_path: Path) -> None:
    settings = "[ingest]\nroll_seconds = 0.2\nwal_max_bytes = 65536\n" + ADMIN_SETTING
    root = make_project(tmp_path / "p", settings, {"events": 'payload = "json"\n'})
    blocker = root / ".courier" / "landing"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the landing folder belongs: storage is down")
    server = Server(root).start()
    accepted: list[str] = []
    refused = None
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(200):
            ident = f"k-down-{i:05d}"
            r = client.post(
                "/stream/v0/data/events", content=payload(ident, 1000), headers=headers("events")
            )
            if r.status_code == 503:
                refused = r
                break
            assert r.status_code == 202, r.text
            accepted.append(ident)
        assert refused is not None, "the log never filled up"
        assert int(refused.headers["retry-after"]) >= 1 and "full" in refused.json()["error"]
        assert len(accepted) >= 40  # the log's room (64 KB) was used while storage was down
        assert (
            client.get("/healthz", headers=ADMIN_HEADERS).status_code == 503
        )  # shedding load: the log is full
        wait_until(
            lambda: client.get("/healthz", headers=ADMIN_HEADERS).json()["uploads"]["last_error"],
            10,
            "upload failures",
        )
        assert not part_files(root)
        blocker.unlink()  # storage is back
        wait_until(
            lambda: len(landed_json(root, "events")) == len(accepted), 45, "the backlog to land"
        )
        # a part is visible a moment before its segment leaves the log (and frees its room)
        wait_until(
            lambda: client.get("/healthz", headers=ADMIN_HEADERS).json()["uploads"]["backlog"] == 0,
            10,
            "the roller",
        )
        r = client.post(
            "/stream/v0/data/events", content=payload("k-after", 1000), headers=headers("events")
        )
        assert r.status_code == 202, r.text
    assert server.stop() == 0
    landed = [r["id"] for r in landed_json(root, "events")]
    assert sorted(landed) == sorted([*accepted, "k-after"])


def test_s3_outage_while_serving(tmp_path: Path, aws_env: None) -> None:
    port = free_port()
    moto_log = tmp_path / "moto.log"

    def start_moto() -> subprocess.Popen[bytes]:
        with open(moto_log, "ab") as out:
            proc = subprocess.Popen(moto_command(port), stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(port, proc=proc)
        s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", **_creds()
        )
        s3.create_bucket(Bucket="lake")
        return proc

    settings = f"""
    [storages.lake]
    type = "s3"
    bucket = "lake"
    prefix = "landing"
    endpoint_url = "http://127.0.0.1:{port}"
    region = "us-east-1"

    [ingest]
    storage = "lake"
    roll_seconds = 0.2
    {ADMIN_SETTING}"""
    root = make_project(tmp_path / "p", settings, {"events": 'payload = "json"\n'})
    moto = start_moto()
    server = Server(root).start()  # aws_env's credentials reach the server through its env
    s3 = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", **_creds()
    )

    def landed_ids() -> list[str]:
        out = []
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket="lake", Prefix="landing/events/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    body = s3.get_object(Bucket="lake", Key=obj["Key"])["Body"].read()
                    out.extend(json.loads(line)["id"] for line in body.splitlines())
        except Exception:
            return []
        return out

    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:

            def send(prefix: str) -> list[str]:
                sent = []
                for i in range(10):
                    ident = f"k-{prefix}-{i}"
                    r = client.post(
                        "/stream/v0/data/events",
                        content=payload(ident, 300),
                        headers=headers("events"),
                    )
                    assert r.status_code == 202, r.text
                    sent.append(ident)
                return sent

            before = send("up")
            wait_until(lambda: sorted(landed_ids()) == sorted(before), 30, "landing in S3")
            # and the roller done with them: a part whose PUT landed but whose check (HEAD)
            # the outage cut is uploaded again later, into the new, empty moto
            wait_until(
                lambda: (
                    client.get("/healthz", headers=ADMIN_HEADERS).json()["uploads"]["backlog"] == 0
                ),
                30,
                "the roller to finish",
            )
            stop_process(moto)  # S3 goes away
            during = send("down")  # still accepted: the log has room
            wait_until(
                lambda: client.get("/healthz", headers=ADMIN_HEADERS).json()["uploads"][
                    "failing_since"
                ],
                30,
                "the outage to show",
            )
            moto = start_moto()  # back (empty: moto keeps nothing)
            try:
                wait_until(  # the roller retries at least every 10 s; a busy CI is slow
                    lambda: sorted(landed_ids()) == sorted(during), 120, "the backlog to reach S3"
                )
            except AssertionError as exc:  # say why: what landed, what the server saw
                raise AssertionError(
                    f"{exc}\nlanded: {sorted(landed_ids())}\n"
                    f"uploads: {client.get('/healthz', headers=ADMIN_HEADERS).json().get('uploads')}\n"
                    f"server log:\n{server.log.read_text(errors='replace')[-3000:]}\n"
                    f"moto log:\n{moto_log.read_text(errors='replace')[-2000:]}"
                ) from None
        assert server.stop() == 0
        assert sorted(landed_ids()) == sorted(during)
        assert not wal_segments(root)
    finally:
        server.kill()
        stop_process(moto)


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
