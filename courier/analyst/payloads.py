"""Payloads as clients send them (inline test inputs, local sample files) -> records.

Small inputs only (query tests, samples): the run path reads landed files through the engine.
JSON: one document or one payload per line; a top-level array is split into its elements, as a
stream with `batch_arrays = true` lands it. XML: parsed by the XML reader's hardened parser (no
entity declarations, no external references, bounded depth) into the xmltodict tree the ingest
API lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from courier.errors import FormatError

SAMPLE_FORMATS = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".xml": "xml",
    ".cbor": "cbor",
}


def format_of(path: Path) -> str:
    fmt = SAMPLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FormatError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            f"use one of {', '.join(SAMPLE_FORMATS)}"
        )
    return fmt


def json_records(text: str, source: str) -> list[Any]:
    """Records of a JSON text: one document, or one payload per line (NDJSON)."""
    records: list[Any] = []
    for line, value in _documents(text, source):
        records.extend(_split(value, source, line))
    return records


def _documents(text: str, source: str) -> list[tuple[int | None, Any]]:
    """The JSON documents of a text with their line (None: the whole text is one)."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        return [(None, orjson.loads(stripped))]
    except orjson.JSONDecodeError:
        pass
    docs: list[tuple[int | None, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            docs.append((number, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise FormatError(f"{source} line {number}: malformed JSON: {exc}") from exc
    return docs


def _split(value: Any, source: str, line: int | None) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            where = f" line {line}" if line else ""
            raise FormatError(
                f"{source}{where}: expected a JSON object (or an array of objects), "
                f"got {type(item).__name__}"
            )
    return items


def json_documents(text: str, source: str) -> list[Any]:
    """JSON documents as sent: the whole text, or one per line; arrays are kept whole."""
    return [value for _, value in _documents(text, source)]


def xml_tree(text: str, source: str) -> Any:
    """One XML document as the tree the ingest API lands (the XML reader's safe parser)."""
    from courier.formats.xml import XmlError, parse_xml

    try:
        return parse_xml(text.strip().encode("utf-8"))
    except XmlError as exc:
        raise FormatError(f"{source}: {exc}") from exc


def to_ndjson(records: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def to_json(document: Any) -> bytes:
    return orjson.dumps(document)
