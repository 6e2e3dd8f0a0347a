"""XML reader: one XML document per file, read as the tree xmltodict gives (elements as maps,
repeated elements as lists, attributes as "@name", text next to children as "#text").

With options.record_path (e.g. "records.record") the elements found there are the rows; with
options.force_list the named elements are lists even when they occur once, so a query can
unnest them whatever their count. The ingest API lands XML payloads as CBOR items holding the
same tree, and the CBOR reader applies the same options, so both give the same rows.

The parser is hardened (parse_xml, also for the ingest side and query tests): entity
declarations are refused (no entity expansion bombs, no external entities), so are a DOCTYPE
naming an external DTD and references to undefined entities; nothing is ever fetched; nesting
is bounded by options.max_depth and a document by options.max_document_bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from xml.parsers import expat

import xmltodict

from courier.formats.arrow_tree import Item, TreeReader, whole_document
from courier.formats.options import DEFAULT_MAX_DEPTH, TreeOptions
from courier.plan import BadRecord, InputFile

RAW_LIMIT = 4096


class XmlError(ValueError):
    """A document that is not well-formed or not allowed; line is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(message)


def parse_xml(
    data: bytes | str,
    *,
    force_list: Iterable[str] = (),
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """The xmltodict tree of one document, parsed safely; raises XmlError."""
    keys = tuple(force_list)
    try:
        return xmltodict.parse(
            data,
            expat=_HardenedExpat(max_depth),
            disable_entities=True,
            force_list=keys or None,
        )
    except expat.ExpatError as exc:
        message = expat.errors.messages.get(exc.code, str(exc)) if exc.code else str(exc)
        raise XmlError(
            f"not well-formed XML at line {exc.lineno}, column {exc.offset + 1}: {message}",
            exc.lineno,
        ) from exc
    except _Refused as exc:
        raise XmlError(str(exc), exc.line) from exc
    except ValueError as exc:  # xmltodict's disable_entities
        raise XmlError(
            f"XML entity declarations are not allowed ({exc}): entity expansion and external "
            "entities are disabled"
        ) from exc


class _Refused(Exception):
    def __init__(self, message: str, line: int | None):
        self.line = line
        super().__init__(message)


class _HardenedExpat:
    """Stands in for the expat module xmltodict uses: its parsers count element depth and
    refuse external entity references."""

    def __init__(self, max_depth: int):
        self.max_depth = max_depth

    def ParserCreate(  # noqa: N802 - the expat module's name
        self, encoding: str | None = None, namespace_separator: str | None = None
    ) -> _DepthLimitedParser:
        parser = expat.ParserCreate(encoding, namespace_separator)
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        return _DepthLimitedParser(parser, self.max_depth)


class _DepthLimitedParser:
    def __init__(self, parser: Any, max_depth: int):
        object.__setattr__(self, "_parser", parser)
        object.__setattr__(self, "_depth", 0)
        object.__setattr__(self, "_max_depth", max_depth)

        def refuse_external(*_args: Any) -> int:
            raise _Refused("external entity references are not allowed", parser.CurrentLineNumber)

        def refuse_external_dtd(
            name: str, system_id: str | None, public_id: str | None, *_: Any
        ) -> None:
            if system_id or public_id:
                raise _Refused(
                    f"a DOCTYPE naming an external DTD ({system_id or public_id}) is not allowed",
                    parser.CurrentLineNumber,
                )

        def refuse_skipped(name: str, _is_parameter: bool) -> None:
            raise _Refused(f"undefined entity &{name};", parser.CurrentLineNumber)

        parser.ExternalEntityRefHandler = refuse_external
        parser.StartDoctypeDeclHandler = refuse_external_dtd
        parser.SkippedEntityHandler = refuse_skipped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "StartElementHandler":
            value = self._start(value)
        elif name == "EndElementHandler":
            value = self._end(value)
        setattr(self._parser, name, value)

    def _start(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def start(*args: Any) -> Any:
            depth = self._depth + 1
            if depth > self._max_depth:
                raise _Refused(
                    f"XML nested deeper than {self._max_depth} elements "
                    "(raise options.max_depth if this is expected)",
                    self._parser.CurrentLineNumber,
                )
            object.__setattr__(self, "_depth", depth)
            return handler(*args)

        return start

    def _end(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def end(*args: Any) -> Any:
            object.__setattr__(self, "_depth", self._depth - 1)
            return handler(*args)

        return end


class XmlReader(TreeReader):
    format = "xml"

    def items(self, file: InputFile, options: TreeOptions) -> Iterator[Item | BadRecord]:
        data = whole_document(file, options, "XML")
        if not isinstance(data, bytes):
            if data is not None:
                yield data
            return  # too large, or an empty file: no records
        try:
            tree = parse_xml(data, force_list=options.force_list, max_depth=options.max_depth)
        except XmlError as exc:
            text = data.decode("utf-8", errors="backslashreplace")[:RAW_LIMIT]
            yield BadRecord(file.key, exc.line, str(exc), text)
            return
        yield 1, tree
