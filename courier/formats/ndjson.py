"""NDJSON bad-line finder: only used when the engine's native read fails on malformed input."""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import orjson

from courier.formats.limits import ColumnBudget, duplicate_key, inspect
from courier.plan import BadRecord

RAW_LIMIT = 4096  # characters of a bad line kept in quarantine


def scan_ndjson(
    path: Path, key: str, out_dir: Path, columns: ColumnBudget | None = None
) -> tuple[Path, list[BadRecord], array[int]]:
    """Copy the well-formed lines of `path` to a file in out_dir; return it, the bad lines and
    the line number in `path` of each line of the copy.

    Bad: invalid JSON, a value that is not an object, bytes that are not UTF-8, a truncated
    last line, valid JSON that DuckDB's reader cannot load, and a record whose keys do not
    fit the tag's column budget (formats/limits.py). Blank lines are skipped as the JSON
    reader does.
    """
    bad: list[BadRecord] = []
    numbers = array("q")
    clean = out_dir / f"{len(list(out_dir.iterdir()))}-{Path(path).name}"
    with open(path, "rb") as src, open(clean, "wb") as dst:
        for number, line in enumerate(src, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            value, reason = parse_line(stripped, line.endswith(b"\n"))
            if value is None:
                bad.append(BadRecord(key, number, reason or "not a JSON object", raw(stripped)))
                continue
            problem, keys = inspect(value)
            if problem is None and stripped.count(b'":') != keys:  # spaces, or a duplicate?
                twice = duplicate_key(stripped)
                if twice is not None:
                    problem = f"the key {twice!r} appears twice in one object"
            if problem is not None:
                reason = f"DuckDB cannot load it: {problem}"
                bad.append(BadRecord(key, number, reason, raw(stripped)))
                continue
            too_wide = columns.refuse(value) if columns is not None else None
            if too_wide is not None:
                bad.append(BadRecord(key, number, f"too many keys: {too_wide}", raw(stripped)))
                continue
            dst.write(stripped)
            dst.write(b"\n")
            numbers.append(number)
    return clean, bad, numbers


def parse_line(stripped: bytes, ends_line: bool = True) -> tuple[dict[str, Any] | None, str | None]:
    """A non-blank line as a JSON object, or why it is not one (the reason quarantine shows;
    the Spark engine gives its bad lines the same reasons)."""
    try:
        value = orjson.loads(stripped)
    except orjson.JSONDecodeError as exc:
        reason = not_utf8(stripped) or f"malformed JSON: {exc}"
        if not ends_line:
            reason = f"truncated last line ({reason})"
        return None, reason
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def not_utf8(data: bytes) -> str | None:
    """Why bytes orjson refused are not UTF-8 (a clearer reason than its parse error)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason} at byte {exc.start}"
    return None


def raw(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")[:RAW_LIMIT]
