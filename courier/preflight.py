"""What `courier validate` checks beyond loading the project: every saved query through
DuckDB's parser and, where a file tag's shape is known (its pinned schema), bound against it;
and, with `--for serve|scheduler|run`, the environment variables that front end needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from courier.config.loader import read_document, unset_env
from courier.errors import ConfigError, CourierError
from courier.project import Project

TFrontEnd = Literal["serve", "scheduler", "run"]

# keys whose whole value may be an unset ${VAR}: the feature is off, nothing is wrong
OPTIONAL_KEYS = {"ingest.admin_token", "ui.token"}


def check_queries(project: Project) -> list[CourierError]:
    """Each saved query once: parsed always, bound against the first courier's pinned
    schema that reads it."""
    from courier.engines.duckdb import check_query, pinned_schemas

    pinned = pinned_schemas(project.path(project.settings.feeds.database))
    tags_of: dict[str, dict[str, dict[str, str] | None]] = {}
    for courier in project.couriers.values():
        for ops in courier.load_operations.values():
            for op in ops:
                if op.type == "sql" and op.sql_query and op.sql_query not in tags_of:
                    tag = courier.file_tag
                    tags_of[op.sql_query] = {tag: pinned.get((courier.name, tag))}
    errors: list[CourierError] = []
    for name, query in sorted(project.queries.items()):
        problem = check_query(query, tags_of.get(name, {}))
        if problem is not None:
            errors.append(problem)
    return errors


@dataclass(frozen=True)
class EnvNeed:
    variable: str
    file: Path
    key: str
    is_set: bool
    optional: bool


def environment(project: Project, front_end: TFrontEnd) -> list[EnvNeed]:
    """Every ${VAR} (without a default) in the files the front end reads."""
    root = project.root
    settings = root / "config" / "courier.toml"
    sections = {
        "serve": ["ingest", "storages", "ui"],
        "scheduler": ["storages", "feeds", "alerts", "state", "engines", "ui"],
        "run": ["storages", "feeds", "state", "engines"],
    }[front_end]
    documents: list[tuple[Path, dict, str]] = []
    if settings.is_file():
        doc = read_document(settings)
        documents += [(settings, {s: doc[s]}, "") for s in sections if s in doc]
    folders = {
        "serve": ["config/streams"],
        "scheduler": ["config/couriers", "config/groups", "config/sources"],
        "run": ["config/couriers"],
    }[front_end]
    for folder in folders:
        base = root / folder
        for path in sorted(base.glob("*.toml")) if base.is_dir() else []:
            documents.append((path, read_document(path), ""))
    out: list[EnvNeed] = []
    for path, doc, _ in documents:
        for key, names in references(doc).items():
            for name in names:
                out.append(
                    EnvNeed(name, path, key, bool(os.environ.get(name)), key in OPTIONAL_KEYS)
                )
    return out


def references(value: object) -> dict[str, list[str]]:
    """Key path -> the variables its ${VAR} references (without a default) name: those that
    would be unset in an empty environment."""
    return unset_env(value, environ={})


def environment_errors(needs: list[EnvNeed], front_end: str) -> list[ConfigError]:
    """One problem per unset variable, naming every file and key that uses it."""
    users: dict[str, list[EnvNeed]] = {}
    for n in needs:
        if not n.is_set and not n.optional:
            users.setdefault(n.variable, []).append(n)
    return [
        ConfigError(
            f"environment variable {name} is not set; `courier {front_end}` needs it for "
            + ", ".join(f"{u.file.parent.name}/{u.file.name} [{u.key}]" for u in found)
        )
        for name, found in users.items()
    ]
