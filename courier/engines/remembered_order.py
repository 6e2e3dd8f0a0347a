"""The record-order edit of a courier's query (engines/record_order.py), remembered by query
text: a courier runs the same query run after run, and reading the edit back needs neither the
parse nor sqlglot, whose import alone costs ~150-200 ms of every `courier run`'s start."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

QUOTES = {"duckdb": '"', "spark": "`"}  # how each dialect quotes an identifier


def remembered_record_order(
    sql: str, relations: dict[str, str], cache: Path | None, dialect: str = "duckdb"
) -> str | None:
    """carry_record_order, remembered in the folder `cache` by query text. A courier runs the
    same query run after run, and each edit costs importing sqlglot and the parse. The
    relations' names change from run to run, so the edit is kept with stand-ins for them;
    the key holds the edit's code, so a new courier or sqlglot version edits afresh. A cache
    that cannot be read or written is only slower."""
    stand_ins = {tag: f"_courier_relation_{i}_" for i, tag in enumerate(sorted(relations))}
    if (
        cache is None
        or any(s in sql for s in stand_ins.values())
        or any(q in name for name in relations.values() for q in QUOTES.values())
    ):
        return _carry(sql, relations, dialect)
    key = json.dumps([_code_version(), dialect, sql, sorted(stand_ins.items())])
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    try:
        edited = json.loads(path.read_text())["sql"]
    except (OSError, ValueError, KeyError, TypeError):
        edited = _carry(sql, stand_ins, dialect)
        _remember(path, {"sql": edited})
    if not isinstance(edited, str):
        return None
    for tag, stand_in in stand_ins.items():
        edited = edited.replace(stand_in, relations[tag])
    return edited


def _carry(sql: str, relations: dict[str, str], dialect: str) -> str | None:
    from courier.engines import record_order  # sqlglot: imported only when a query is edited

    return record_order.carry_record_order(sql, relations, dialect)


@functools.cache
def _code_version() -> str:
    """The edit's code (record_order.py, this module and sqlglot's version, once a process:
    reading the version costs ~8 ms): a new courier or sqlglot version edits afresh."""
    code = hashlib.sha256(version("sqlglot").encode())
    for path in (Path(__file__).with_name("record_order.py"), Path(__file__)):
        code.update(path.read_bytes())
    return code.hexdigest()[:16]


def _remember(path: Path, value: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # read-only project: edit the query each run
