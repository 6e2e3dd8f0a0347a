"""JSON document reader: one JSON document per file — an object (one record) or a top-level
array whose elements are the records (item numbers count the elements from 1).

A document is parsed whole (orjson), so a file larger than options.max_document_bytes is one
bad record rather than a memory blow-up: land big data as NDJSON instead. options.record_path
picks the records inside each document; options.force_list makes the named keys lists.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from courier.formats.arrow_tree import Item, TreeReader, force_lists, whole_document
from courier.formats.ndjson import not_utf8, raw
from courier.formats.options import TreeOptions
from courier.plan import BadRecord, InputFile


class JsonDocumentReader(TreeReader):
    format = "json"

    def items(self, file: InputFile, options: TreeOptions) -> Iterator[Item | BadRecord]:
        data = whole_document(
            file, options, "JSON", '; land large data as NDJSON (format = "ndjson")'
        )
        if not isinstance(data, bytes):
            if data is not None:
                yield data
            return  # too large, or an empty file: no records
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            malformed = f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            yield BadRecord(file.key, exc.lineno, not_utf8(data) or malformed, raw(data))
            return
        del data
        if options.force_list:
            force_lists(document, options.force_list)
        if isinstance(document, list):
            yield from enumerate(document, start=1)
        else:
            yield 1, document
