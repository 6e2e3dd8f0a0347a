"""`courier feeds infer`: draft feeds/FEED.toml from the rows a courier's load operation would
load (the saved query's result, or the input's top-level fields): feed types, a primary key
checked on the data, required fields, and the fields whose values disagree on their type."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courier.analyst.preview import InputReport, read_courier_input
from courier.analyst.workbench import TagInput, Workbench, literal, quote
from courier.config.models import IDENTIFIER, CourierConfig, FeedConfig
from courier.context import Context
from courier.errors import ConfigError
from courier.windows import Window

if TYPE_CHECKING:
    from courier.engines.duckdb import DuckDBRows as Relation

MAX_KEY_COLUMNS = 3
KEY_CANDIDATES = {1: 64, 2: 14, 3: 9}  # columns tried per key size (pairs/triples grow fast)
EPOCH_MS = (10**11, 10**14)  # 1973 .. 5138 as milliseconds since the epoch
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
TIME_NAME = re.compile(r"(^|_)(ts|time|timestamp|date|datetime|epoch)(_|$)|_at$|^at$", re.I)
KEY_NAME = re.compile(r"(^|_)(id|idx|index|key|uuid|guid|code|seq|num|no)$|id$", re.I)

TEMPORAL = ("timestamp", "date")
JSON_FAMILIES = {
    "VARCHAR": "string",
    "UBIGINT": "number",
    "BIGINT": "number",
    "DOUBLE": "number",
    "BOOLEAN": "boolean",
    "OBJECT": "object",
    "ARRAY": "array",
}


@dataclass
class FeedDraft:
    feed_id: str
    path: Path
    source: str  # "query NAME" or "the input's top-level fields"
    rows: int
    fields: dict[str, str] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)
    primary_key: list[str] = field(default_factory=list)
    required: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inputs: list[InputReport] = field(default_factory=list)

    def toml(self, command: str) -> str:
        lines = [
            f"# Drafted by `{command}` from {self.rows} row(s) of {self.source}",
            *(f"# ({report.describe()})" for report in self.inputs),
            "# Review before the first load: the types, the primary key (unique and non-null on",
            "# these rows, which does not prove it for all data) and the required fields.",
        ]
        for conflict in self.conflicts:
            lines.append(f"# conflicting types: {conflict}")
        lines.append(f"description = {toml_string('Drafted from ' + self.source)}")
        lines.append(f"primary_key = {toml_list(self.primary_key)}")
        lines.append(f"required = {toml_list(self.required)}")
        lines.append("")
        lines.append("[fields]")
        width = max((len(f) for f in self.fields), default=0)
        for name, typ in self.fields.items():
            line = f"{name.ljust(width)} = {toml_string(typ)}"
            if name in self.comments:
                line = f"{line.ljust(width + 20)}  # {self.comments[name]}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        pk = ", ".join(self.primary_key) or "none (rows append)"
        return (
            f"{len(self.fields)} field(s) from {self.rows} row(s) of {self.source}; "
            f"primary key {pk}; {len(self.required)} required"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "feed": self.feed_id,
            "path": str(self.path),
            "source": self.source,
            "rows": self.rows,
            "fields": self.fields,
            "primary_key": self.primary_key,
            "required": self.required,
            "conflicts": self.conflicts,
            "notes": self.notes,
        }


def toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(toml_string(v) for v in values) + "]"


def targets(courier: CourierConfig, only: str | None) -> list[tuple[str, str | None]]:
    """(feed id, saved query or None) for each feed the courier loads."""
    out: list[tuple[str, str | None]] = []
    for feed_id, ops in courier.load_operations.items():
        query = next((op.sql_query for op in ops if op.type == "sql"), None)
        out.append((feed_id, query))
    if not out:
        out.append((courier.file_tag, None))
    if only:
        out = [t for t in out if t[0] == only]
        if not out:
            loads = ", ".join(courier.load_operations) or "none"
            raise ConfigError(
                f"courier {courier.name} does not load feed {only!r} (it loads: {loads})"
            )
    return out


def infer_feeds(
    context: Context,
    courier_name: str,
    window: Window | None,
    sample: Path | None = None,
    only: str | None = None,
    full: bool = False,
) -> list[FeedDraft]:
    project = context.project
    courier = project.courier(courier_name)
    drafts = []
    with Workbench() as wb:
        entry, report = read_courier_input(context, wb, courier, window, sample, full)
        input_conflicts = raw_conflicts(wb, entry)
        for feed_id, query_name in targets(courier, only):
            if query_name:
                if query_name not in project.queries:
                    raise ConfigError(
                        f"no saved query {query_name!r}; add queries/{query_name}.sql"
                    )
                relation = wb.run_query(project.queries[query_name], [entry.tag])
                source = f"query {query_name}"
            else:
                relation = entry.relation
                source = f"courier {courier.name}'s input ({entry.tag}, top-level fields)"
            draft = analyse(wb, relation, feed_id, project.root / "feeds" / f"{feed_id}.toml")
            draft.source = source
            draft.inputs = [report]
            draft.conflicts = input_conflicts + draft.conflicts
            if not courier.load_operations:
                draft.notes.append(
                    f"courier {courier.name} has no load operations: add "
                    f'{feed_id} = [{{ type = "load", file = "{entry.tag}" }}] to its '
                    "[load_operations]"
                )
            if report.records == 0:
                draft.notes.append("no records were read: the types are guesses from nothing")
            drafts.append(draft)
    return drafts


def analyse(wb: Workbench, relation: Relation, feed_id: str, path: Path) -> FeedDraft:
    columns = wb.columns(relation)
    table = quote(relation.name)
    draft = FeedDraft(feed_id, path, "", relation.rows)
    if not columns:
        raise ConfigError(f"feed {feed_id}: the rows have no columns to draft fields from")
    # text columns whose first values all look like ISO dates/timestamps are checked in full
    texts = [n for n, t in columns.items() if t.upper() == "VARCHAR"]
    temporal: set[str] = set()
    if texts:
        looks = ", ".join(
            f"bool_and(regexp_matches({quote(n)}, {literal(ISO_DATETIME + '|' + ISO_DATE)})) "
            f"FILTER (WHERE {quote(n)} IS NOT NULL)"
            for n in texts
        )
        first = wb.sql(f"SELECT {looks} FROM (SELECT * FROM {table} LIMIT 1000)")[0]
        temporal = {n for n, ok in zip(texts, first, strict=True) if ok}
    exprs: list[str] = []
    for name, typ in columns.items():
        col = quote(name)
        exprs.append(f"count({col})")
        base = typ.upper()
        if base == "VARCHAR" and name not in temporal:
            exprs.append("0")
            exprs.append("0")
        elif base == "VARCHAR":
            exprs.append(
                f"count({col}) FILTER (WHERE regexp_matches({col}, {literal(ISO_DATETIME)}) "
                f"AND TRY_CAST({col} AS TIMESTAMPTZ) IS NOT NULL)"
            )
            exprs.append(
                f"count({col}) FILTER (WHERE regexp_matches({col}, {literal(ISO_DATE)}) "
                f"AND TRY_CAST({col} AS DATE) IS NOT NULL)"
            )
        elif base in ("BIGINT", "UBIGINT", "HUGEINT", "INTEGER"):
            exprs.append(f"min({col})")
            exprs.append(f"max({col})")
    stats = list(wb.sql(f"SELECT {', '.join(exprs)} FROM {table}")[0])
    rows = relation.rows
    non_null: dict[str, int] = {}
    renamed: dict[str, str] = {}  # column -> feed field name
    for name, typ in columns.items():
        filled = int(stats.pop(0))
        non_null[name] = filled
        base = typ.upper()
        feed_type = engine_to_feed(typ)
        note = ""
        if base == "VARCHAR":
            as_ts, as_date = int(stats.pop(0)), int(stats.pop(0))
            if filled and as_date == filled:
                feed_type, note = "date", "every value is an ISO date"
            elif filled and as_ts == filled:
                feed_type, note = "timestamp", "every value is an ISO timestamp"
        elif base in ("BIGINT", "UBIGINT", "HUGEINT", "INTEGER"):
            low, high = stats.pop(0), stats.pop(0)
            if (
                TIME_NAME.search(name)
                and low is not None
                and EPOCH_MS[0] <= low
                and high < EPOCH_MS[1]
            ):
                feed_type, note = "timestamp", "epoch milliseconds (loaded with epoch_ms)"
        elif base == "JSON":
            types = json_types(wb, table, name)
            if len({JSON_FAMILIES.get(t, t) for t in types}) > 1:
                found = ", ".join(f"{family} in {n} row(s)" for family, n in family_counts(types))
                draft.conflicts.append(f"column {name}: {found}")
                note = f"conflicting types ({found}): kept as json; cast it in the query"
        elif feed_type == "json" and base != "JSON":
            note = f"nested {short_type(typ)}: stored as JSON"
        elif feed_type == "string" and base not in ("VARCHAR", "UUID"):
            note = f"engine type {typ} stored as string"
        field_name = name
        if not IDENTIFIER.match(name):
            field_name = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "field"
            if field_name[0].isdigit():
                field_name = "_" + field_name
            draft.notes.append(
                f"column {name!r} is not a valid field name: alias it in the query "
                f"(AS {field_name}); drafted as {field_name}"
            )
        if field_name.startswith("_courier_"):
            continue
        renamed[name] = field_name
        draft.fields[field_name] = feed_type
        if note:
            draft.comments[field_name] = note
    never_null = [n for n in renamed if rows and non_null[n] == rows]
    typed = {n: draft.fields[f] for n, f in renamed.items()}
    key = primary_key(wb, table, typed, never_null, rows)
    draft.primary_key = [renamed[k] for k in key]
    if rows < 2:
        draft.notes.append("fewer than 2 rows: no primary key suggested")
    elif not key:
        draft.notes.append(
            f"no set of up to {MAX_KEY_COLUMNS} non-null columns is unique on these rows: "
            "no primary key drafted, so loads append (add one for upserts)"
        )
    draft.required = [renamed[n] for n in never_null if n not in key]
    FeedConfig(
        id=feed_id,
        fields=draft.fields,
        primary_key=draft.primary_key,
        required=draft.required,
    )  # the draft must be a valid feed
    return draft


def engine_to_feed(typ: str) -> str:
    t = typ.upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"):
        return "int"
    if t in ("BIGINT", "UINTEGER", "UBIGINT", "HUGEINT"):
        return "bigint"
    if t in ("FLOAT", "DOUBLE", "REAL"):
        return "double"
    if t.startswith("DECIMAL"):
        return t.lower().replace(" ", "")
    if t == "BOOLEAN":
        return "boolean"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "JSON" or t.startswith(("STRUCT", "MAP", "UNION")) or t.endswith("]"):
        return "json"
    return "string"


def short_type(typ: str) -> str:
    return typ if len(typ) <= 40 else typ[:37] + "..."


def json_types(wb: Workbench, table: str, column: str) -> dict[str, int]:
    rows = wb.sql(
        f"SELECT json_type({quote(column)}) AS t, count(*) FROM {table} "
        f"WHERE {quote(column)} IS NOT NULL AND json_type({quote(column)}) <> 'NULL' "
        "GROUP BY t ORDER BY 2 DESC"
    )
    return {str(t): int(n) for t, n in rows}


def family_counts(types: dict[str, int]) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for t, n in types.items():
        family = JSON_FAMILIES.get(t, t.lower())
        out[family] = out.get(family, 0) + n
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


MAX_SHAPES = 10_000  # distinct record shapes examined for conflicting types


def raw_conflicts(wb: Workbench, entry: TagInput) -> list[str]:
    """Fields whose values have different JSON types across the records, as received.

    The engine groups the records by their JSON structure (few distinct shapes, however many
    records); each shape is walked here once, weighted by its record count. A list whose
    elements disagree shows as type JSON in its structure and is reported as mixed."""
    if not entry.relation.rows:
        return []
    if entry.fmt == "ndjson" and entry.paths:
        paths = "[" + ", ".join(literal(str(p)) for p in entry.paths) + "]"
        docs = f"SELECT json AS doc FROM read_ndjson_objects({paths}, ignore_errors = true)"
    else:
        pack = ", ".join(f"{quote(c)} := t.{quote(c)}" for c in entry.summary.schema)
        docs = f"SELECT to_json(struct_pack({pack})) AS doc FROM {quote(entry.relation.name)} t"
    shapes = wb.sql(
        f"SELECT json_structure(doc) AS s, count(*) AS n FROM ({docs}) WHERE doc IS NOT NULL "
        f"GROUP BY s ORDER BY n DESC LIMIT {MAX_SHAPES}"
    )
    by_path: dict[str, dict[str, int]] = {}

    def walk(node: Any, path: str, n: int) -> None:
        if isinstance(node, dict):
            family = "object"
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key), n)
        elif isinstance(node, list):
            family = "array"
            for child in node:
                walk(child, path + "[]", n)
        elif node == "NULL":
            return
        else:
            family = "mixed" if node == "JSON" else JSON_FAMILIES.get(str(node), str(node).lower())
        if path:
            counts = by_path.setdefault(path, {})
            counts[family] = counts.get(family, 0) + n

    for structure, n in shapes:
        walk(json.loads(structure), "", int(n))
    out = []
    for path, counts in sorted(by_path.items()):
        if len(counts) > 1 or "mixed" in counts:
            found = ", ".join(
                f"{'mixed types' if family == 'mixed' else family} in {k} record(s)"
                for family, k in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            )
            out.append(f"{entry.tag} field {path}: {found}")
    return out


def primary_key(
    wb: Workbench, table: str, typed: dict[str, str], never_null: list[str], rows: int
) -> list[str]:
    """The smallest set of never-null columns unique on the rows; id-like names preferred.

    typed: column -> drafted feed type, in column order."""
    if rows < 2:
        return []
    candidates = [c for c in never_null if typed.get(c) not in ("double", "json")]
    order = {c: i for i, c in enumerate(typed)}

    def score(combo: Iterable[str]) -> tuple[int, int]:
        cols = tuple(combo)
        named = sum(2 if KEY_NAME.search(c) else 0 for c in cols)
        named -= sum(1 for c in cols if typed.get(c) in TEMPORAL)
        return (-named, sum(order[c] for c in cols))

    ranked = sorted(candidates, key=lambda c: score((c,)))
    weak: list[str] | None = None
    distinct: dict[str, int] = {}
    for size in range(1, MAX_KEY_COLUMNS + 1):
        combos = list(itertools.combinations(ranked[: KEY_CANDIDATES[size]], size))
        if size > 1:  # a set whose columns have fewer value combinations than rows repeats
            combos = [c for c in combos if math.prod(distinct.get(x, 0) for x in c) >= rows]
        if not combos:
            if size == 1:
                break
            continue
        combos.sort(key=score)  # best first: the first strong unique set found is the pick
        # one query for all single columns; sets one by one first (the best is usually it)
        bounds = [0, len(combos)] if size == 1 else [0, 1, 2, *range(10, len(combos) + 8, 8)]
        unique: list[tuple[str, ...]] = []
        for start, end in itertools.pairwise(bounds):
            chunk = combos[start:end]
            if not chunk:
                break
            select = ", ".join(
                f"count(DISTINCT {quote(combo[0])})"
                if size == 1
                else f"count(DISTINCT ({', '.join(quote(c) for c in combo)}))"
                for combo in chunk
            )
            counts = wb.sql(f"SELECT {select} FROM {table}")[0]
            if size == 1:
                distinct.update({combo[0]: int(n) for combo, n in zip(chunk, counts, strict=True)})
            unique.extend(combo for combo, n in zip(chunk, counts, strict=True) if n == rows)
            if size > 1 and any(any(KEY_NAME.search(c) for c in u) for u in unique):
                break
        strong = [u for u in unique if any(KEY_NAME.search(c) for c in u)]
        if strong:
            return sorted(min(strong, key=score), key=lambda c: order[c])
        if unique and weak is None:
            # a set without an id-like column (a timestamp, a URL) is often unique by chance
            # in a sample: look one size up for a set with one, else fall back to this
            weak = sorted(min(unique, key=score), key=lambda c: order[c])
        elif weak is not None:
            return weak
    return weak or []


def write_feeds(drafts: list[FeedDraft], force: bool, command: str) -> None:
    """Write every draft, or none when one would overwrite a file without --force."""
    existing = [d.path for d in drafts if d.path.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise ConfigError(
            f"{names} already exist(s); pass --force to overwrite, or move the file away first"
        )
    for d in drafts:
        d.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = d.path.with_suffix(".toml.tmp")
        tmp.write_text(d.toml(command), encoding="utf-8")
        os.replace(tmp, d.path)
