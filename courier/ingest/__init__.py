"""The write side of streams (SPEC 5): the ingest API, the write-ahead log and the roller.

    payloads.py   validate a request body; JSON -> one NDJSON line, XML -> one CBOR item
    tokens.py     JWT create/verify per stream, algorithms pinned
    ratelimit.py  per-stream token bucket
    wal.py        write-ahead log: segments of CRC-framed batches, group-committed fsync
    roller.py     background uploads of sealed segments as part files (deterministic names)
    service.py    IngestService: streams + tokens + limiter + WAL + roller (API and `land`)
    app.py        the ASGI app (`courier serve`)
    checks.py     `courier validate` checks for config/streams/*.toml

Nothing here is imported by the core at import time except checks.py (light).
"""
