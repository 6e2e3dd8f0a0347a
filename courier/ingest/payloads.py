"""Request bodies -> landed records: JSON as one compact NDJSON line, XML as one CBOR item.

JSON: exactly one value, an object (or, with `batch_arrays`, a non-empty array of objects:
each element is a record, all or none); re-serialised by orjson so the line holds no newline.

XML: parsed with xmltodict's semantics (attributes as '@name', text as '#text') on a
hardened expat: no DOCTYPE at all (so no entity declarations, no external entities, no
billion laughs), no external entity references, nesting bounded by `max_depth`. The tree is
one CBOR data item (RFC 8949), appended to a CBOR sequence (RFC 8742) by the log.

Every problem is an IngestError(400) whose message says what is wrong and what to send.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from xml.parsers import expat

import cbor2
import orjson
import xmltodict

from courier.errors import IngestError
from courier.formats.limits import MAX_DEPTH, record_problem

DEFAULT_MAX_DEPTH = 64
LOADABLE_DEPTH = MAX_DEPTH - 1  # one level for the envelope (`envelope = true`)


def _bad(message: str) -> IngestError:
    return IngestError(400, message)


# -- JSON -------------------------------------------------------------------------------------


def _forbid_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# 20+ digits in a row: maybe an integer beyond 64 bits, which orjson would turn into a float.
# Found by mapping digits to "1" and all else to "0" (C speed), then one substring search.
_DIGITS = bytes(49 if 48 <= i <= 57 else 48 for i in range(256))
_LONG_RUN = b"1" * 20


def parse_json(body: bytes) -> Any:
    """One JSON value; big integers kept exact; IngestError(400) naming the problem."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(_json_problem(str(exc))) from None
    if len(body) >= 20 and body.translate(_DIGITS).find(_LONG_RUN) >= 0:
        # Keep big integers exact: the stdlib parser does (and still refuses NaN/Infinity).
        try:
            value = json.loads(body.decode("utf-8"), parse_constant=_forbid_constant)
        except RecursionError:
            raise _bad(
                f"the payload cannot be loaded into a feed: nested deeper than {LOADABLE_DEPTH} "
                "levels; nothing was landed"
            ) from None
    return value


def check_loadable(record: dict[str, Any]) -> None:
    """Refuse a record the load path could not read (formats/limits.py) with a 400."""
    problem = record_problem(record, LOADABLE_DEPTH)
    if problem is not None:
        raise _bad(f"the payload cannot be loaded into a feed: {problem}; nothing was landed")


def _json_problem(text: str) -> str:
    if "trailing characters" in text or "after document" in text:
        return (
            f"invalid JSON: more than one JSON value ({text}); send one object per request "
            "(NDJSON is not accepted here)"
        )
    if "utf-8" in text.lower() or "str is not valid UTF-8" in text:
        return f"invalid JSON: the body is not valid UTF-8 ({text})"
    return f"invalid JSON: {text}"


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value) + b"\n"
    except TypeError:  # an integer beyond 64 bits, kept by the stdlib fallback
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def json_records(body: bytes, batch_arrays: bool = False) -> list[bytes]:
    """One body -> its NDJSON lines (one, or one per array element with batch_arrays)."""
    if not body.strip():
        raise _bad("empty body: send one JSON object")
    return value_records(parse_json(body), batch_arrays)


def value_records(value: Any, batch_arrays: bool = False) -> list[bytes]:
    """One parsed JSON value -> its NDJSON lines (an object, or an array with batch_arrays)."""
    if type(value) is dict:
        check_loadable(value)
        return [_dumps(value)]
    if type(value) is list:
        if not batch_arrays:
            raise _bad(
                "a JSON array where one object is expected: send one object per request "
                "(or set batch_arrays = true on the stream to land each element as a record)"
            )
        if not value:
            raise _bad("an empty JSON array: nothing to land; send at least one object")
        for i, element in enumerate(value):
            if type(element) is not dict:
                raise _bad(
                    f"element {i} of the array is a {_kind(element)}: every element must be "
                    "a JSON object (nothing was landed)"
                )
            check_loadable(element)
        return [_dumps(v) for v in value]
    raise _bad(f"expected a JSON object, got a {_kind(value)}")


def split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """NDJSON text -> (line number, line) for its non-blank lines."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            yield number, line


# -- XML --------------------------------------------------------------------------------------


class _Forbidden(ValueError):
    pass


def _forbid(what: str) -> Callable[..., Any]:
    def handler(*_args: Any) -> Any:
        raise _Forbidden(what)

    return handler


class _BoundedParser:
    """An expat parser whose element handlers count depth (expat objects cannot be subclassed)."""

    def __init__(self, parser: Any, max_depth: int):
        object.__setattr__(self, "_parser", parser)
        object.__setattr__(self, "_max_depth", max_depth)
        object.__setattr__(self, "_depth", 0)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "StartElementHandler" and value is not None:
            start, limit = value, self._max_depth

            def bounded_start(*args: Any) -> Any:
                depth = self._depth + 1
                if depth > limit:
                    raise _Forbidden(f"elements nested deeper than {limit} levels")
                object.__setattr__(self, "_depth", depth)
                return start(*args)

            value = bounded_start
        elif name == "EndElementHandler" and value is not None:
            end = value

            def bounded_end(*args: Any) -> Any:
                object.__setattr__(self, "_depth", self._depth - 1)
                return end(*args)

            value = bounded_end
        setattr(self._parser, name, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


class HardenedExpat:
    """Stands in for the `expat` module xmltodict.parse takes: parsers refuse any DTD."""

    def __init__(self, max_depth: int = DEFAULT_MAX_DEPTH):
        self.max_depth = max_depth

    def ParserCreate(  # noqa: N802 - the pyexpat module's name
        self, encoding: str | None = None, namespace_separator: str | None = None
    ) -> Any:
        parser = expat.ParserCreate(encoding, namespace_separator)
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = _forbid("a DOCTYPE (DTDs and entities are not accepted)")
        parser.EntityDeclHandler = _forbid("an entity declaration")
        parser.ExternalEntityRefHandler = _forbid("an external entity reference")
        return _BoundedParser(parser, self.max_depth)


def parse_xml(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Well-formed XML -> xmltodict's tree; IngestError(400) otherwise."""
    if not body.strip():
        raise _bad("empty body: send one XML document")
    try:
        tree = xmltodict.parse(body, expat=HardenedExpat(max_depth), disable_entities=True)
    except _Forbidden as exc:
        raise _bad(f"XML refused: {exc}") from None
    except expat.ExpatError as exc:
        raise _bad(f"XML not well formed: {exc}") from None
    except ValueError as exc:  # xmltodict's own entity guard
        raise _bad(f"XML refused: {exc}") from None
    if not isinstance(tree, dict) or not tree:
        raise _bad("XML without a root element")
    check_loadable(tree)
    return tree


def xml_record(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """One XML body -> one CBOR data item."""
    return cbor2.dumps(parse_xml(body, max_depth))


def split_xml(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> list[bytes]:
    """A record file (<records><record/>...</records>) -> one CBOR item per child of the root.

    Each item is the tree the API would store for that child posted alone: {tag: subtree}.
    """
    tree = parse_xml(body, max_depth)
    (root,) = tree.values()
    out: list[bytes] = []
    if isinstance(root, dict):
        for tag, value in root.items():
            if tag.startswith(("@", "#")):
                continue
            for element in value if isinstance(value, list) else [value]:
                out.append(cbor2.dumps({tag: element}))
    if not out:
        raise _bad("the XML root element has no child elements to land as records")
    return out


def records(
    payload: str, body: bytes, batch_arrays: bool = False, max_depth: int = DEFAULT_MAX_DEPTH
) -> list[bytes]:
    """A request body of the stream's payload type -> the records to append."""
    if payload == "json":
        return json_records(body, batch_arrays)
    return [xml_record(body, max_depth)]
