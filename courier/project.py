"""A courier project: settings, couriers, feeds, queries, streams and groups, loaded once."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from courier.config.loader import ConfigErrorGroup, load_model, read_document
from courier.config.models import (
    CourierConfig,
    FeedConfig,
    GroupConfig,
    Settings,
    StreamConfig,
    check_identifier,
)
from courier.errors import ConfigError, ConfigErrors, not_found
from courier.patterns import FilePattern

SETTINGS_FILE = Path("config") / "courier.toml"
QUERY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SavedQuery:
    """queries/NAME.sql (DuckDB SQL) and its optional twins in other dialects
    (queries/NAME.spark.sql: dialects["spark"])."""

    name: str
    path: Path
    sql: str  # the DuckDB text
    dialects: dict[str, str] = field(default_factory=dict, compare=False)  # other -> text

    def text(self, dialect: str = "duckdb") -> str | None:
        """The query in `dialect`, or None when it has no twin in that dialect."""
        if dialect in ("", "duckdb"):
            return self.sql
        return self.dialects.get(dialect)

    def path_for(self, dialect: str = "duckdb") -> Path:
        """Where the query's text in `dialect` lives (queries/NAME.DIALECT.sql for twins)."""
        if dialect in ("", "duckdb"):
            return self.path
        return self.path.with_name(f"{self.name}.{dialect}.sql")


@dataclass
class Project:
    root: Path
    settings: Settings
    couriers: dict[str, CourierConfig] = field(default_factory=dict)
    feeds: dict[str, FeedConfig] = field(default_factory=dict)
    queries: dict[str, SavedQuery] = field(default_factory=dict)
    streams: dict[str, StreamConfig] = field(default_factory=dict)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # "courier:NAME" -> its file

    # -- paths ------------------------------------------------------------------------------
    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    @property
    def time_zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.project.time_zone)

    def courier(self, name: str) -> CourierConfig:
        if name not in self.couriers:
            raise not_found("courier", name, self.couriers, f"add config/couriers/{name}.toml")
        return self.couriers[name]

    def feed(self, feed_id: str) -> FeedConfig:
        if feed_id not in self.feeds:
            raise not_found("feed", feed_id, self.feeds, f"add feeds/{feed_id}.toml")
        return self.feeds[feed_id]

    def raise_errors(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)


def find_project_root(explicit: str | Path | None = None, cwd: Path | None = None) -> Path:
    """--project DIR, else COURIER_PROJECT, else the nearest parent holding config/courier.toml."""
    chosen = explicit or os.environ.get("COURIER_PROJECT")
    if chosen:
        root = Path(chosen).resolve()
        if not (root / SETTINGS_FILE).is_file():
            raise ConfigError(
                f"{root} is not a courier project: {SETTINGS_FILE} is missing. "
                "Create it (an empty file gives the embedded defaults)."
            )
        return root
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder
    raise ConfigError(
        f"no courier project found from {here} upwards (looked for {SETTINGS_FILE}). "
        "Pass --project DIR or set COURIER_PROJECT."
    )


# Extra cross-checks registered by other modules (scheduler groups, streams).


def read_project(
    root: str | Path | None = None,
    *,
    strict: bool = True,
    checks: Callable[[Project], list[ConfigError]] | None = None,
) -> Project:
    """Load every file of the project and cross-check the files; `checks` adds checks that
    need a subsystem (courier.validate.load_project passes them all). strict: raise
    ConfigErrors when anything is wrong."""
    project_root = find_project_root(root)
    errors: list[ConfigError] = []
    settings_path = project_root / SETTINGS_FILE
    try:
        settings = load_model(Settings, settings_path)
    except ConfigErrorGroup as group:
        errors.extend(group.errors)
        settings = Settings()
    except ConfigError as exc:
        errors.append(exc)
        settings = Settings()
    project = Project(root=project_root, settings=settings, errors=errors)
    try:
        ZoneInfo(settings.project.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(
            ConfigError(
                f"unknown time zone {settings.project.time_zone!r}: use an IANA name like "
                "'UTC' or 'Europe/Berlin'",
                settings_path,
                "project.time_zone",
            )
        )

    def load_folder(folder: str, model: type[Any], key: str, suffixes: tuple[str, ...]) -> dict:
        out: dict[str, Any] = {}
        base = project_root / folder
        if not base.is_dir():
            return out
        for path in sorted(p for p in base.iterdir() if p.suffix in suffixes and p.is_file()):
            name = path.stem
            if name in out:
                errors.append(ConfigError(f"{key} {name!r} is defined twice", path))
                continue
            try:
                doc_name = read_document(path).get(key)
                if doc_name is not None and doc_name != name:
                    raise ConfigError(
                        f"{key} = {doc_name!r} differs from the file name {name!r}: "
                        "the file name is the name; remove the key or rename the file",
                        path,
                        key,
                    )
                out[name] = load_model(model, path, {key: name})
                project.files[f"{folder}:{name}"] = path
            except ConfigErrorGroup as group:
                errors.extend(group.errors)
                invalid.add((key_kind[folder], name))
            except ConfigError as exc:
                errors.append(exc)
                invalid.add((key_kind[folder], name))
        return out

    # a file that failed to load is reported once, by its own errors: references to it are
    # not also reported as "X is not defined; add X.toml"
    invalid: set[tuple[str, str]] = set()
    key_kind = {
        "config/couriers": "courier",
        "feeds": "feed",
        "config/streams": "stream",
        "config/groups": "group",
    }

    project.couriers = load_folder("config/couriers", CourierConfig, "name", (".toml", ".json"))
    project.feeds = load_folder("feeds", FeedConfig, "id", (".toml",))
    project.streams = load_folder("config/streams", StreamConfig, "id", (".toml",))
    project.groups = load_folder("config/groups", GroupConfig, "name", (".toml",))
    project.queries = load_queries(project_root / "queries", errors)
    found = cross_check(project)
    if checks is not None:
        found.extend(checks(project))
    errors.extend(e for e in found if not refers_to_invalid(e, invalid))
    project.errors[:] = unique_errors(project.errors)
    if strict:
        project.raise_errors()
    return project


_NOT_DEFINED = re.compile(r"\b(courier|feed|stream|group) '([^']+)' is not defined")


def refers_to_invalid(error: ConfigError, invalid: set[tuple[str, str]]) -> bool:
    m = _NOT_DEFINED.search(error.problem)
    return m is not None and (m.group(1), m.group(2)) in invalid


def unique_errors(errors: list[ConfigError]) -> list[ConfigError]:
    """Each problem once (two checks may find the same one)."""
    seen: set[str] = set()
    out = []
    for e in errors:
        if str(e) not in seen:
            seen.add(str(e))
            out.append(e)
    return out


def load_queries(folder: Path, errors: list[ConfigError]) -> dict[str, SavedQuery]:
    out: dict[str, SavedQuery] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.sql")):
        if path.name.endswith(".spark.sql"):
            continue  # a Spark SQL twin (SPEC 8), not a DuckDB query
        if not QUERY_NAME.match(path.stem):
            errors.append(
                ConfigError("query file names must be identifiers, like order_items.sql", path)
            )
            continue
        sql = path.read_text(encoding="utf-8")
        if not sql.strip():
            errors.append(ConfigError("the query file is empty: write a SELECT", path))
            continue
        dialects = {}
        for twin in sorted(folder.glob(f"{path.stem}.*.sql")):
            dialect = twin.name[len(path.stem) + 1 : -len(".sql")]
            if QUERY_NAME.match(dialect):
                dialects[dialect] = twin.read_text(encoding="utf-8")
        out[path.stem] = SavedQuery(path.stem, path, sql, dialects)
    return out


def cross_check(project: Project) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for name, engine in project.settings.engines.items():
        for storage in getattr(engine, "cluster_uri", {}):
            if storage not in project.settings.storages:
                errors.append(
                    ConfigError(
                        f"cluster_uri names storage {storage!r}, which is not defined "
                        f"(defined: {', '.join(project.settings.storages)})",
                        project.root / "config" / "courier.toml",
                        f"engines.{name}.cluster_uri",
                    )
                )
    for name, courier in project.couriers.items():
        path = project.files.get(f"config/couriers:{name}")
        if courier.engine != "duckdb" and courier.engine not in project.settings.engines:
            errors.append(
                ConfigError(
                    f"engine {courier.engine!r} is not defined; add [engines.{courier.engine}] "
                    'type = "spark", remote = "sc://host:15002" to config/courier.toml '
                    f"(defined: {', '.join(project.settings.engines) or 'none'})",
                    path,
                    "engine",
                )
            )
        if courier.storage not in project.settings.storages:
            errors.append(
                ConfigError(
                    f"storage {courier.storage!r} is not defined; add [storages.{courier.storage}] "
                    f"to config/courier.toml (defined: {', '.join(project.settings.storages)})",
                    path,
                    "storage",
                )
            )
        if courier.stream and project.streams and courier.stream not in project.streams:
            errors.append(
                ConfigError(
                    f"stream {courier.stream!r} is not defined; add config/streams/"
                    f"{courier.stream}.toml",
                    path,
                    "stream",
                )
            )
        try:
            pattern = FilePattern.parse(courier.pattern)
            if courier.prefix is not None and not pattern.has_day:
                errors.append(
                    ConfigError(
                        "prefix makes a daily courier: its pattern needs dd", path, "prefix"
                    )
                )
        except ValueError as exc:
            errors.append(ConfigError(str(exc), path, "file_pattern"))
        for feed_id, ops in courier.load_operations.items():
            if feed_id not in project.feeds:
                errors.append(
                    ConfigError(
                        f"feed {feed_id!r} is not defined; add feeds/{feed_id}.toml "
                        f"(defined: {', '.join(sorted(project.feeds)) or 'none'})",
                        path,
                        f"load_operations.{feed_id}",
                    )
                )
            for i, op in enumerate(ops):
                key = f"load_operations.{feed_id}[{i}]"
                for tag in op.tags:
                    try:
                        check_identifier(tag, "file tag")
                    except ValueError as exc:
                        errors.append(ConfigError(str(exc), path, key))
                        continue
                    if tag != courier.file_tag:
                        errors.append(
                            ConfigError(
                                f"file tag {tag!r} is not this courier's file_tag "
                                f'{courier.file_tag!r}: use file = "{courier.file_tag}"',
                                path,
                                key,
                            )
                        )
                if op.type == "sql":
                    if op.sql_query not in project.queries:
                        errors.append(
                            ConfigError(
                                f"sql-query {op.sql_query!r} has no file queries/"
                                f"{op.sql_query}.sql",
                                path,
                                key,
                            )
                        )
                    if not op.sql_files:
                        errors.append(
                            ConfigError(
                                'a sql load operation needs sql-files = [{ file = "TAG" }]',
                                path,
                                key,
                            )
                        )
    for name, group in project.groups.items():
        path = project.files.get(f"config/groups:{name}")
        for i, member in enumerate(group.couriers):
            if member.name not in project.couriers:
                errors.append(
                    ConfigError(
                        f"courier {member.name!r} is not defined; add config/couriers/"
                        f"{member.name}.toml",
                        path,
                        f"couriers[{i}].name",
                    )
                )
    return errors
