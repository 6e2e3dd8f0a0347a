"""docs/configuration.md, generated from the pydantic models so it cannot drift: every key of
every file kind, its type, default and what it does (the field's description, or its comment
in the model). Written with docs/commands.md by `python -m courier.cli.reference`.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from courier.config.descriptions import DESCRIPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"
_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


def file_kinds() -> list[tuple[str, str, type[BaseModel]]]:
    from courier.config.models import CourierConfig, FeedConfig, GroupConfig, Settings, StreamConfig
    from courier.sources.config import SourceConfig

    return [
        ("config/courier.toml", "project settings", Settings),
        ("config/couriers/NAME.toml", "one courier (the file name is its name)", CourierConfig),
        ("config/streams/ID.toml", "one ingest stream (the file name is its id)", StreamConfig),
        ("config/groups/NAME.toml", "one courier group and its schedule", GroupConfig),
        ("config/sources/NAME.toml", "one polled API or file pull", SourceConfig),
        ("feeds/ID.toml", "one typed feed table (the file name is its id)", FeedConfig),
    ]


def comments(model: type) -> dict[str, str]:
    """field -> the comment after it in the model's source."""
    out: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = _COMMENT.match(line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def type_name(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = re.sub(r"\b(typing|courier\.[\w.]+)\.", "", text)
    text = text.replace("NoneType", "None")
    text = re.sub(r"Annotated\[(\w+), AfterValidator\(.*?\)\]", r"\1", text)  # FeedId, ...
    text = re.sub(r"^Optional\[(\w+)\]$", r"\1 | None", text)
    return re.sub(r"Annotated\[(.+?), FieldInfo\(.*?\)\]", r"\1", text)


def models_in(annotation: Any) -> list[type[BaseModel]]:
    out, stack = [], [annotation]
    while stack:
        t = stack.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            out.append(t)
        stack.extend(typing.get_args(t))
    return out


def default_text(info: Any) -> str:
    if info.is_required():
        return "required"
    if info.default is not PydanticUndefined:
        value = info.default
        if isinstance(value, BaseModel):
            return "(table)"
        return "" if value is None else f"`{value!r}`".replace("'", '"')
    return "(computed)" if info.default_factory else ""


def undocumented() -> tuple[list[str], list[str]]:
    """(keys of the file kinds with no description anywhere, DESCRIPTIONS entries naming no
    field): both empty, or a test fails."""
    missing, used, stack, seen = [], set(), [m for _, _, m in file_kinds()], set()
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        notes = comments(model)
        for name, info in model.model_fields.items():
            entry = f"{model.__name__}.{name}"
            used.add(entry)
            if not (info.description or notes.get(name) or DESCRIPTIONS.get(entry)):
                missing.append(entry)
            stack.extend(models_in(info.annotation))
    return sorted(missing), sorted(set(DESCRIPTIONS) - used)


def model_rows(model: type[BaseModel], prefix: str, seen: set[type]) -> list[str]:
    rows, nested = [], []
    notes = comments(model)
    for name, info in model.model_fields.items():
        key = info.alias or name
        what = (
            info.description or notes.get(name) or DESCRIPTIONS.get(f"{model.__name__}.{name}", "")
        )
        kind = type_name(info.annotation).replace("|", "\\|")  # a bare | would split the cell
        rows.append(
            f"| `{prefix}{key}` | `{kind}` | {default_text(info)} | {what.replace('|', '/')} |"
        )
        is_map = typing.get_origin(info.annotation) is dict
        for sub in models_in(info.annotation):
            if sub not in seen:
                seen.add(sub)
                nested.append((f"{prefix}{key}.{'NAME.' if is_map else ''}", sub))
    for sub_prefix, sub in nested:
        rows.extend(model_rows(sub, sub_prefix, seen))
    return rows


def configuration_md() -> str:
    from courier.config.models import FORMAT_OPTIONS

    out = [
        "# Configuration reference",
        "",
        "Generated from courier's config models by `python -m courier.cli.reference`; a test fails",
        "when a key is missing here. Values may use `${VAR}` or `${VAR:-default}` to take",
        "secrets and per-machine settings from the environment (`courier validate --for",
        "serve|scheduler|run` lists the variables each front end needs). An unknown key is",
        "refused, with the closest known key suggested.",
        "",
        "A key `a.b` is `b` in the table `[a]`; `NAME` stands for a name you choose",
        "(`[storages.NAME]`). Where a key takes one of several table shapes (storages,",
        "engines, alert sinks), the keys of every shape are listed.",
        "",
    ]
    for path, what, model in file_kinds():
        out += [f"## {path}", "", what.capitalize() + ".", ""]
        out += ["| key | type | default | what it does |", "| --- | --- | --- | --- |"]
        out += model_rows(model, "", {model})
        out.append("")
    out += [
        "## A courier's `options`",
        "",
        "Besides `max_bad_records` and `schema_scan` (above), the tree formats read:",
        "",
        "| option | what it does |",
        "| --- | --- |",
    ]
    out += [f"| `{k}` | {v} |" for k, v in FORMAT_OPTIONS.items()]
    return "\n".join(out) + "\n"
