"""`make bench-ingest`: the ingest API under load, fsync on, on this machine's cores.

    python -m bench.ingest

Starts `courier serve --workers N` (a subprocess, fsync on, local storage) on a fresh
project with one JSON stream, warms it up, then drives it from a separate load-generator
process (bench/loadgen.py: raw asyncio connections, one request in flight each,
unique ids) with 1 KB JSON payloads. Then stops the server gracefully (SIGTERM: commit,
seal, upload) and checks what landed against what was acknowledged: every id that got a
202 is in a part file exactly once, and the count of landed records equals the count of
202s.

Then the websocket route (GET /stream/v0/ws/bench) on the same server: one connection and
16 connections, each keeping BENCH_INGEST_WINDOW (256) messages in flight, acks only after
the fsync; printed against the HTTP rate. Their acked ids are checked with the rest.

Environment: BENCH_INGEST_SECONDS (default 15), BENCH_INGEST_CONNECTIONS (64),
BENCH_INGEST_WORKERS (2), BENCH_INGEST_SIZE (1024 bytes), BENCH_DIR (bench/data).
Targets (SPEC 7): at least 10,000 payloads/s with p99 under 50 ms and no acknowledged
payload lost. The exit status is 0 even when a target is missed: this is a report.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from courier.processes import start_serve

REPO = Path(__file__).resolve().parents[1]
TARGET_RATE = 10_000
TARGET_P99_MS = 50.0


def make_project(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    (root / "config" / "streams").mkdir(parents=True)
    (root / "config" / "courier.toml").write_text(
        "[ingest]\nfsync = true\nroll_seconds = 5\nwal_max_bytes = 8589934592\n"
        "max_connections_per_client = 1000\n"  # the load generator is one address
    )
    (root / "config" / "streams" / "bench.toml").write_text(
        'payload = "json"\nrate_limit = 1000000\n\n[auth]\nsecret = "${COURIER_JWT_SECRET}"\n'
    )


def load(port: int, token: str, seconds: float, connections: int, size: int, prefix: str,
         acked: Path | None, websocket: bool = False) -> dict[str, Any]:  # fmt: skip
    url = (
        f"ws://127.0.0.1:{port}/stream/v0/ws/bench"
        if websocket
        else f"http://127.0.0.1:{port}/stream/v0/data/bench"
    )
    cmd = [
        sys.executable, "-m", "bench.loadgen", "--url", url, "--token", token,
        "--connections", str(connections), "--duration", str(seconds), "--size", str(size),
        "--prefix", prefix, "--window", os.environ.get("BENCH_INGEST_WINDOW", "256"),
    ]  # fmt: skip
    if acked is not None:
        cmd += ["--acked", str(acked)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def landed_ids(root: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted((root / ".courier" / "landing" / "bench").rglob("part-*.ndjson")):
        with open(path, "rb") as fh:
            for line in fh:
                # {"id":"...": the id is the first key of every payload
                ids.append(line[7 : line.index(b'"', 7)].decode())
    return ids


def main() -> None:
    seconds = float(os.environ.get("BENCH_INGEST_SECONDS", "15"))
    connections = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "64"))
    workers = int(os.environ.get("BENCH_INGEST_WORKERS", "2"))
    size = int(os.environ.get("BENCH_INGEST_SIZE", "1024"))
    base = Path(os.environ.get("BENCH_DIR", REPO / "bench" / "data"))
    root = base / "ingest-project"
    make_project(root)
    env = {**os.environ, "COURIER_JWT_SECRET": secrets.token_hex(32)}
    os.environ.update(env)
    token = subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(root), "token", "create",
         "--stream", "bench", "--days", "1"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.strip()  # fmt: skip
    server = start_serve(root, root / "serve.log", env, workers=workers, timeout=60)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        print(
            f"ingest bench: courier serve --workers {workers} (uvicorn, httptools, uvloop), "
            f"fsync on, {os.cpu_count()} cores; load generator: {connections} connections, "
            f"{size}-byte JSON payloads, {seconds:g} s (after a 3 s warm-up)",
            flush=True,
        )
        warm = load(port, token, 3, connections, size, "w", None)
        acked_file = root / "acked.txt"
        result = load(port, token, seconds, connections, size, "m", acked_file)
        ws_results = {
            n: load(port, token, seconds, n, size, f"ws{n}", root / f"acked-ws{n}.txt", True)
            for n in (1, 16)
        }
    finally:
        code = server.stop(timeout=120)
    acked = set(acked_file.read_text().split())
    for n in ws_results:
        acked |= set((root / f"acked-ws{n}.txt").read_text().split())
    ids = landed_ids(root)
    counts = Counter(ids)
    twice = sum(1 for n in counts.values() if n > 1)
    lost = len(acked - counts.keys())
    accepted = (
        warm["accepted"] + result["accepted"] + sum(r["accepted"] for r in ws_results.values())
    )
    lat = result["latency_ms"]
    rate = result["payloads_per_s"]
    other = {k: v for k, v in result["statuses"].items() if k != "202"}
    print(
        f"  accepted {result['accepted']} payloads in {result['seconds']} s: "
        f"{rate:,.0f} payloads/s; latency p50 {lat['p50']} ms, p90 {lat['p90']} ms, "
        f"p99 {lat['p99']} ms, max {lat['max']} ms"
    )
    if other or result["errors"]:
        print(f"  other answers: {other}; errors: {result['errors']}")
    for n, ws in ws_results.items():
        wl = ws["latency_ms"]
        print(
            f"  websocket x{n}: acked {ws['accepted']} in {ws['seconds']} s: "
            f"{ws['payloads_per_s']:,.0f} payloads/s ({ws['payloads_per_s'] / rate:.2f}x HTTP); "
            f"send-to-ack p50 {wl['p50']} ms, p99 {wl['p99']} ms"
            + (f"; errors {ws['errors']}" if ws["errors"] else "")
        )
    print(
        f"  landed {len(ids)} records; 202s + acks {accepted} (warm-up {warm['accepted']}); "
        f"acknowledged but missing {lost}; landed twice {twice}; server exit code {code}"
    )
    checks = [
        (f">= {TARGET_RATE:,} payloads/s", rate >= TARGET_RATE),
        (f"p99 < {TARGET_P99_MS:g} ms", lat["p99"] < TARGET_P99_MS),
        ("landed == 202s, none lost, none twice", len(ids) == accepted and not lost and not twice),
    ]
    for name, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()
