"""config/sources/NAME.toml: what to fetch, where it lands, how progress is remembered."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from courier.config.loader import ConfigErrorGroup, load_model
from courier.config.models import STREAM_ID_RULE, named, parse_duration_seconds
from courier.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from courier.project import Project

SOURCE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SourceName = Annotated[str, named("source name", SOURCE_NAME, STREAM_ID_RULE)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CursorConfig(_Strict):
    """The query parameter a poll sends to resume, filled from the last record or the body."""

    param: str
    field: str | None = None  # JSON pointer into the last record of a page
    response: str | None = None  # JSON pointer into the response body
    initial: str | None = None  # value sent before anything was persisted

    @model_validator(mode="after")
    def _one_origin(self) -> CursorConfig:
        if (self.field is None) == (self.response is None):
            raise ValueError("set exactly one of cursor.field and cursor.response")
        return self


class PaginationConfig(_Strict):
    next_link: str | None = None  # JSON pointer to the next page's URL in the body
    page_param: str | None = None  # or a page number query parameter (1, 2, ...)

    @model_validator(mode="after")
    def _one_kind(self) -> PaginationConfig:
        if (self.next_link is None) == (self.page_param is None):
            raise ValueError("set exactly one of pagination.next_link and pagination.page_param")
        return self


class SourceConfig(_Strict):
    name: SourceName
    type: Literal["http_poll", "file_pull"]
    stream: str
    interval: str = "5m"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    max_backoff: float = Field(default=60.0, gt=0)  # seconds; a longer Retry-After is capped
    # http_poll
    url: str | None = None
    records: str = ""  # JSON pointer to the records array; "" = the body itself
    cursor: CursorConfig | None = None
    pagination: PaginationConfig | None = None
    dedupe_key: str | None = None  # JSON pointer into a record
    max_pages: int = Field(default=10000, ge=1)  # per poll, a guard against endless paging
    # file_pull
    list_url: str | None = None  # answers the names: a JSON array, or `files` pointer into it
    files: str = ""
    get_url: str | None = None  # with {name}
    delete_url: str | None = None  # with {name}
    num_files: int = Field(default=10, ge=1, le=10000)
    num_files_param: str = "numFiles"

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        if parse_duration_seconds(v) <= 0:
            raise ValueError(f"interval must be longer than zero, got {v!r}")
        return v

    @field_validator("records", "dedupe_key", "files")
    @classmethod
    def _pointer(cls, v: str | None) -> str | None:
        if v and not v.startswith("/"):
            raise ValueError(f"{v!r} is not a JSON pointer: start it with '/' (or use \"\")")
        return v

    @model_validator(mode="after")
    def _kind(self) -> SourceConfig:
        if self.type == "http_poll" and not self.url:
            raise ValueError("an http_poll source needs url")
        if self.type == "file_pull":
            missing = [k for k in ("list_url", "get_url", "delete_url") if not getattr(self, k)]
            if missing:
                raise ValueError(f"a file_pull source needs {', '.join(missing)}")
            for k in ("get_url", "delete_url"):
                if "{name}" not in getattr(self, k):
                    raise ValueError(f"{k} must contain {{name}} (the file name)")
        return self

    @property
    def interval_seconds(self) -> float:
        return parse_duration_seconds(self.interval)


def source_files(root: Path) -> list[Path]:
    folder = root / "config" / "sources"
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def load_sources(root: Path, streams: dict[str, str] | None = None) -> dict[str, SourceConfig]:
    """Every config/sources/*.toml; ConfigErrors naming file and key for each problem."""
    sources: dict[str, SourceConfig] = {}
    errors: list[ConfigError] = []
    for path in source_files(root):
        try:
            source = load_model(SourceConfig, path, {"name": path.stem})
        except ConfigErrorGroup as exc:
            errors.extend(exc.errors)
            continue
        except ConfigError as exc:
            errors.append(exc)
            continue
        if streams is not None and source.stream not in streams:
            known = ", ".join(sorted(streams)) or "none"
            errors.append(
                ConfigError(
                    f"stream {source.stream!r} is not defined (known: {known}); add "
                    f"config/streams/{source.stream}.toml",
                    path,
                    "stream",
                )
            )
            continue
        if streams is not None and streams[source.stream] != "json":
            errors.append(
                ConfigError(
                    f"stream {source.stream!r} takes {streams[source.stream]} payloads; sources "
                    "land JSON records (NDJSON parts): point the source at a json stream",
                    path,
                    "stream",
                )
            )
            continue
        sources[source.name] = source
    if errors:
        raise ConfigErrors(errors)
    return sources


def check_sources(project: Project) -> list[ConfigError]:
    """The CHECKS hook of courier.project: config/sources/*.toml parse and name real streams."""
    try:
        load_sources(project.root, {k: v.payload for k, v in project.streams.items()})
    except ConfigErrors as exc:
        return list(exc.errors)
    return []
