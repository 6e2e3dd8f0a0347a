"""`courier query preview`: a saved query over a courier's files (a sample of the window by
default) or over a local sample file; never writes feed tables or state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courier.analyst.schema import TypeNode, schema_lines
from courier.analyst.workbench import TagInput, Workbench, quote
from courier.config.models import CourierConfig
from courier.context import Context
from courier.display import jsonable
from courier.errors import ConfigError, ConfigErrors, RunError, not_found
from courier.plan import InputFile, PlannedFile
from courier.project import Project, SavedQuery
from courier.validate import load_project
from courier.windows import Window, iso_utc

SAMPLE_FILES = 8  # files read by default, spread over the window
SAMPLE_BYTES = 256 * 1024 * 1024  # ... and at most this many bytes (at least one file)


@dataclass
class InputReport:
    """Which files a command read for a courier's tag."""

    tag: str
    found: int
    read: list[str]
    sampled: bool
    records: int
    bad: int
    source: str  # "window [start, end)" or the sample file

    def describe(self) -> str:
        what = f"{self.records} record(s) from {len(self.read)} of {self.found} file(s)"
        if self.sampled:
            what += " (a sample: --full reads all)"
        if self.bad:
            what += f", {self.bad} malformed record(s) skipped"
        return f"{self.tag}: {what}; {self.source}"


def pending(error: ConfigError) -> bool:
    """A load operation naming a feed or query file not written yet: the analyst commands
    are how those files get written."""
    if not (error.key and error.key.startswith("load_operations.")):
        return False
    return "is not defined; add feeds/" in error.problem or "has no file queries/" in error.problem


def usable_project(root: str | Path | None) -> Project:
    """The project, tolerating only feed and query files that are still to be written."""
    project = load_project(root, strict=False)
    errors = [e for e in project.errors if not pending(e)]
    if errors:
        raise ConfigErrors(errors)
    return project


def find_query(project: Project, ref: str) -> SavedQuery:
    """A saved query by name, or a .sql file by path (a draft not yet under queries/)."""
    if ref in project.queries:
        return project.queries[ref]
    path = Path(ref)
    if path.suffix == ".sql":
        if not path.is_absolute() and not path.is_file():
            path = project.root / path
        if path.is_file():
            name = path.name.removesuffix(".sql").removesuffix(".spark")
            return SavedQuery(name, path, path.read_text(encoding="utf-8"))
        raise ConfigError(f"no query file {path}")
    raise not_found("saved query", ref, project.queries, f"add queries/{ref}.sql", named=False)


def query_users(project: Project, query: str) -> list[tuple[CourierConfig, list[str]]]:
    """Couriers whose sql load operations run this query, with the file tags they give it."""
    out = []
    for courier in project.couriers.values():
        tags: list[str] = []
        for ops in courier.load_operations.values():
            for op in ops:
                if op.type == "sql" and op.sql_query == query:
                    tags.extend(t for t in op.tags if t not in tags)
        if tags:
            out.append((courier, tags))
    return out


def resolve(project: Project, ref: str, courier: str | None) -> tuple[SavedQuery, CourierConfig]:
    """What preview runs: a saved query (or .sql file) and the courier whose files it reads;
    or, when ref names a courier and no query, that courier's input as it is."""
    if ref not in project.queries and not ref.endswith(".sql") and ref in project.couriers:
        target = project.couriers[ref]
        if courier and courier != ref:
            raise ConfigError(f"{ref!r} is a courier, not a query; give one of them")
        tag = target.file_tag
        path = project.files.get(f"config/couriers:{ref}", Path(ref))
        return SavedQuery(tag, path, f'SELECT * FROM "{tag}"'), target
    query = find_query(project, ref)
    return query, courier_for_query(project, query.name, courier)


def courier_for_query(project: Project, query: str, courier: str | None) -> CourierConfig:
    if courier:
        return project.courier(courier)
    users = query_users(project, query)
    if len(users) == 1:
        return users[0][0]
    if not users:
        raise ConfigError(
            f"query {query!r} is not used by any courier's load operations: name the courier "
            "whose files it should read (courier query preview QUERY COURIER)"
        )
    names = ", ".join(c.name for c, _ in users)
    raise ConfigError(f"query {query!r} is used by several couriers ({names}): name one")


def sample_files(files: list[PlannedFile], full: bool) -> list[PlannedFile]:
    """Files spread evenly over the window (first and last included) within the budgets."""
    if full or len(files) <= 1:
        return files
    count = min(SAMPLE_FILES, len(files))
    step = (len(files) - 1) / max(count - 1, 1)
    picked = sorted({round(i * step) for i in range(count)})
    out: list[PlannedFile] = []
    total = 0
    for i in picked:
        f = files[i]
        if out and total + f.info.size > SAMPLE_BYTES:
            continue
        out.append(f)
        total += f.info.size
    return out


def empty_window(context: Context, courier: CourierConfig, window: Window, where: str) -> str:
    """No files: say which tag, pattern and listed prefix, and where to look instead (a query
    over a tag with no files cannot even be bound: it has no columns)."""
    from courier.context import expand
    from courier.patterns import FilePattern, list_prefix

    partitions = context.grain(courier).partitions(window)
    pattern = FilePattern.parse(courier.pattern)
    first = expand(pattern, partitions[0], context.project.time_zone)[0] if partitions else ""
    return (
        f"no records were read: no files in the window [{iso_utc(window.start)}, "
        f"{iso_utc(window.end)}) for tag "
        f"{courier.file_tag} of courier {courier.name} (pattern {courier.pattern!r}, prefix "
        f"{list_prefix(first)!r} in {where}). `courier files {courier.name} --date D` lists "
        "a day's files; --file SAMPLE reads a local sample instead"
    )


def read_courier_input(
    context: Context,
    wb: Workbench,
    courier: CourierConfig,
    window: Window | None,
    sample: Path | None = None,
    full: bool = False,
) -> tuple[TagInput, InputReport]:
    """Read a courier's tag into the workbench: a local sample file, or the window's files."""
    tag = courier.file_tag
    if sample is not None:
        if not sample.is_file():
            raise RunError(f"no sample file {sample}")
        entry = wb.read_sample(tag, sample, courier.format, courier.options.model_dump())
        report = InputReport(
            tag, 1, [str(sample)], False, entry.summary.records, len(entry.summary.bad),
            f"sample file {sample}",
        )  # fmt: skip
        return entry, report
    if window is None:
        raise RunError("give a window (--date, --hour or --start/--end) or --file PATH")
    files = context.discover(courier, window)
    storage = context.storage(courier.storage)
    if not files:
        raise RunError(empty_window(context, courier, window, storage.describe()))
    chosen = sample_files(files, full)
    inputs: list[InputFile] = []
    for i, f in enumerate(chosen):
        local = storage.local_path(f.key)
        if local is None:
            local = wb.tmp / f"{i:06d}-{Path(f.key).name}"
            storage.download(f.key, local)
        inputs.append(InputFile(f.key, local, f.info.size))
    entry = wb.read_files(tag, inputs, courier.format, courier.options.model_dump())
    source = f"window [{iso_utc(window.start)}, {iso_utc(window.end)})"
    if not files:
        source += f": no files match {courier.pattern!r} in {storage.describe()}"
    report = InputReport(
        tag, len(files), [f.key for f in chosen], len(chosen) < len(files),
        entry.summary.records, len(entry.summary.bad), source,
    )  # fmt: skip
    return entry, report


@dataclass
class Preview:
    query: SavedQuery
    courier: str
    inputs: list[InputReport]
    schemas: dict[str, TypeNode]
    presence: dict[str, dict[str, int]]  # tag -> path -> records with a value
    columns: dict[str, str] = field(default_factory=dict)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    total_rows: int = 0

    def records(self) -> list[dict[str, Any]]:
        names = list(self.columns)
        return [dict(zip(names, (jsonable(v) for v in row), strict=True)) for row in self.rows]

    def schema_rows(self) -> list[dict[str, Any]]:
        out = []
        for tag, root in self.schemas.items():
            records = next((i.records for i in self.inputs if i.tag == tag), 0)
            counts = self.presence.get(tag, {})
            for line in schema_lines(root):
                filled = counts.get(line.path)
                out.append(
                    {
                        "tag": tag,
                        "path": line.path,
                        "depth": line.depth,
                        "name": line.name,
                        "type": line.type,
                        "filled": None if filled is None or not records else filled / records,
                    }
                )
        return out

    def as_dict(self, with_schema: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": self.query.name,
            "courier": self.courier,
            "inputs": [i.__dict__ for i in self.inputs],
            "columns": self.columns,
            "rows": self.records(),
            "total_rows": self.total_rows,
        }
        if with_schema:
            out["schema"] = self.schema_rows()
        return out


def preview(
    context: Context,
    query_ref: str,
    courier_name: str | None,
    window: Window | None,
    sample: Path | None = None,
    limit: int | None = 20,
    full: bool = False,
    with_schema: bool = False,
) -> Preview:
    project = context.project
    query, courier = resolve(project, query_ref, courier_name)
    with Workbench() as wb:
        entry, report = read_courier_input(context, wb, courier, window, sample, full)
        schemas = {entry.tag: entry.schema}
        presence = {entry.tag: filled_counts(wb, entry)} if with_schema else {}
        relation = wb.run_query(query, [entry.tag])
        cols, rows = wb.fetch(relation, limit if limit and limit > 0 else None)
        return Preview(
            query, courier.name, [report], schemas, presence,
            {c: relation.columns[c] for c in cols}, rows, relation.rows,
        )  # fmt: skip


def filled_counts(wb: Workbench, entry: TagInput) -> dict[str, int]:
    """Records holding a non-null value at each struct path (paths inside lists are skipped)."""
    exprs: list[tuple[str, str]] = []

    def walk(node: TypeNode, expr: str, path: str) -> None:
        for name, child in node.fields:
            e = f"{expr}.{quote(name)}" if expr else f"t.{quote(name)}"
            p = f"{path}.{name}" if path else name
            exprs.append((p, e))
            if child.kind == "struct":
                walk(child, e, p)

    walk(entry.schema, "", "")
    if not exprs:
        return {}
    out: dict[str, int] = {}
    for start in range(0, len(exprs), 500):
        chunk = exprs[start : start + 500]
        select = ", ".join(f"count({e})" for _, e in chunk)
        row = wb.sql(f"SELECT {select} FROM {quote(entry.relation.name)} t")[0]
        out.update({p: int(n) for (p, _), n in zip(chunk, row, strict=True)})
    return out
