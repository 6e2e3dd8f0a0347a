"""The query-engine seam (SPEC 8): a window's files + a saved query -> rows as Arrow.

An engine gets the window's files as storage URIs plus the storage they live in (it stages or
reads them itself), reads a file tag into rows queries can select by the tag's name, runs saved
queries in its own dialect, and hands a destination the rows as Arrow batches carrying the
record order (file rank, line) that last-record-wins needs.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from courier.plan import InputSummary

if TYPE_CHECKING:
    import pyarrow as pa

    from courier.project import SavedQuery
    from courier.storage.base import StorageBackend

# Record-order columns on every Arrow stream an engine hands over (not in Rows.schema):
RANK_COLUMN = "_courier_rank"  # int32: the file's WindowFile.rank; 0 for a query's rows
LINE_COLUMN = "_courier_line"  # int64: 1-based record number in that file (or in the result)


@dataclass(frozen=True)
class WindowFile:
    """One file of the window, as an engine receives it."""

    uri: str  # storage URI: file:///abs/path, s3://bucket/key, az://container/key
    key: str  # the storage key (what quarantine and the file ledger name)
    size: int
    rank: int  # 0-based position in the window's record order (partition, key)


class Rows(abc.ABC):
    """Rows an engine holds, in record order: a read file tag or a query's result."""

    @property
    @abc.abstractmethod
    def schema(self) -> pa.Schema:
        """The rows' columns as Arrow types (without the record-order columns)."""

    @property
    @abc.abstractmethod
    def count(self) -> int:
        """How many rows."""

    @property
    def files(self) -> list[WindowFile] | None:
        """The files RANK_COLUMN points into; None for a query's result."""
        return None

    @abc.abstractmethod
    def to_arrow(self) -> pa.RecordBatchReader:
        """The rows with RANK_COLUMN and LINE_COLUMN appended, ordered by (rank, line)."""

    def native(self, kind: str) -> Any:
        """The rows as a backend's own object (e.g. "duckdb": a relation on the engine's
        connection) for a same-backend fast path; None when the engine has no such form."""
        return None


class QueryEngine(abc.ABC):
    """Reads file tags and runs saved queries. `dialect` picks the query text it runs."""

    dialect: ClassVar[str] = ""

    @abc.abstractmethod
    def read_input(
        self,
        tag: str,
        files: list[WindowFile],
        storage: StorageBackend,
        fmt: str,
        options: dict[str, Any],
        pinned_schema: dict[str, str] | None,
        read_once: bool = False,
    ) -> tuple[Rows, InputSummary]:
        """Read a file tag's files (bad records go to the summary); queries then select the
        tag by its name. read_once: only one saved query reads the tag, so the engine may
        stream the files into that query (the returned Rows are then not to be loaded)."""

    @abc.abstractmethod
    def run_query(self, query: SavedQuery, tags: list[str], fields: Collection[str] = ()) -> Rows:
        """Run query.text(self.dialect) over the read tags; rows keep the query's order.
        `fields`: the columns the receiving feed declares (a nested input field that only
        their expressions name may be missing from every record: it reads as NULL).
        Raise QueryError naming the query file and line when it fails."""

    @abc.abstractmethod
    def drop(self, rows: Rows) -> None:
        """Release what rows hold (idempotent)."""

    def close(self) -> None:  # noqa: B027 - optional: most engines hold nothing more
        """Release everything the engine still holds (read tags, scratch files)."""


class ArrowRows(Rows):
    """Rows held as an Arrow table (in record order): what a Python-side engine or a test
    hands a destination. `files`: the files RANK_COLUMN points into, when read from files."""

    def __init__(
        self,
        table: pa.Table,
        ranks: list[int] | None = None,
        lines: list[int] | None = None,
        files: list[WindowFile] | None = None,
    ):
        import pyarrow as pa

        self.table = table
        ranks = ranks if ranks is not None else [0] * table.num_rows
        if lines is None:  # numbered within each file, in the given order
            seen: dict[int, int] = {}
            lines = []
            for r in ranks:
                seen[r] = seen.get(r, 0) + 1
                lines.append(seen[r])
        self._ranks = pa.array(ranks, pa.int32())
        self._lines = pa.array(lines, pa.int64())
        self._files = files

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    @property
    def count(self) -> int:
        return int(self.table.num_rows)

    @property
    def files(self) -> list[WindowFile] | None:
        return self._files

    def to_arrow(self) -> pa.RecordBatchReader:
        import pyarrow as pa

        full = self.table.append_column(RANK_COLUMN, self._ranks).append_column(
            LINE_COLUMN, self._lines
        )
        full = full.sort_by([(RANK_COLUMN, "ascending"), (LINE_COLUMN, "ascending")])
        return pa.RecordBatchReader.from_batches(full.schema, full.to_batches())
