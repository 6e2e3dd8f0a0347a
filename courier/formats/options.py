"""Options of the tree formats (cbor, json, xml), parsed once from a courier's `options` table.

    record_path = "records.record"     # rows are the elements found there (a map: one row)
    force_list = ["record", "tender"]  # these keys always hold a list (xmltodict force_list)
    max_depth = 100                    # nesting deeper than this is a bad record
    max_document_bytes = 268435456     # json/xml: a file (one document) larger is a bad record
    decode = "json"                    # how decoded trees reach the engine: "json" or "arrow"
    decode_workers = 2                 # processes decoding a large window, the courier's own
                                       # included (default: the cores, at most 4; 1: no helper)

`courier validate` reports a wrong option with the courier file and key (CHECKS below).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from courier.errors import ConfigError, FormatError

if TYPE_CHECKING:
    from courier.project import Project

TREE_FORMATS = ("cbor", "json", "xml")
DEFAULT_MAX_DEPTH = 100
DEFAULT_MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
DEFAULT_DECODE_WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class TreeOptions:
    record_path: tuple[str, ...] = ()
    force_list: frozenset[str] = frozenset()
    max_depth: int = DEFAULT_MAX_DEPTH
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    decode: str = "json"
    decode_workers: int = DEFAULT_DECODE_WORKERS

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> TreeOptions:
        """Raise ValueError naming the option and what it should be."""
        return cls(
            record_path=_record_path(options.get("record_path")),
            force_list=_force_list(options.get("force_list")),
            max_depth=_positive_int(options, "max_depth", DEFAULT_MAX_DEPTH),
            max_document_bytes=_positive_int(
                options, "max_document_bytes", DEFAULT_MAX_DOCUMENT_BYTES
            ),
            decode=_decode(options.get("decode", "json")),
            decode_workers=_positive_int(options, "decode_workers", DEFAULT_DECODE_WORKERS),
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TreeOptions:
        try:
            return cls.parse(options)
        except ValueError as exc:
            raise FormatError(f"{exc}; fix the courier's options and run again") from exc


def _record_path(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        parts = value.split(".")
    elif isinstance(value, list | tuple) and all(isinstance(p, str) for p in value):
        parts = list(value)
    else:
        raise ValueError(
            f'options.record_path must be a dotted path like "records.record", got {value!r}'
        )
    if any(not p for p in parts):
        raise ValueError(f"options.record_path {value!r} has an empty step")
    return tuple(parts)


def _force_list(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list | tuple) and all(isinstance(k, str) and k for k in value):
        return frozenset(value)
    raise ValueError(
        f'options.force_list must be a list of element names like ["record", "tender"], '
        f"got {value!r}"
    )


def _positive_int(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"options.{key} must be a positive whole number, got {value!r}")
    return value


def _decode(value: Any) -> str:
    if value not in ("json", "arrow"):
        raise ValueError(f'options.decode must be "json" or "arrow", got {value!r}')
    return str(value)


def check_tree_options(project: Project) -> list[ConfigError]:
    """Registered in courier.project.CHECKS: wrong format options fail `courier validate`."""
    errors = []
    for name, courier in project.couriers.items():
        if courier.format not in TREE_FORMATS:
            continue
        try:
            TreeOptions.parse(courier.options.model_dump())
        except ValueError as exc:
            key = str(exc).split(" ", 1)[0] if str(exc).startswith("options.") else "options"
            errors.append(ConfigError(str(exc), project.files.get(f"config/couriers:{name}"), key))
    return errors
