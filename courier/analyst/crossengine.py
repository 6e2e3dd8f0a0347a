"""One saved query on DuckDB and on a Spark engine over the same inputs, rows compared.

The Spark side reads the inputs as NDJSON with the schema DuckDB read them with (Spark DDL, never
Spark's own inference), runs the query's Spark text (its twin queries/NAME.spark.sql, else the
translation), and hands back Arrow. The rows are compared in the analyst's DuckDB session with
EXCEPT ALL both ways, Spark's columns cast to DuckDB's types: a difference is a row one engine
returned and the other did not (as many times as it is missing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from courier.analyst.workbench import Workbench, quote
from courier.engines.spark import engine_error, spark_schema
from courier.engines.spark_dialect import translate
from courier.project import SavedQuery

MAX_SHOWN = 20


@dataclass
class Comparison:
    engine: str
    spark_sql: str
    rows: int = 0  # rows on the Spark engine
    only_duckdb: list[dict[str, Any]] = field(default_factory=list)
    only_spark: list[dict[str, Any]] = field(default_factory=list)
    missing: int = 0  # rows of DuckDB's result the engine did not return (EXCEPT ALL)
    extra: int = 0  # rows the engine returned that DuckDB did not

    @property
    def identical(self) -> bool:
        return self.missing == 0 and self.extra == 0

    def problems(self) -> list[str]:
        out = []
        if self.missing or self.extra:
            out.append(
                f"engine '{self.engine}': {self.missing} row(s) of DuckDB's result missing, "
                f"{self.extra} row(s) DuckDB did not return"
            )
        out += [f"engine '{self.engine}': only on DuckDB: {_show(r)}" for r in self.only_duckdb]
        out += [f"engine '{self.engine}': only on Spark: {_show(r)}" for r in self.only_spark]
        return out


def spark_text(query: SavedQuery, schema: dict[str, dict[str, str]]) -> str:
    """The query's Spark SQL: its twin queries/NAME.spark.sql, else the translation."""
    twin = query.path.with_name(f"{query.name}.spark.sql")
    if twin.is_file():
        return twin.read_text(encoding="utf-8")
    return translate(query.sql, query.name, query.path, schema).sql


def canonical_json(text: str | None) -> str | None:
    """JSON text by meaning: keys sorted, no spaces, 21.0 written as 21 (engines differ there)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _canonical_columns(table: pa.Table, names: list[str]) -> pa.Table:
    for name in names:
        i = table.column_names.index(name)
        values = [canonical_json(v) for v in table.column(i).cast(pa.string()).to_pylist()]
        table = table.set_column(i, name, pa.array(values, pa.string()))
    return table


def register_inputs(session: Any, inputs: dict[str, tuple[list[Path], dict[str, str]]]) -> None:
    """Each file tag as a temporary view of its NDJSON files, read with the given schema."""
    for tag, (paths, columns) in inputs.items():
        reader = session.read.schema(spark_schema(columns)).option("mode", "PERMISSIVE")
        reader.json([str(p) for p in paths]).createOrReplaceTempView(tag)


def compare(
    wb: Workbench,
    session: Any,
    engine: str,
    remote: str,
    query: SavedQuery,
    tags: list[str],
    sql: str | None = None,
) -> Comparison:
    """Run `query` on DuckDB (the workbench's inputs) and on the Spark session, compare rows."""
    inputs = {}
    for tag in tags:
        entry = wb.inputs[tag]
        columns = wb.columns(entry.relation)
        # CBOR/XML/JSON documents: the records as DuckDB read them, as NDJSON
        paths = entry.paths if entry.fmt == "ndjson" else [wb.export_ndjson(entry)]
        inputs[tag] = (paths, columns)
    text = sql if sql is not None else spark_text(query, {t: c for t, (_p, c) in inputs.items()})
    duck = wb.run_query(query, tags)
    try:
        register_inputs(session, inputs)
        other = session.sql(text).toArrow()
    except Exception as exc:  # pyspark's errors, named at this boundary
        raise engine_error(engine, remote, exc, query.name) from exc
    result = Comparison(engine, text, rows=other.num_rows)
    columns = wb.columns(duck)
    names = other.column_names
    if [n.lower() for n in names] != [c.lower() for c in columns]:
        result.only_spark.append({"columns": ", ".join(names)})
        result.only_duckdb.append({"columns": ", ".join(columns)})
        result.missing, result.extra = duck.rows, other.num_rows
        return result
    # JSON columns compare by meaning; the others as DuckDB types (Spark's cast to them)
    as_json = [c for c, t in columns.items() if t.upper() == "JSON"]
    select = ", ".join(quote(c) for c in columns)
    wb.sql("SELECT 1")  # finishes the engine's last result (its row count's fetchone)
    mine = wb.con.sql(f"SELECT {select} FROM {quote(duck.name)}").to_arrow_table()
    mine = _canonical_columns(mine, as_json)
    other = _canonical_columns(other.rename_columns(list(columns)), as_json)
    wb.con.register("__courier_mine", mine)
    wb.con.register("__courier_other", other)
    try:
        left = ", ".join(
            f"CAST({quote(c)} AS {'VARCHAR' if c in as_json else t}) AS {quote(c)}"
            for c, t in columns.items()
        )
        only_duck = (
            f"SELECT {left} FROM __courier_mine EXCEPT ALL SELECT {left} FROM __courier_other"
        )
        only_other = (
            f"SELECT {left} FROM __courier_other EXCEPT ALL SELECT {left} FROM __courier_mine"
        )
        for sql_text, rows_out, attr in (
            (only_duck, result.only_duckdb, "missing"),
            (only_other, result.only_spark, "extra"),
        ):
            setattr(result, attr, wb.sql(f"SELECT count(*) FROM ({sql_text})")[0][0])
            for row in wb.sql(f"{sql_text} LIMIT {MAX_SHOWN}"):
                rows_out.append(dict(zip(columns, row, strict=True)))
    finally:
        wb.con.unregister("__courier_mine")
        wb.con.unregister("__courier_other")
    return result


def _show(row: dict[str, Any]) -> str:
    from courier.analyst.querytest import show_row

    return show_row(row)
