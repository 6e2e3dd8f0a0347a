"""Query tests (SPEC 6): queries/tests/*.toml give input payloads per file tag and the expected
rows of a saved query; `courier query test [NAME]` runs them on an in-memory engine.

    query = "order_items"
    [inputs]
    web_events = { json = '''{"event_id": "e1", "items": [{"sku": "a"}]}''' }
    [[expected]]                 # rows in order; only the columns named are compared
    event_id = "e1"
    sku = "a"

Inputs: `{ json = "..." }` (NDJSON text, or one document; arrays are split into records as a
`batch_arrays` stream lands them), `{ xml = "..." }` (one document, or a list of documents), or
`{ file = "samples/x.ndjson" }` (.ndjson, .json, .xml, .cbor; relative to the project root).
An expected value `{ null = true }` asks for NULL. Values compare by meaning: 12.5 matches a
DECIMAL 12.50 and the string "12.5"; "2026-11-22T10:00:00Z" matches that instant; a TOML table
or array matches a STRUCT, LIST or JSON value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from courier.analyst.preview import query_users
from courier.analyst.workbench import Workbench
from courier.config.loader import read_document
from courier.config.models import SparkEngineConfig
from courier.display import display, jsonable
from courier.errors import ConfigError, CourierError, not_found
from courier.project import Project

TESTS_FOLDER = Path("queries") / "tests"
TOP_KEYS = {"query", "description", "inputs", "expected"}
INPUT_KINDS = ("json", "xml", "file")
MAX_ROWS = 100_000
MAX_REPORTED = 20


@dataclass
class QueryTest:
    path: Path
    query: str
    inputs: dict[str, dict[str, Any]]
    expected: list[dict[str, Any]]
    description: str | None = None

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Outcome:
    test: QueryTest | None
    path: Path
    query_path: Path | None = None
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    engines: list[str] = field(default_factory=list)  # other engines that gave the same rows

    @property
    def passed(self) -> bool:
        return not self.problems and self.error is None


def test_files(project: Project) -> list[Path]:
    folder = project.root / TESTS_FOLDER
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def load_test(project: Project, path: Path) -> QueryTest:
    """Read and check one test file; ConfigError names the file and key."""
    doc = read_document(path)
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}; a query test has query, inputs, expected "
            "(and description)",
            path,
            unknown[0],
        )
    query = doc.get("query")
    if not isinstance(query, str) or not query:
        raise ConfigError('name the saved query: query = "NAME"', path, "query")
    if query not in project.queries:
        raise not_found(
            "saved query", query, project.queries, named=False, location=path, key="query"
        )
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        raise ConfigError(
            'give the input of each file tag: [inputs] TAG = { json = "..." }', path, "inputs"
        )
    users = query_users(project, query)
    allowed = {tag: c.name for c, tags in users for tag in tags}
    for tag, spec in inputs.items():
        key = f"inputs.{tag}"
        if allowed and tag not in allowed:
            where = "; ".join(f"{c.name} gives {', '.join(tags)}" for c, tags in users)
            raise ConfigError(
                f"{tag!r} is not a file tag of a load operation running query {query!r} "
                f"({where}); name the input after one of those tags",
                path,
                key,
            )
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in INPUT_KINDS:
            raise ConfigError(
                'an input is one of { json = "..." }, { xml = "..." } or '
                '{ file = "samples/x.ndjson" }',
                path,
                key,
            )
        kind, value = next(iter(spec.items()))
        if kind == "xml" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{kind} must be a string", path, key)
        if kind == "file" and not (project.root / value).is_file():
            raise ConfigError(
                f"no sample file {value} (paths are relative to the project)", path, key
            )
    if "expected" not in doc:
        raise ConfigError(
            "list the expected rows as [[expected]] tables (expected = [] for no rows)",
            path,
            "expected",
        )
    expected = doc["expected"]
    if not isinstance(expected, list) or not all(isinstance(r, dict) for r in expected):
        raise ConfigError("expected must be rows: [[expected]] tables", path, "expected")
    return QueryTest(path, query, inputs, expected, doc.get("description"))


def select_tests(project: Project, name: str | None) -> list[Path | QueryTest]:
    """Test files, or the ones for NAME (a test file name or a query name)."""
    out: list[Path | QueryTest] = []
    for path in test_files(project):
        if name is None or path.stem == name:
            out.append(path)
            continue
        try:
            test = load_test(project, path)
        except ConfigError:
            continue
        if test.query == name:
            out.append(test)
    return out


def run_tests(project: Project, name: str | None = None) -> list[Outcome]:
    engines = EngineSessions(project)
    try:
        return _run_tests(project, name, engines)
    finally:
        engines.close()


def _run_tests(project: Project, name: str | None, engines: EngineSessions) -> list[Outcome]:
    selected = select_tests(project, name)
    if name is not None and not selected:
        raise ConfigError(
            f"no query test named {name!r} and none for a query {name!r} under {TESTS_FOLDER}/"
        )
    outcomes = []
    for item in selected:
        path = item if isinstance(item, Path) else item.path
        try:
            test = item if isinstance(item, QueryTest) else load_test(project, item)
        except ConfigError as exc:
            outcomes.append(Outcome(None, path, error=str(exc)))
            continue
        outcomes.append(run_test(project, test, engines))
    return outcomes


def query_engines(project: Project, query: str) -> list[str]:
    """The other engines ([engines.NAME], not DuckDB) the couriers running `query` use."""
    names = {c.engine for c, _tags in query_users(project, query)}
    configured = project.settings.engines
    return sorted(n for n in names if n in configured and configured[n].type == "spark")


def spark_config(project: Project, name: str) -> SparkEngineConfig:
    config = project.settings.engines[name]
    assert isinstance(config, SparkEngineConfig)
    return config


class EngineSessions:
    """A session per other engine, opened on first use and closed at the end of the tests."""

    def __init__(self, project: Project):
        self.project = project
        self.sessions: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self.sessions:
            from courier.engines.spark import connect

            config = spark_config(self.project, name)
            self.sessions[name] = connect(name, config.remote, config.conf)
        return self.sessions[name]

    def close(self) -> None:
        for session in self.sessions.values():
            session.stop()
        self.sessions.clear()


def run_test(project: Project, test: QueryTest, engines: EngineSessions | None = None) -> Outcome:
    """The test on DuckDB (expected rows), then on every other engine its couriers use (the same
    rows as DuckDB, EXCEPT ALL both ways, differences listed row by row)."""
    query = project.queries[test.query]
    outcome = Outcome(test, test.path, query.path)
    with Workbench() as wb:
        try:
            read_inputs(project, test, wb)
            relation = wb.run_query(query, list(test.inputs))
            columns, rows = wb.fetch(relation, MAX_ROWS)
        except CourierError as exc:
            outcome.error = str(exc)
            return outcome
        outcome.rows = relation.rows
        types = {c: relation.columns[c] for c in columns}
        outcome.problems = compare(test.expected, columns, types, rows)
        for name in query_engines(project, test.query) if engines is not None else []:
            from courier.analyst.crossengine import compare as compare_engines

            assert engines is not None
            try:
                session = engines.get(name)
                config = spark_config(project, name)
                result = compare_engines(wb, session, name, config.remote, query, list(test.inputs))
            except CourierError as exc:
                outcome.problems.append(f"engine '{name}': {exc}")
                continue
            if result.identical:
                outcome.engines.append(name)
            outcome.problems += result.problems()
    return outcome


def read_inputs(project: Project, test: QueryTest, wb: Workbench) -> None:
    """The test's inputs into the workbench, each read as its courier reads its files."""
    couriers = {tag: c for c, tags in query_users(project, test.query) for tag in tags}
    for tag, spec in test.inputs.items():
        kind, value = next(iter(spec.items()))
        source = f"{test.path} [inputs.{tag}]"
        courier = couriers.get(tag)
        options = courier.options.model_dump() if courier else {}
        fmt = courier.format if courier else ("xml" if kind == "xml" else "ndjson")
        if kind == "file":
            wb.read_sample(tag, project.root / value, fmt, options)
        else:
            wb.read_payloads(tag, kind, value, source, fmt, options)
        bad = wb.inputs[tag].summary.bad
        if bad:
            raise ConfigError(
                f"input {tag}: line {bad[0].line}: {bad[0].reason}",
                test.path,
                f"inputs.{tag}",
            )


def compare(
    expected: list[dict[str, Any]],
    columns: list[str],
    types: dict[str, str],
    rows: list[tuple[Any, ...]],
) -> list[str]:
    problems: list[str] = []
    named = {c.lower(): c for c in columns}
    missing = sorted({k for row in expected for k in row if k.lower() not in named})
    if missing:
        problems.append(
            f"column(s) {', '.join(missing)} not in the result (columns: {', '.join(columns)})"
        )
        return problems
    for i, want in enumerate(expected):
        if i >= len(rows):
            problems.append(
                f"row {i + 1}: missing (the query returned {len(rows)} row(s), "
                f"{len(expected)} expected): {show_row(want)}"
            )
            continue
        actual = dict(zip(columns, rows[i], strict=True))
        for key, value in want.items():
            column = named[key.lower()]
            got = actual[column]
            if not same(value, got, types[column]):
                problems.append(
                    f"row {i + 1}, column {column}: expected {show(value)}, "
                    f"actual {show(got, types[column])}"
                    f"\n      actual row {i + 1}: {show_row(actual, types)}"
                )
            if len(problems) >= MAX_REPORTED:
                return problems
    for j in range(len(expected), len(rows)):
        actual = dict(zip(columns, rows[j], strict=True))
        problems.append(
            f"row {j + 1}: unexpected (the query returned {len(rows)} row(s), "
            f"{len(expected)} expected): {show_row(actual, types)}"
        )
        if len(problems) >= MAX_REPORTED:
            break
    return problems


def is_null_marker(value: Any) -> bool:
    return isinstance(value, dict) and value == {"null": True}


def same(expected: Any, actual: Any, column_type: str = "") -> bool:
    """Compare an expected TOML value with an engine value by meaning."""
    if is_null_marker(expected):
        return actual is None
    if actual is None:
        return False
    if column_type.upper() == "JSON" and isinstance(actual, str):
        try:
            actual = json.loads(actual)
        except ValueError:
            pass
    if isinstance(expected, bool) or isinstance(actual, bool):
        if isinstance(expected, bool) and isinstance(actual, bool):
            return expected == actual
        return str(expected).lower() == str(actual).lower()
    if isinstance(expected, int | float) or isinstance(actual, int | float | Decimal):
        a, b = number(expected), number(actual)
        if a is None or b is None:
            return False
        if isinstance(expected, float) or isinstance(actual, float):
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        return a == b
    if isinstance(expected, datetime | date | time) or isinstance(actual, datetime | date | time):
        a_t, b_t = moment(expected), moment(actual)
        return a_t is not None and a_t == b_t
    if isinstance(expected, dict):
        if isinstance(actual, str):
            actual = parse_json(actual)
        if not isinstance(actual, dict):
            return False
        keys = {str(k) for k in actual} | set(expected)
        return all(
            same(expected[k], actual.get(k)) if k in expected else actual.get(k) is None
            for k in keys
        )
    if isinstance(expected, list):
        if isinstance(actual, str):
            actual = parse_json(actual)
        if not isinstance(actual, list | tuple) or len(actual) != len(expected):
            return False
        return all(same(e, a) for e, a in zip(expected, actual, strict=True))
    if isinstance(expected, str):
        if isinstance(actual, dict | list):
            parsed = parse_json(expected)
            return parsed is not None and same(parsed, actual)
        return expected == str(actual)
    return bool(expected == actual)


def number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def moment(value: Any) -> datetime | date | time | None:
    """A point in time; naive datetimes are UTC."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "T")
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            value = datetime.fromisoformat(text)
        except ValueError:
            try:
                return time.fromisoformat(text)
            except ValueError:
                return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date | time):
        return value
    return None


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def show(value: Any, column_type: str = "") -> str:
    if is_null_marker(value) or value is None:
        return "NULL"
    if column_type.upper() == "JSON" and isinstance(value, str):
        parsed = parse_json(value)
        value = value if parsed is None and value.strip() != "null" else parsed
    v = jsonable(value)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return display(v)


def show_row(row: dict[str, Any], types: dict[str, str] | None = None) -> str:
    types = types or {}
    return "{" + ", ".join(f"{k}: {show(v, types.get(k, ''))}" for k, v in row.items()) + "}"
