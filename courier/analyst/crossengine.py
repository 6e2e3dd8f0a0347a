"""One saved query on DuckDB and on a Spark engine over the same inputs, rows compared.

The Spark side reads the inputs as NDJSON with the schema DuckDB read them with (Spark DDL, never
Spark's own inference), runs the query's Spark text (its twin queries/NAME.spark.sql, else the
translation), and hands back Arrow. The rows are compared in the analyst's DuckDB session with
EXCEPT ALL both ways, Spark's columns cast to DuckDB's types: a difference is a row one engine
returned and the other did not (as many times as it is missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    twin = getattr(query, "dialects", {}).get("spark")
    if twin is not None:
        return str(twin)
    return translate(query.sql, query.name, query.path, schema).sql


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
    wb.sql("SELECT 1")  # finishes the engine's last result (a fetchone) before register
    wb.con.register("__courier_other", other)
    try:
        names = other.column_names
        if [n.lower() for n in names] != [c.lower() for c in columns]:
            result.only_spark.append({"columns": ", ".join(names)})
            result.only_duckdb.append({"columns": ", ".join(columns)})
            result.missing, result.extra = duck.rows, other.num_rows
            return result
        left = ", ".join(quote(c) for c in columns)
        right = ", ".join(
            f"CAST({quote(n)} AS {t}) AS {quote(c)}"
            for n, (c, t) in zip(names, columns.items(), strict=True)
        )
        only_duck = (
            f"SELECT {left} FROM {quote(duck.name)} EXCEPT ALL SELECT {right} FROM __courier_other"
        )
        only_other = (
            f"SELECT {right} FROM __courier_other EXCEPT ALL SELECT {left} FROM {quote(duck.name)}"
        )
        for sql_text, rows_out, attr in (
            (only_duck, result.only_duckdb, "missing"),
            (only_other, result.only_spark, "extra"),
        ):
            setattr(result, attr, wb.sql(f"SELECT count(*) FROM ({sql_text})")[0][0])
            for row in wb.sql(f"{sql_text} LIMIT {MAX_SHOWN}"):
                rows_out.append(dict(zip(columns, row, strict=True)))
    finally:
        wb.con.unregister("__courier_other")
    return result


def _show(row: dict[str, Any]) -> str:
    from courier.analyst.querytest import show_row

    return show_row(row)
