"""Spark through Spark Connect (SPEC 8): sessions, schemas and errors at the boundary.

This module alone imports pyspark (the `courier[spark]` extra). courier's process holds only the
Spark Connect client: the cluster reads the files and runs the queries.

- `connect(name, remote, conf)`: a new session on `sc://host:port[/;token=...;use_ssl=true]`
  (the URL form Spark Connect takes; courier reads it from the config, where `${ENV}` keeps the
  token out of the repo). The server is probed first, so a server that is down fails in seconds
  with its address, not after the client's retry schedule. The URL's parameters (a token) are
  never printed: `redact(remote)`.
- `spark_type(duckdb_type)` / `spark_schema(columns)`: the pinned/declared schema of a file tag,
  as Spark DDL, so the cluster reads the same types DuckDB does (never Spark's own inference).
"""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import urlsplit

from courier.analyst.schema import TypeNode, parse_type
from courier.errors import EngineError, TransientEngineError

# DuckDB scalar types -> Spark SQL types (the rest: DECIMAL(p,s) as is, unknown -> STRING)
SCALARS = {
    "VARCHAR": "STRING",
    "JSON": "STRING",  # JSON text; courier's json feed type parses it
    "BOOLEAN": "BOOLEAN",
    "TINYINT": "TINYINT",
    "SMALLINT": "SMALLINT",
    "INTEGER": "INT",
    "BIGINT": "BIGINT",
    "HUGEINT": "DECIMAL(38,0)",
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INT",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20,0)",
    "FLOAT": "FLOAT",
    "DOUBLE": "DOUBLE",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP_NTZ",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMPTZ": "TIMESTAMP",
    "NULL": "STRING",
}
SESSION_CONF = {
    # DuckDB and courier's feeds work in UTC; Spark's default is the JVM's zone
    "spark.sql.session.timeZone": "UTC",
}
PROBE_TIMEOUT_S = 5.0


def redact(remote: str) -> str:
    """The Spark Connect URL without its parameters (a token lives there)."""
    return remote.split("/;", 1)[0].split(";", 1)[0]


def endpoint(remote: str) -> tuple[str, int]:
    parts = urlsplit(redact(remote))
    if parts.scheme != "sc" or not parts.hostname:
        raise EngineError(
            f"remote {redact(remote)!r} is not a Spark Connect URL: write sc://host:15002"
        )
    return parts.hostname, parts.port or 15002


def probe(name: str, remote: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast, naming the server, when nothing listens at the remote's host and port."""
    host, port = endpoint(remote)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        raise TransientEngineError(
            f"engine '{name}': the Spark Connect server at {redact(remote)} cannot be reached "
            f"({exc.strerror or exc}); start it, or fix [engines.{name}] remote in "
            "config/courier.toml",
            engine=name,
        ) from exc


def connect(name: str, remote: str, conf: dict[str, str] | None = None) -> Any:
    """A new Spark Connect session (not the process-wide default one)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineError(
            f"engine '{name}' needs the Spark Connect client: pip install 'courier[spark]'",
            engine=name,
        ) from exc
    probe(name, remote)
    builder = SparkSession.builder.remote(remote)
    for key, value in {**SESSION_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        session = builder.create()
        session.sql("SELECT 1").collect()
    except Exception as exc:  # pyspark's own error tree; translated here, at the boundary
        raise engine_error(name, remote, exc) from exc
    return session


def engine_error(
    name: str, remote: str, exc: BaseException, query: str | None = None
) -> EngineError:
    """A pyspark/grpc error as courier's EngineError: the server, the query, the first line."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = re.sub(r"token=[^;\s]+", "token=***", message)
    what = f"query '{query}' " if query else ""
    return EngineError(
        f"engine '{name}' ({redact(remote)}): {what}failed: {message}", engine=name, query=query
    )


def spark_type(duckdb_type: str) -> str:
    return _spark(parse_type(duckdb_type))


def spark_schema(columns: dict[str, str]) -> str:
    """Spark DDL (`a STRING, b ARRAY<STRUCT<...>>`) for DuckDB column types."""
    return ", ".join(f"{_name(c)} {spark_type(t)}" for c, t in columns.items())


def _name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _spark(node: TypeNode) -> str:
    if node.kind == "list":
        assert node.element is not None
        return f"ARRAY<{_spark(node.element)}>"
    if node.kind == "map":
        assert node.key is not None and node.element is not None
        return f"MAP<{_spark(node.key)}, {_spark(node.element)}>"
    if node.kind in ("struct", "union"):
        inner = ", ".join(f"{_name(n)}: {_spark(t)}" for n, t in node.fields)
        return f"STRUCT<{inner}>"
    name = node.name.upper()
    if name.startswith("DECIMAL") or name.startswith("NUMERIC"):
        return name.replace("NUMERIC", "DECIMAL")
    return SCALARS.get(name, "STRING")
