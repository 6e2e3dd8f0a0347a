"""Typed config models. Shapes follow SPEC section 2: keys may be added, never renamed."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from courier.errors import closest

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")


def parse_duration_seconds(text: str) -> int:
    """'90s', '15m', '24h', '3d' -> seconds."""
    m = DURATION.match(text)
    if not m:
        raise ValueError(f"expected a duration like '15m', '24h' or '3d', got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def duration(text: str | None) -> timedelta | None:
    """A duration setting ('15m', '24h', ...) as a timedelta; None when unset."""
    return timedelta(seconds=parse_duration_seconds(text)) if text else None


IDENTIFIER_RULE = (
    " must start with a letter or '_' and hold only letters, digits and '_' (at most 63 characters)"
)
STREAM_ID_RULE = ": use letters, digits, '_', '.' and '-'"


def check_identifier(
    value: str, what: str, pattern: re.Pattern[str] = IDENTIFIER, rule: str = IDENTIFIER_RULE
) -> str:
    """value when it is a valid name (table, column, courier, stream, ...); else ValueError
    saying what it names and the rule."""
    if not pattern.match(value):
        raise ValueError(f"{what} {value!r}{rule}")
    return value


def named(what: str, pattern: re.Pattern[str] = IDENTIFIER, rule: str = IDENTIFIER_RULE) -> Any:
    """A field's check as a name, for Annotated[str, named("feed id")]."""
    return AfterValidator(lambda value: check_identifier(value, what, pattern, rule))


FeedId = Annotated[str, named("feed id")]
CourierName = Annotated[str, named("courier name")]
FileTag = Annotated[str, named("file_tag")]
StreamId = Annotated[str, named("stream id", STREAM_ID, STREAM_ID_RULE)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# -- settings: config/courier.toml ------------------------------------------------------------


class LocalStorageConfig(Strict):
    type: Literal["local"] = "local"
    path: str = ".courier/landing"


class S3StorageConfig(Strict):
    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


class AzureStorageConfig(Strict):
    type: Literal["azure"]
    container: str
    prefix: str = ""
    connection_string: str | None = None
    account_url: str | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _credentials(self) -> AzureStorageConfig:
        if not self.connection_string and not self.account_url:
            raise ValueError("set connection_string, or account_url (with credential)")
        return self


StorageConfig = Annotated[
    LocalStorageConfig | S3StorageConfig | AzureStorageConfig, Field(discriminator="type")
]


class ProjectSection(Strict):
    time_zone: str = "UTC"
    name: str | None = None


class FeedsSection(Strict):
    database: str = ".courier/feeds.duckdb"
    memory_limit: str | None = None  # e.g. "1GB": bounds the engine's memory (spills to disk)
    threads: int | None = None
    destination: str = "duckdb"  # a [destinations.NAME]; "duckdb" is the database above
    lock_timeout: float = Field(
        default=30,
        ge=0,
        description="seconds a run waits for the feed database while another process holds "
        "it (an open DuckDB session, another run), then fails naming that process",
    )


# -- backends: [destinations.NAME] / [engines.NAME] (SPEC 8); `type` picks the module ----------


class DuckDBDestinationConfig(Strict):
    type: Literal["duckdb"] = "duckdb"
    database: str | None = None  # None: [feeds] database


class MemoryDestinationConfig(Strict):
    """Arrow tables in a dict, for tests: gone when the process ends."""

    type: Literal["memory"]


class DeltaDestinationConfig(Strict):
    """Delta Lake tables (delta-rs) at <storage>/<path>/<feed_id>; credentials and endpoint
    come from the [storages.NAME] entry."""

    type: Literal["delta"]
    storage: str
    path: str = "feeds"

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        parts = [p for p in v.strip("/").split("/") if p]
        for part in parts:
            if part in (".", "..") or not re.fullmatch(r"[A-Za-z0-9_.=-]+", part):
                raise ValueError(
                    f"path {v!r}: use folder names of letters, digits, '_', '-', '.' and '=' "
                    "separated by '/'"
                )
        return "/".join(parts)


DestinationConfig = Annotated[
    DuckDBDestinationConfig | MemoryDestinationConfig | DeltaDestinationConfig,
    Field(discriminator="type"),
]


class StateSection(Strict):
    database: str = ".courier/feeds.duckdb"


class IngestSection(Strict):
    storage: str = "landing"
    wal_dir: str = ".courier/wal"
    tenant: str = "acme"
    tenant_header: str = "X-Amperity-Tenant"
    max_body_bytes: int = Field(default=254 * 1024, gt=0)  # 413 above this
    roll_seconds: float = Field(default=60.0, gt=0)  # a part file also rolls this often
    wal_max_bytes: int = Field(default=1 << 30, gt=0)  # 503 + Retry-After when the log is full
    fsync: bool = True  # fdatasync (group-committed) before every 202; off: tests/benches only
    body_timeout: float = Field(default=10.0, gt=0)  # 408 when a body takes longer to arrive
    xml_max_depth: int = Field(default=64, gt=0)  # deeper XML payloads are refused (400)
    shutdown_timeout: float = Field(default=30.0, ge=0)  # uploads tried this long on shutdown
    admin_token: str | None = None  # "${COURIER_ADMIN_TOKEN}": enables the token refresh API
    # connections (courier/ingest/http.py): 408 / 431 / 503 and close
    header_timeout: float = Field(default=10.0, gt=0)  # request line + headers within this
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)  # request line + headers
    max_headers: int = Field(default=100, gt=0)  # header fields per request
    max_connections: int = Field(default=1000, gt=0)  # open connections per worker process
    max_connections_per_client: int = Field(default=100, gt=0)  # from one address, per process
    keepalive_timeout: float = Field(default=5.0, gt=0)  # an idle keep-alive connection closes


class UiSection(Strict):
    """[ui]: the status page (`courier ui`, `courier scheduler --ui-port`)."""

    token: str | None = None  # "${COURIER_UI_TOKEN}"; else [ingest] admin_token; non-loopback only
    refresh_seconds: float = Field(default=5.0, gt=0)  # a new snapshot of the state this often


def default_storages() -> dict[str, StorageConfig]:
    return {"landing": LocalStorageConfig()}


class LogSinkConfig(Strict):
    type: Literal["log"] = "log"


class WebhookSinkConfig(Strict):
    type: Literal["webhook"]
    url: str  # e.g. "${ALERT_WEBHOOK_URL}": a webhook URL is a secret, keep it out of the repo
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError("a webhook url starts with http:// or https://")
        return v


class CommandSinkConfig(Strict):
    type: Literal["command"]
    command: list[str] = Field(min_length=1)  # argv; the alert is JSON on stdin and in env
    timeout: float = Field(default=30.0, gt=0)


AlertSinkConfig = Annotated[
    LogSinkConfig | WebhookSinkConfig | CommandSinkConfig, Field(discriminator="type")
]


class AlertsSection(Strict):
    """[alerts] sinks = [{type = "log"}, {type = "webhook", url = "..."}, {type = "command"}]"""

    sinks: list[AlertSinkConfig] = Field(default_factory=lambda: default_sinks())


def default_sinks() -> list[LogSinkConfig | WebhookSinkConfig | CommandSinkConfig]:
    return [LogSinkConfig()]


# -- engines: [engines.NAME] (SPEC 8); `type` picks the module --------------------------------


class DuckDBEngineConfig(Strict):
    type: Literal["duckdb"] = "duckdb"


class SparkEngineConfig(Strict):
    """Apache Spark through Spark Connect. remote: sc://host:port, with Spark Connect's own
    parameters after `/;` (token=${SPARK_CONNECT_TOKEN};use_ssl=true), resolved from the
    environment. conf: Spark session settings. cluster_uri: per storage, the URI prefix under
    which the cluster reads that storage's files (s3a://bucket/prefix/ for an s3 storage,
    abfss://container@account.dfs.core.windows.net/prefix/ for an azure one)."""

    type: Literal["spark"]
    remote: str
    conf: dict[str, str] = Field(default_factory=dict)
    cluster_uri: dict[str, str] = Field(default_factory=dict)

    @field_validator("remote")
    @classmethod
    def _remote(cls, v: str) -> str:
        if not v.startswith("sc://") or len(v.split("/;", 1)[0]) <= len("sc://"):
            raise ValueError(
                "remote must be a Spark Connect URL: sc://host:15002 (token and TLS as "
                "/;token=${SPARK_CONNECT_TOKEN};use_ssl=true)"
            )
        return v


EngineConfig = Annotated[DuckDBEngineConfig | SparkEngineConfig, Field(discriminator="type")]


class Settings(Strict):
    project: ProjectSection = ProjectSection()
    storages: dict[str, StorageConfig] = Field(default_factory=lambda: default_storages())
    feeds: FeedsSection = FeedsSection()
    state: StateSection = StateSection()
    ingest: IngestSection = IngestSection()
    alerts: AlertsSection = AlertsSection()
    ui: UiSection = UiSection()
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    engines: dict[str, EngineConfig] = Field(default_factory=dict)

    @field_validator("storages", "destinations", "engines")
    @classmethod
    def _names(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for name in v:
            check_identifier(name, f"{(info.field_name or '').rstrip('s')} name")
        return v

    def destination(
        self, name: str
    ) -> DuckDBDestinationConfig | MemoryDestinationConfig | DeltaDestinationConfig:
        """The [destinations.NAME] config; "duckdb" is implicit (the [feeds] database)."""
        if name in self.destinations:
            return self.destinations[name]
        if name == "duckdb":
            return DuckDBDestinationConfig()
        raise KeyError(name)

    def engine(self, name: str) -> DuckDBEngineConfig | SparkEngineConfig:
        """The [engines.NAME] config; "duckdb" is implicit."""
        if name in self.engines:
            return self.engines[name]
        if name == "duckdb":
            return DuckDBEngineConfig()
        raise KeyError(name)


# -- feeds: feeds/FEED.toml -------------------------------------------------------------------

FEED_TYPE = re.compile(
    r"^(string|int|bigint|double|boolean|date|timestamp|json|decimal\(\s*\d+\s*,\s*\d+\s*\))$"
)


class FeedConfig(Strict):
    id: FeedId
    fields: dict[str, str]
    primary_key: list[str] = Field(default_factory=list)
    required: list[str] = Field(default_factory=list)
    unknown_columns: Literal["ignore", "reject"] = "ignore"
    description: str | None = None
    destination: str | None = None  # a [destinations.NAME]; None: [feeds] destination

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("a feed needs at least one field under [fields]")
        out = {}
        for name, typ in v.items():
            check_identifier(name, "field name")
            if name.startswith("_courier_"):
                raise ValueError(f"field {name!r}: the _courier_ prefix is reserved")
            t = typ.strip().lower()
            if not FEED_TYPE.match(t):
                raise ValueError(
                    f"field {name!r} has type {typ!r}; use string, int, bigint, decimal(p,s), "
                    "double, boolean, date, timestamp or json"
                )
            out[name] = re.sub(r"\s+", "", t)
        return out

    @model_validator(mode="after")
    def _keys(self) -> FeedConfig:
        for key_list, what in ((self.primary_key, "primary_key"), (self.required, "required")):
            for f in key_list:
                if f not in self.fields:
                    raise ValueError(
                        f"{what} names {f!r}, which is not under [fields] "
                        f"(fields: {', '.join(self.fields)})"
                    )
        return self

    @property
    def not_null(self) -> list[str]:
        return list(dict.fromkeys([*self.primary_key, *self.required]))


# -- couriers: config/couriers/NAME.toml ------------------------------------------------------


class SqlFile(Strict):
    file: str
    options: dict[str, Any] = Field(default_factory=dict)


class LoadOperation(Strict):
    type: Literal["load", "truncateAndLoad", "sql"]
    file: str | None = None
    sql_query: str | None = Field(default=None, alias="sql-query")
    sql_files: list[SqlFile] = Field(default_factory=list, alias="sql-files")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if data.get("type") == "spark-sql":
                data["type"] = "sql"
            for spark, ours in (("spark-sql-query", "sql-query"), ("spark-sql-files", "sql-files")):
                if spark in data:
                    data.setdefault(ours, data.pop(spark))
            for snake, dash in (("sql_query", "sql-query"), ("sql_files", "sql-files")):
                if snake in data:
                    data.setdefault(dash, data.pop(snake))
        return data

    @model_validator(mode="after")
    def _shape(self) -> LoadOperation:
        if self.type == "sql":
            if not self.sql_query:
                raise ValueError("a 'sql' load operation needs sql-query = \"QUERY_NAME\"")
        elif not self.file:
            raise ValueError(f"a '{self.type}' load operation needs file = \"FILE_TAG\"")
        return self

    @property
    def tags(self) -> list[str]:
        if self.type == "sql":
            return [f.file for f in self.sql_files]
        return [self.file] if self.file else []


Format = Literal["ndjson", "cbor", "json", "xml"]


# A courier's `options`: these two here, the tree formats' in courier/formats/options.py
# (checked there, with their types). Any other key is a typo: refused with a suggestion.
FORMAT_OPTIONS = {
    "record_path": "dotted path to the elements that become rows (cbor, json, xml)",
    "force_list": "element names always read as lists (xml, cbor from xml)",
    "max_depth": "deepest nesting accepted in a document (xml)",
    "max_document_bytes": "largest document read whole (json, xml)",
    "decode": '"json" (default) or "arrow": how tree formats reach the engine',
    "decode_workers": "processes decoding a large window (default: the cores)",
}


class CourierOptions(Strict):
    model_config = ConfigDict(extra="allow", frozen=True)
    max_bad_records: float = 100
    schema_scan: Literal["detect", "full"] = "detect"
    max_columns: int = Field(
        default=500,
        gt=0,
        description="top-level columns a file tag holds at most: a record whose new keys "
        "would take it past this is quarantined (too many keys); the pinned schema never "
        "grows beyond it",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [*cls.model_fields, *FORMAT_OPTIONS]
            unknown = [k for k in data if k not in known]
            if unknown:
                raise ValueError(
                    "; ".join(unknown_key_message(k, known, "option") for k in unknown)
                )
        return data


def unknown_key_message(key: str, known: list[str], what: str = "key") -> str:
    """'unknown option 'forcelist': did you mean 'force_list'? (known: ...)'"""
    guess = closest(key, known)
    hint = f"did you mean {guess!r}?" if guess else "remove it or check its spelling"
    return f"unknown {what} {key!r}: {hint} (known: {', '.join(sorted(known))})"


class CourierConfig(Strict):
    name: CourierName
    storage: str = "landing"
    stream: StreamId | None = None
    file_pattern: str | None = None
    prefix: str | None = None
    format: Format = "ndjson"
    file_tag: FileTag
    load_operations: dict[str, list[LoadOperation]] = Field(default_factory=dict)
    skip_missing: bool = False
    required: bool = True
    lookback: str | None = None
    options: CourierOptions = CourierOptions()
    description: str | None = None
    engine: str = "duckdb"  # an [engines.NAME]; "duckdb" is implicit

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"([01]\d|2[0-3])", v):
            raise ValueError(f'prefix {v!r}: use a two-digit hour "00" to "23"')
        return v

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration_seconds(v)
        return v

    @field_validator("load_operations")
    @classmethod
    def _feeds(cls, v: dict[str, list[LoadOperation]]) -> dict[str, list[LoadOperation]]:
        for feed in v:
            check_identifier(feed, "feed id")
        return v

    @model_validator(mode="after")
    def _pattern(self) -> CourierConfig:
        if not self.file_pattern and not self.stream:
            raise ValueError("set file_pattern, or stream for the stream's landing layout")
        return self

    @property
    def pattern(self) -> str:
        if self.file_pattern:
            return self.file_pattern
        ext = {"ndjson": "ndjson", "cbor": "cbor", "json": "json", "xml": "xml"}[self.format]
        return f"'{self.stream}/'yyyy/MM/dd/HH'/*.{ext}'"


# -- streams: config/streams/ID.toml ----------------------------------------------------------


class StreamAuth(Strict):
    algorithm: Literal["HS256", "RS256"] = "HS256"
    secret: str | None = None
    public_key: str | None = None
    private_key: str | None = None


class StreamKeyHeaders(Strict):
    """Header-key auth (API keys, `courier apikey create`): which headers carry what."""

    id_header: str = "X-App-Id"
    secret_header: str = "X-App-Secret"  # noqa: S105 (a header name, not a secret)
    client_header: str = "X-Client-Instance"  # names the client of a multi-tenant producer


class WebhookConfig(Strict):
    """POST /webhook/v0/{stream}: an HMAC signature of the raw body (courier/ingest/webhooks.py)."""

    preset: Literal["github", "stripe"] | None = None
    secret: str | None = None  # usually "${ENV}"
    header: str | None = None  # the signature header
    algorithm: Literal["sha1", "sha256"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # e.g. "sha256=" before the signature
    timestamp_header: str | None = None  # replay protection: the signing time (unix seconds)
    tolerance: int = Field(default=300, gt=0)  # seconds a signed request stays acceptable
    signed_payload: str = "{body}"  # what is signed, e.g. "v0:{timestamp}:{body}"
    delivery_header: str | None = None  # the sender's delivery id: a repeat lands nothing
    dedupe_seconds: int = Field(default=7 * 86400, gt=0)  # delivery ids are kept this long


class StreamConfig(Strict):
    model_config = ConfigDict(extra="allow", frozen=True)
    id: StreamId
    payload: Literal["json", "xml"] = "json"
    tenant: str | None = None
    batch_arrays: bool = False
    rate_limit: float = Field(default=5000, gt=0)  # accepted payloads/s (429 above)
    roll_bytes: int = Field(default=128 * 1024 * 1024, ge=1024)  # part files roll at this size
    storage: str | None = None
    auth: StreamAuth = StreamAuth()
    api_keys: StreamKeyHeaders = StreamKeyHeaders()
    envelope: bool = False  # land {"received_at","client_id","source","payload"}
    webhook: WebhookConfig | None = None


# -- groups: config/groups/NAME.toml ----------------------------------------------------------


def check_duration(value: str | None, what: str, positive: bool = False) -> str | None:
    if value is None:
        return None
    seconds = parse_duration_seconds(value)
    if positive and seconds <= 0:
        raise ValueError(f"{what} must be longer than zero, got {value!r}")
    return value


class GroupCourier(Strict):
    """One courier of a group: how its scheduled window sits behind the run time (SPEC 3)."""

    name: str
    offset: str = "0h"  # the window ends this far behind the scheduled time
    range: str | None = None  # how much the window covers; default: the schedule period
    wait: str = "0m"  # keep polling this long for files of every partition in the window
    required: bool = True  # missing files fail the run and alert; false: run with what is there
    lookback: str | None = None  # overrides the courier's lookback
    alert_after: str | None = None  # alert when a run takes longer than this
    retries: int = Field(default=3, ge=0)  # later runs retry a failed window this many times

    @field_validator("offset", "wait", "lookback", "alert_after")
    @classmethod
    def _durations(cls, v: str | None) -> str | None:
        return check_duration(v, "the duration")

    @field_validator("range")
    @classmethod
    def _range(cls, v: str | None) -> str | None:
        return check_duration(v, "range", positive=True)


class GroupConfig(Strict):
    name: str
    schedule: str  # cron: "min hour day month weekday" (or seconds first), in time_zone
    time_zone: str | None = None  # default: [project] time_zone
    file_dates_in_time_zone: bool = True  # false: file paths keep the project's zone
    catch_up: Literal["all", "latest", "none"] = "latest"
    run_after: list[str] = Field(default_factory=list)
    max_parallel: int = Field(default=4, ge=1, le=64)  # couriers of the group run in parallel
    couriers: list[GroupCourier] = Field(default_factory=list)

    @field_validator("couriers")
    @classmethod
    def _members(cls, v: list[GroupCourier]) -> list[GroupCourier]:
        if not v:
            raise ValueError('a group needs at least one [[couriers]] entry with name = "..."')
        seen: set[str] = set()
        for member in v:
            if member.name in seen:
                raise ValueError(f"courier {member.name!r} is listed twice; list it once")
            seen.add(member.name)
        return v
