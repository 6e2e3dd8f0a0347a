"""An engine session of its own for the analyst commands: an in-memory DuckDB engine, so a
preview, a query test or a draft never writes feed tables or run state.

This is the one analyst module that talks to the engine; the SQL it sends is DuckDB's (saved
queries are DuckDB SQL), through the engine module, which alone imports duckdb.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courier.analyst import payloads
from courier.analyst.schema import TypeNode, parse_schema
from courier.plan import InputFile, InputSummary
from courier.project import SavedQuery

if TYPE_CHECKING:
    from courier.engines.duckdb import DuckDBRows as Relation


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class TagInput:
    """What a file tag holds in the session."""

    tag: str
    relation: Relation
    summary: InputSummary
    fmt: str
    paths: list[Path]  # local files read (for raw scans of NDJSON)

    @property
    def schema(self) -> TypeNode:
        return parse_schema(self.summary.schema)


class Workbench:
    def __init__(self) -> None:
        from courier.engines.duckdb import DuckDBEngine, connect

        self.con: Any = connect(":memory:")
        self.engine = DuckDBEngine(self.con)
        self.tmp = Path(tempfile.mkdtemp(prefix="courier-analyst-"))
        self.inputs: dict[str, TagInput] = {}

    # -- inputs -----------------------------------------------------------------------------
    def read_files(
        self, tag: str, files: list[InputFile], fmt: str, options: dict[str, Any] | None = None
    ) -> TagInput:
        """Read landed or sample files through the engine, as a run reads them."""
        relation, summary = self.engine.read_local(tag, files, fmt, dict(options or {}), None)
        entry = TagInput(tag, relation, summary, fmt, [Path(f.path) for f in files])
        self.inputs[tag] = entry
        return entry

    def read_records(self, tag: str, records: list[Any], name: str = "records") -> TagInput:
        """Records given as Python values (test inputs, converted samples), read as NDJSON."""
        path = self._tmp_file(tag, name, ".ndjson")
        path.write_bytes(payloads.to_ndjson(records))
        return self.read_files(tag, [InputFile(name, path, path.stat().st_size)], "ndjson")

    def read_payloads(
        self,
        tag: str,
        kind: str,
        value: str | list[str],
        source: str,
        fmt: str = "ndjson",
        options: dict[str, Any] | None = None,
    ) -> TagInput:
        """Payloads as clients send them (kind json or xml), landed as the courier's format
        (fmt) would hold them and read with the courier's options."""
        options = dict(options or {})
        if kind == "xml":
            docs = [value] if isinstance(value, str) else list(value)
            if fmt == "cbor":  # the ingest API lands each XML payload as one CBOR item
                trees = [
                    payloads.xml_tree(doc, f"{source} document {i}")
                    for i, doc in enumerate(docs, 1)
                ]
                return self._read_cbor(tag, trees, options)
            files = []
            for i, doc in enumerate(docs, start=1):
                path = self._tmp_file(tag, f"document-{i}", ".xml")
                path.write_text(doc.strip(), encoding="utf-8")
                files.append(InputFile(f"{source} document {i}", path, path.stat().st_size))
            return self.read_files(tag, files, "xml", options)
        assert isinstance(value, str)
        if fmt == "json":  # JSON documents, one per file
            files = []
            for i, doc in enumerate(payloads.json_documents(value, source), start=1):
                path = self._tmp_file(tag, f"document-{i}", ".json")
                path.write_bytes(payloads.to_json(doc))
                files.append(InputFile(f"{source} document {i}", path, path.stat().st_size))
            return self.read_files(tag, files, "json", options)
        records = payloads.json_records(value, source)
        if fmt == "cbor":
            return self._read_cbor(tag, records, options)
        return self.read_records(tag, records, "inline")

    def read_sample(
        self,
        tag: str,
        path: Path,
        fmt: str = "ndjson",
        options: dict[str, Any] | None = None,
    ) -> TagInput:
        """A local sample file for a courier reading fmt: NDJSON, CBOR and JSON/XML documents
        through the engine's readers; JSON payloads for NDJSON couriers split as landed."""
        sample_fmt = payloads.format_of(path)
        key = str(path)
        if sample_fmt == "xml" and fmt == "cbor":
            text = path.read_text(encoding="utf-8")
            return self.read_payloads(tag, "xml", text, key, "cbor", options)
        if sample_fmt == "json" and fmt in ("ndjson", "cbor"):
            text = path.read_text(encoding="utf-8")
            return self.read_payloads(tag, "json", text, key, fmt, options)
        if sample_fmt == "ndjson" and fmt == "cbor":
            return self.read_payloads(
                tag, "json", path.read_text(encoding="utf-8"), key, fmt, options
            )
        file = InputFile(key, path, path.stat().st_size)
        return self.read_files(tag, [file], sample_fmt, options)

    def _read_cbor(self, tag: str, items: list[Any], options: dict[str, Any]) -> TagInput:
        import cbor2

        path = self._tmp_file(tag, "items", ".cbor")
        path.write_bytes(b"".join(cbor2.dumps(item) for item in items))
        return self.read_files(
            tag, [InputFile("inline", path, path.stat().st_size)], "cbor", options
        )

    def _tmp_file(self, tag: str, name: str, suffix: str) -> Path:
        folder = self.tmp / f"{len(list(self.tmp.iterdir())):03d}-{tag}"
        folder.mkdir()
        return folder / f"{name}{suffix}"

    # -- queries ----------------------------------------------------------------------------
    def run_query(self, query: SavedQuery, tags: list[str] | None = None) -> Relation:
        return self.engine.run_query(query, tags if tags is not None else list(self.inputs))

    def columns(self, relation: Relation) -> dict[str, str]:
        return {c: t for c, t in relation.columns.items() if c != relation.file_column}

    def fetch(
        self, relation: Relation, limit: int | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        cols = list(self.columns(relation))
        select = ", ".join(quote(c) for c in cols) or "*"
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self.con.execute(f"SELECT {select} FROM {quote(relation.name)}{tail}").fetchall()
        return cols, rows

    def export_ndjson(self, entry: TagInput) -> Path:
        """A tag's records as DuckDB read them, written as NDJSON (for another engine)."""
        path = self._tmp_file(entry.tag, "records", ".ndjson")
        self.con.execute(
            f"COPY (SELECT * EXCLUDE ({quote(entry.relation.file_column)}) "
            f"FROM {quote(entry.relation.name)}) TO {literal(str(path))} (FORMAT json)"
            if entry.relation.file_column
            else f"COPY {quote(entry.relation.name)} TO {literal(str(path))} (FORMAT json)"
        )
        return path

    def sql(self, text: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.con.execute(text, params or []).fetchall()
        return rows

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.engine.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
