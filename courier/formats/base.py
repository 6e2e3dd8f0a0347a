"""Readers for formats an engine cannot read natively: files -> Arrow record batches.

Each reader decodes in batches (never the whole window as Python objects) and reports
malformed items as BadRecords with their file and item number. NDJSON needs no reader here:
engines read it natively (DuckDB's JSON reader); formats/ndjson.py only finds its bad lines.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from courier.errors import FormatError
from courier.plan import BadRecord, InputFile

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_ROWS = 50_000


class BatchReader(abc.ABC):
    format: str = ""

    @abc.abstractmethod
    def batches(
        self, files: list[InputFile], options: dict[str, Any]
    ) -> Iterator[tuple[pa.RecordBatch | pa.Table | None, list[BadRecord]]]:
        """Yield (batch, bad records) pairs; batches share one schema per file set as far as
        possible (engines insert by name, so missing columns are NULL)."""


READERS = {
    "cbor": ("courier.formats.cbor", "CborReader"),
    "json": ("courier.formats.json_doc", "JsonDocumentReader"),
    "xml": ("courier.formats.xml", "XmlReader"),
}


def get_reader(fmt: str) -> BatchReader:
    if fmt not in READERS:
        raise FormatError(f"format {fmt!r} has no reader; use one of ndjson, {', '.join(READERS)}")
    module_name, class_name = READERS[fmt]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FormatError(f"format {fmt!r} is not available in this build: {exc}") from exc
    return getattr(module, class_name)()  # type: ignore[no-any-return]
