"""One feed as a Delta Lake table (delta-rs): location, schema, and the run's idempotent commit.

The Delta destination (SPEC 8) keeps a feed at <storage>/<path>/<feed_id>. This module holds
the table operations on Arrow rows that are already the feed's columns:

- where: the table URL and delta-rs `storage_options`, derived from the courier storage entry
  (the same credentials and endpoint settings, never repeated in the destination config);
- what: the table's Arrow schema from the feed definition (decimal, timestamp as UTC, json as
  text, the `_courier_*` columns), checked against an existing table before anything is
  written: new feed columns are added explicitly (delta-rs' schema evolution inside MERGE has
  been unreliable), a type change or a changed primary key is refused, a table that is not this
  feed's is refused;
- how: one commit per feed and run, `append` (no primary key), `merge` (upsert on the primary
  key from a source with one row per key) or `overwrite` (truncateAndLoad). Each commit carries
  the Delta application transaction `courier:<courier>:<feed>` with the run's sequence number
  and the run id in its commit metadata. delta-rs accepts a repeated or lower transaction
  version, so the version is checked here before committing: a run that already committed is
  skipped (the caller holds the courier's lease, so nobody else commits for that app id).

Concurrent writers (other couriers loading the same feed) are Delta's optimistic concurrency:
delta-rs retries a commit that lost the race when the winner's changes do not conflict; a real
conflict (CommitFailedError) is retried here from a fresh snapshot (the transaction version is
checked again) and, when it persists, raised as a TransientLoadError for the run to retry.

S3 commits: put-if-absent (`conditional_put = etag`, an S3 `If-None-Match: *` PUT of the next
`_delta_log/N.json`), set explicitly so a library default cannot silently change it. S3 has
supported it since 2024 (moto and MinIO do too); it needs neither a DynamoDB lock table nor
`AWS_S3_ALLOW_UNSAFE_RENAME`, which would let two writers overwrite each other's commit.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from courier.destinations.base import FeedType
from courier.errors import ConfigError, LoadError, TransientError

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from courier.config.models import (
        AzureStorageConfig,
        FeedConfig,
        LocalStorageConfig,
        S3StorageConfig,
    )

TWriteMode = Literal["append", "merge", "overwrite"]

INSTALL_HINT = "pip install 'courier[delta]' (make install does it)"
SYSTEM_FIELDS = {"_courier_run_id": "string", "_courier_loaded_at": "timestamp"}
RUN_ID_KEY = "courier.run_id"
COURIER_KEY = "courier.courier"
RUN_FEEDS_KEY = "courier.run_feeds"
LOAD_KEY = "courier.load"  # what courier did: upsert (on the primary key), append, overwrite
LOADS = {"merge": "upsert", "append": "append", "overwrite": "overwrite"}
COMMIT_RETRIES = 5
HISTORY_DEPTH = 100  # latest commits searched for a run id


class TransientLoadError(LoadError, TransientError):
    """A Delta commit lost to concurrent writers more often than we retry: run again."""


def require_deltalake(where: str | None = None) -> None:
    """ConfigError with the install command when the `delta` extra is missing."""
    try:
        import deltalake  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"Delta destinations need deltalake: {INSTALL_HINT}", key=where) from exc


def app_id(courier: str, feed_id: str) -> str:
    return f"courier:{courier}:{feed_id}"


# -- where: table URL and storage options ------------------------------------------------------


@dataclass(frozen=True)
class DeltaLocation:
    """The root under which feed tables live, and how delta-rs reaches it."""

    storage: str  # the storage entry's name (for messages)
    root: str  # URL without a trailing slash: /abs/path, s3://bucket/prefix, az://container/p
    options: dict[str, str]

    def table_url(self, feed_id: str) -> str:
        return f"{self.root}/{feed_id}"

    def secrets(self) -> list[str]:
        return [v for k, v in self.options.items() if _secret_key(k) and v]


def _secret_key(key: str) -> bool:
    return any(word in key.upper() for word in ("SECRET", "KEY", "TOKEN", "SAS", "PASSWORD"))


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def delta_location(
    storage_name: str,
    config: LocalStorageConfig | S3StorageConfig | AzureStorageConfig,
    path: str,
    project_root: Path,
) -> DeltaLocation:
    """The tables' root URL and delta-rs storage_options from a courier storage entry."""
    if config.type == "local":
        base = Path(config.path)
        base = base if base.is_absolute() else project_root / base
        folder = (base / path).resolve() if path else base.resolve()
        return DeltaLocation(storage_name, str(folder).rstrip("/"), {})
    if config.type == "s3":
        options = {"conditional_put": "etag"}
        region = (
            config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        if region:
            options["AWS_REGION"] = region
        if config.endpoint_url:
            options["AWS_ENDPOINT_URL"] = config.endpoint_url
            if config.endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if config.access_key_id:
            options["AWS_ACCESS_KEY_ID"] = config.access_key_id
        if config.secret_access_key:
            options["AWS_SECRET_ACCESS_KEY"] = config.secret_access_key
        return DeltaLocation(
            storage_name, "s3://" + _join(config.bucket, config.prefix, path), options
        )
    url = "az://" + _join(config.container, config.prefix, path)
    return DeltaLocation(storage_name, url, azure_options(config))


def azure_options(config: AzureStorageConfig) -> dict[str, str]:
    options: dict[str, str] = {}
    if config.connection_string:
        parts = dict(
            p.split("=", 1)
            for p in config.connection_string.strip().strip(";").split(";")
            if "=" in p
        )
        if parts.get("AccountName"):
            options["AZURE_STORAGE_ACCOUNT_NAME"] = parts["AccountName"]
        if parts.get("AccountKey"):
            options["AZURE_STORAGE_ACCOUNT_KEY"] = parts["AccountKey"]
        if parts.get("SharedAccessSignature"):
            options["AZURE_STORAGE_SAS_KEY"] = parts["SharedAccessSignature"]
        endpoint = parts.get("BlobEndpoint")
        if endpoint:
            options["AZURE_STORAGE_ENDPOINT"] = endpoint.rstrip("/")
            if endpoint.startswith("http://"):
                options["allow_http"] = "true"
        return options
    url = (config.account_url or "").rstrip("/")
    m = re.match(r"^(https?)://([^./]+)\.", url)
    if m:
        options["AZURE_STORAGE_ACCOUNT_NAME"] = m.group(2)
    else:
        options["AZURE_STORAGE_ENDPOINT"] = url
        if url.startswith("http://"):
            options["allow_http"] = "true"
        tail = url.rsplit("/", 1)[-1]
        if tail:
            options["AZURE_STORAGE_ACCOUNT_NAME"] = tail
    credential = config.credential or ""
    if credential.startswith("?") or "sig=" in credential:
        options["AZURE_STORAGE_SAS_KEY"] = credential.lstrip("?")
    elif credential:
        options["AZURE_STORAGE_ACCOUNT_KEY"] = credential
    return options


# -- what: the feed's schema as Delta types ------------------------------------------------------


def delta_type(feed_type: str) -> str:
    """A feed type as Delta spells it in its schema ('bigint' -> 'long')."""
    if feed_type.startswith("decimal"):
        return feed_type.replace(" ", "")
    return {
        "string": "string",
        "int": "integer",
        "bigint": "long",
        "double": "double",
        "boolean": "boolean",
        "date": "date",
        "timestamp": "timestamp",
        "json": "string",
    }[feed_type]


def arrow_type(feed_type: str) -> pa.DataType:
    return FeedType.parse(feed_type).arrow()


def feed_columns(feed: FeedConfig) -> dict[str, str]:
    return {**feed.fields, **SYSTEM_FIELDS}


def feed_arrow_schema(feed: FeedConfig) -> pa.Schema:
    return pa.schema(
        [pa.field(n, arrow_type(t), nullable=True) for n, t in feed_columns(feed).items()]
    )


def table_description(feed: FeedConfig) -> str:
    """What courier records about the table in its Delta metadata (checked on every load)."""
    return json.dumps({"courier_feed": feed.id, "primary_key": feed.primary_key})


@dataclass(frozen=True)
class SchemaPlan:
    exists: bool
    add: dict[str, str]  # column -> Delta type, added before the data commit

    def changes(self, feed_id: str) -> list[str]:
        if not self.exists:
            return [f"created feed table {feed_id}"]
        return [f"added column {feed_id}.{n} {t}" for n, t in self.add.items()]


# -- errors ----------------------------------------------------------------------------------


_AUTH = re.compile(
    r"403|401|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|AuthenticationFailed|"
    r"AuthorizationFailure|Forbidden|credential|InvalidToken|ExpiredToken",
    re.I,
)
_MISSING_BUCKET = re.compile(r"NoSuchBucket|ContainerNotFound|bucket.*not.*exist", re.I)
_UNREACHABLE = re.compile(r"connect|timed out|dns|Connection refused|error sending request", re.I)


def _scrub(text: str, secrets: list[str]) -> str:
    """delta-rs' error text, short: no colour codes, no XML bodies, no secrets."""
    code = re.search(r"<Code>(\w+)</Code>", text)
    text = re.sub(r"\x1b\[[0-9;]*m|↳", " ", text)
    text = re.sub(r"<\?xml.*", "", text, flags=re.S)
    text = re.sub(r"\s+", " ", text).strip()
    if code:
        text = f"{text} {code.group(1)}"
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text[:500]


# -- how: one feed table ----------------------------------------------------------------------


class DeltaFeedTable:
    """A feed's Delta table at location.table_url(feed.id)."""

    def __init__(self, feed: FeedConfig, location: DeltaLocation):
        self.feed = feed
        self.location = location
        self.url = location.table_url(feed.id)
        self._dt: DeltaTable | None = None
        self.replaced: int | None = None  # rows the last write's MERGE updated

    # errors named after the feed and table, with what to do
    def _error(self, exc: BaseException, action: str) -> LoadError:
        from deltalake.exceptions import CommitFailedError

        text = _scrub(f"{type(exc).__name__}: {exc}", self.location.secrets())
        where = f"feed {self.feed.id}: {action} Delta table {self.url}"
        storage = f"[storages.{self.location.storage}] in config/courier.toml"
        if isinstance(exc, CommitFailedError):
            return TransientLoadError(
                f"{where}: the commit kept conflicting with other writers ({text}); "
                "nothing of this run was committed: run the courier again"
            )
        if _MISSING_BUCKET.search(text):
            return LoadError(
                f"{where}: the bucket or container does not exist ({text}): create it, or fix "
                f"{storage}"
            )
        if _AUTH.search(text):
            hint = ""
            if "AWS_ACCESS_KEY_ID" in self.location.options and os.environ.get(
                "AWS_SESSION_TOKEN"
            ):  # delta-rs takes the environment's session token to go with the entry's keys
                hint = (
                    "; AWS_SESSION_TOKEN is set in the environment, and delta-rs sends it with "
                    "the keys of the storage entry: unset it for courier, or leave the keys "
                    "out of the entry and give that session's keys in the environment"
                )
            return LoadError(
                f"{where}: storage refused the credentials ({text}): check the credentials "
                f"of {storage} and their permissions{hint}"
            )
        if _UNREACHABLE.search(text):
            return TransientLoadError(
                f"{where}: storage is not reachable ({text}): check the endpoint in {storage} "
                "and that the service is running; run again"
            )
        return LoadError(f"{where}: {text}")

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        from deltalake.exceptions import DeltaError

        try:
            yield
        except LoadError:
            raise
        except (DeltaError, OSError, ValueError, RuntimeError) as exc:
            raise self._error(exc, action) from exc

    def open(self, refresh: bool = False) -> DeltaTable | None:
        """The table (None when there is none at the URL yet)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        if self._dt is not None and not refresh:
            return self._dt
        with self._errors("open"):
            try:
                self._dt = DeltaTable(self.url, storage_options=self.location.options)
            except TableNotFoundError:  # the storage answered: the folder holds no table yet
                self._dt = None
        return self._dt

    def plan_schema(self) -> SchemaPlan:
        """Check an existing table against the feed; what must be added before loading.
        Refuses (LoadError) another feed's table, a changed primary key, a changed type."""
        dt = self.open()
        wanted = {n: delta_type(t) for n, t in feed_columns(self.feed).items()}
        if dt is None:
            return SchemaPlan(False, {})
        with self._errors("read the schema of"):
            have = {f.name: _type_name(f.type) for f in dt.schema().fields}
            description = dt.metadata().description
        fix = (
            f"point feed {self.feed.id} at another path ([destinations] path), or move the "
            f"table away and load again with --reload"
        )
        recorded = _recorded(description)
        if "_courier_run_id" not in have or (
            recorded is not None and recorded.get("courier_feed") != self.feed.id
        ):
            raise LoadError(
                f"feed {self.feed.id}: the Delta table at {self.url} is not this feed's table "
                f"(columns: {', '.join(have)}): {fix}"
            )
        if recorded is not None and list(recorded.get("primary_key", [])) != self.feed.primary_key:
            raise LoadError(
                f"feed {self.feed.id}: the Delta table at {self.url} was loaded with primary key "
                f"({', '.join(recorded.get('primary_key', [])) or 'none'}) but feeds/"
                f"{self.feed.id}.toml says ({', '.join(self.feed.primary_key) or 'none'}): "
                f"rows merged on one key cannot be merged on another; change primary_key back, "
                f"or {fix}"
            )
        for name, typ in wanted.items():
            if name in have and have[name] != typ:
                raise LoadError(
                    f"feed {self.feed.id}: column {name} is {have[name]} in the Delta table "
                    f"{self.url} but {self.feed.fields.get(name, typ)} in feeds/{self.feed.id}"
                    f".toml, and a Delta column's type cannot be changed in place. Change the "
                    f"type back, or {fix}"
                )
        return SchemaPlan(True, {n: t for n, t in wanted.items() if n not in have})

    def add_columns(self) -> list[str]:
        """Add the feed's new columns to an existing table (one commit, no data): for a writer
        that cannot evolve the schema itself (a Spark engine's MERGE)."""
        from deltalake.schema import Field, PrimitiveType

        plan = self.plan_schema()
        dt = self.open()
        if dt is None or not plan.add:
            return []
        with self._errors("add columns to"):
            dt.alter.add_columns(
                [Field(n, PrimitiveType(t), nullable=True) for n, t in plan.add.items()]
            )
        self._dt = None
        return list(plan.add)

    def committed_version(self, app: str) -> int | None:
        dt = self.open(refresh=True)
        if dt is None:
            return None
        with self._errors("read the transactions of"):
            return dt.transaction_version(app)

    def committed_run(
        self, courier: str | None, run_id: str, depth: int | None = HISTORY_DEPTH
    ) -> bool:
        """Is a commit of this run among the table's latest `depth` commits (None: all)?"""
        if self.open(refresh=True) is None:
            return False
        return any(
            h["run_id"] == run_id and (courier is None or h["courier"] == courier)
            for h in self.history(depth)
        )

    def write(
        self,
        data: pa.Table | Callable[[], pa.RecordBatchReader],
        mode: TWriteMode,
        *,
        courier: str,
        run_id: str,
        sequence: int | None = None,
        run_feeds: list[str] | None = None,
    ) -> bool:
        """Commit data for run `run_id` of `courier` (one Delta commit, plus one before it when
        columns are added). False when the run already committed here. With `sequence` (the
        run's place in the courier's run sequence) that is the transaction version: the table
        holding this very version from this run means committed; a higher version, or this one
        from another run, is refused (LoadError) - delta-rs would accept both. Without, a
        commit carrying the run id among the latest HISTORY_DEPTH means committed (the next
        version is then one more)."""
        from deltalake import CommitProperties, Transaction
        from deltalake.exceptions import CommitFailedError

        app = app_id(courier, self.feed.id)
        schema = feed_arrow_schema(self.feed)
        if isinstance(data, pa.Table):
            table = data.select(schema.names).cast(schema)
            data = lambda: pa.RecordBatchReader.from_batches(schema, table.to_batches())  # noqa: E731
        source = data
        delay = 0.2
        self.replaced = None
        for attempt in range(COMMIT_RETRIES):
            done = self.committed_version(app)
            if sequence is not None:
                if done is not None and done >= sequence:
                    if done == sequence and self._holds_run(courier, run_id):
                        return False
                    raise self._stale(app, done, sequence, run_id)
                version = sequence
            else:
                if done is not None and self.committed_run(courier, run_id):
                    return False
                version = (done or 0) + 1
            metadata = {RUN_ID_KEY: run_id, COURIER_KEY: courier, LOAD_KEY: LOADS[mode]}
            if run_feeds:  # every feed the run commits here ("did run R commit?" asks all)
                metadata[RUN_FEEDS_KEY] = ",".join(run_feeds)
            props = CommitProperties(
                custom_metadata=metadata,
                app_transactions=[Transaction(app, version)],
            )
            try:
                with self._errors("commit to"):
                    self._commit(conformed(source(), schema), mode, props)
                return True
            except TransientLoadError as exc:
                conflict = isinstance(exc.__cause__, CommitFailedError)
                if not conflict or attempt + 1 == COMMIT_RETRIES:
                    raise
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _holds_run(self, courier: str, run_id: str) -> bool:
        """This run's commit is in the table (the latest commits first; the whole log only
        when they do not hold it, since busy tables may have had many commits since)."""
        return self.committed_run(courier, run_id) or self.committed_run(courier, run_id, None)

    def _stale(self, app: str, done: int, sequence: int, run_id: str) -> LoadError:
        courier = app.split(":")[1]
        return LoadError(
            f"feed {self.feed.id}: the Delta table {self.url} already holds application "
            f"transaction {app} version {done}, and this run ({run_id}) is number {sequence} of "
            f"courier {courier}: another process committed a later run of a courier of that "
            "name into this table (another project, or a state database that was replaced or "
            "copied). Nothing of this run was committed to it. Give one of the couriers "
            "another name, or let only one project load this table"
        )

    def _commit(self, data: pa.RecordBatchReader, mode: TWriteMode, props: Any) -> None:
        from deltalake import write_deltalake
        from deltalake.schema import Field, PrimitiveType

        plan = self.plan_schema()
        dt = self.open()
        if dt is None:
            write_deltalake(
                self.url,
                data,
                mode="append",
                name=self.feed.id,
                description=table_description(self.feed),
                storage_options=self.location.options,
                commit_properties=props,
            )
            self._dt = None
            return
        if plan.add:
            dt.alter.add_columns(
                [Field(n, PrimitiveType(t), nullable=True) for n, t in plan.add.items()]
            )
            dt = self.open(refresh=True)
            assert dt is not None
        if mode == "overwrite":
            write_deltalake(dt, data, mode="overwrite", commit_properties=props)
        elif mode == "append" or not self.feed.primary_key:
            write_deltalake(dt, data, mode="append", commit_properties=props)
        else:
            first = next(iter(data), None)
            if first is None:  # an empty source commits only the run's transaction
                empty = data.schema.empty_table()
                write_deltalake(dt, empty, mode="append", commit_properties=props)
                self._dt = None
                return
            from courier.destinations.delta_merge import upsert

            # lands at the snapshot's next version or not at all: a commit between the read
            # and this one (even an append of the same new keys) makes it a conflict, retried
            props.max_commit_retries = 0
            data = chain_reader(first, data)
            schema = feed_arrow_schema(self.feed)
            self.replaced = upsert(dt, data, schema, list(self.feed.primary_key), props)
        self._dt = None

    # -- operations: history, optimize, reading back --------------------------------------

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        dt = self._require()
        with self._errors("read the history of"):
            out = []
            for h in dt.history(limit):
                out.append(
                    {
                        "version": h.get("version"),
                        "timestamp": h.get("timestamp"),
                        "operation": h.get("operation"),
                        "load": h.get(LOAD_KEY),  # an upsert commits as a WRITE
                        "run_id": h.get(RUN_ID_KEY),
                        "courier": h.get(COURIER_KEY),
                        "run_feeds": [f for f in (h.get(RUN_FEEDS_KEY) or "").split(",") if f],
                        "metrics": h.get("operationMetrics") or {},
                    }
                )
            return out

    def optimize(self, vacuum_hours: int | None = None) -> dict[str, Any]:
        """Compact small files, checkpoint the log, and (vacuum_hours) remove files no
        version younger than that needs."""
        dt = self._require()
        with self._errors("optimize"):
            compacted = dt.optimize.compact()
            dt = self._require(refresh=True)
            dt.create_checkpoint()
            removed: list[str] = []
            if vacuum_hours is not None:
                removed = dt.vacuum(
                    retention_hours=vacuum_hours, enforce_retention_duration=False, dry_run=False
                )
                dt.cleanup_metadata()
            return {"compacted": compacted, "vacuumed_files": len(removed)}

    def columns(self) -> dict[str, str] | None:
        dt = self.open(refresh=True)
        if dt is None:
            return None
        with self._errors("read the schema of"):
            return {f.name: _type_name(f.type) for f in dt.schema().fields}

    def row_count(self) -> int | None:
        dt = self.open(refresh=True)
        if dt is None:
            return None
        with self._errors("count"):
            return int(dt.count())

    def sample(self, limit: int) -> list[dict[str, object]]:
        dt = self.open(refresh=True)
        if dt is None:
            return []
        with self._errors("read"):
            return dt.to_pyarrow_dataset().head(int(limit)).to_pylist()  # type: ignore[no-any-return]

    def keys(self, columns: list[str]) -> pa.Table:
        """Only these columns of every row (a primary key's)."""
        dt = self._require(refresh=True)
        with self._errors("read"):
            return dt.to_pyarrow_dataset().to_table(columns=columns)

    def to_arrow(self) -> pa.Table:
        dt = self._require(refresh=True)
        with self._errors("read"):
            return dt.to_pyarrow_dataset().to_table()

    def _require(self, refresh: bool = False) -> DeltaTable:
        dt = self.open(refresh=refresh)
        if dt is None:
            raise LoadError(
                f"feed {self.feed.id}: there is no Delta table at {self.url} yet: run a courier "
                "that loads it first"
            )
        return dt


def conformed(reader: pa.RecordBatchReader, schema: pa.Schema) -> pa.RecordBatchReader:
    """The reader's batches with exactly the feed's columns and Arrow types, streamed."""
    batches = (b.select(schema.names).cast(schema) for b in reader)
    return pa.RecordBatchReader.from_batches(schema, batches)


def chain_reader(first: pa.RecordBatch, rest: pa.RecordBatchReader) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        yield first
        yield from rest

    return pa.RecordBatchReader.from_batches(rest.schema, batches())


def _type_name(t: Any) -> str:
    return str(getattr(t, "type", t)).replace(" ", "")


def _recorded(description: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(description or "")
    except ValueError:
        return None
    return value if isinstance(value, dict) and "courier_feed" in value else None
