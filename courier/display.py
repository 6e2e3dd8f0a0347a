"""Values and tables as people read them: `2026-11-22 07:00:00+00`, `8.37`, aligned columns.

Used by every command that prints rows (and by `make run`); JSON output uses `jsonable`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TextIO
from uuid import UUID

CUT_AT = 40  # widest cell on a terminal without --wide


def jsonable(value: Any) -> Any:
    """Engine values as JSON values: timestamps as ISO strings, decimals as numbers."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def display(value: Any) -> str:
    """One cell of a table or CSV: decimals as written (`8.30`), timestamps in ISO form,
    nested values as compact JSON."""
    if isinstance(value, Decimal):
        return str(value)
    value = jsonable(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cuts_cells(stream: TextIO | None = None, wide: bool = False) -> bool:
    """Cells are cut only for a person at a terminal who did not ask for --wide: piped or
    redirected output keeps every character (file names differ only at their end)."""
    stream = stream or sys.stdout
    return not wide and bool(getattr(stream, "isatty", lambda: False)())


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], cut: bool | None = None) -> str:
    """An aligned plain-text table; values shown with `display`. `cut` (default: stdout is a
    terminal) shortens cells over 40 characters to keep a row on one line."""
    if cut is None:
        cut = cuts_cells()

    def cell(v: Any) -> str:
        s = v if isinstance(v, str) else display(v)
        s = s.replace("\n", "\\n")
        return s[: CUT_AT - 3] + "..." if cut and len(s) > CUT_AT else s

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
