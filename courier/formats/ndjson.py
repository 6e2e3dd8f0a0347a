"""NDJSON bad-line finder: only used when the engine's native read fails on malformed input."""

from __future__ import annotations

from pathlib import Path

import orjson

from courier.plan import BadRecord

RAW_LIMIT = 4096  # characters of a bad line kept in quarantine


def scan_ndjson(path: Path, key: str, out_dir: Path) -> tuple[Path, list[BadRecord]]:
    """Copy the well-formed lines of `path` to a file in out_dir; return it and the bad lines.

    Bad: invalid JSON, a value that is not an object, bytes that are not UTF-8, a truncated
    last line. Blank lines are skipped as the JSON reader does.
    """
    bad: list[BadRecord] = []
    clean = out_dir / f"{len(list(out_dir.iterdir()))}-{Path(path).name}"
    with open(path, "rb") as src, open(clean, "wb") as dst:
        for number, line in enumerate(src, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError as exc:
                reason = f"malformed JSON: {exc}"
                try:
                    stripped.decode("utf-8")
                except UnicodeDecodeError as uexc:
                    reason = f"not UTF-8: {uexc.reason} at byte {uexc.start}"
                if not line.endswith(b"\n"):
                    reason = f"truncated last line ({reason})"
                bad.append(BadRecord(key, number, reason, raw(stripped)))
                continue
            if not isinstance(value, dict):
                bad.append(
                    BadRecord(
                        key,
                        number,
                        f"expected a JSON object, got {type(value).__name__}",
                        raw(stripped),
                    )
                )
                continue
            dst.write(stripped)
            dst.write(b"\n")
    return clean, bad


def raw(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")[:RAW_LIMIT]
