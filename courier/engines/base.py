"""The query-engine seam (SPEC 8): files of a window + a saved query -> rows for a destination."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from courier.plan import InputFile, InputSummary
from courier.project import SavedQuery


@dataclass(frozen=True)
class Relation:
    """Rows held by an engine, in record order, under a name the destination can read."""

    name: str
    columns: dict[str, str]  # column -> engine type
    rows: int
    file_column: str | None = None  # column naming each row's source file, when known


class QueryEngine(abc.ABC):
    @abc.abstractmethod
    def read_input(
        self,
        tag: str,
        files: list[InputFile],
        fmt: str,
        options: dict[str, object],
        pinned_schema: dict[str, str] | None,
        read_once: bool = False,
    ) -> tuple[Relation, InputSummary]:
        """Read a file tag's files; the tag becomes a view queries can select from.

        read_once: the caller reads the tag through one saved query and nothing else, so the
        engine may stream it from the files into that query instead of holding it (the
        returned relation is then only a name for the tag, not rows to load)."""

    @abc.abstractmethod
    def run_query(self, query: SavedQuery, tags: list[str]) -> Relation:
        """Run a saved query over the registered tags; the result keeps the query's row order."""

    @abc.abstractmethod
    def drop(self, relation: Relation) -> None:
        """Release what a relation holds."""

    def close(self) -> None:  # noqa: B027 - optional: most engines hold nothing more
        """Release what the engine still holds for its tags (e.g. scratch files)."""
