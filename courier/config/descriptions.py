"""What each config key does, for docs/configuration.md, where the model field carries neither
a description nor a trailing comment. Keyed by model class and field name; a test fails when
an entry names no field (a renamed key) or a key has no description anywhere.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # config/courier.toml
    "Settings.project": "project-wide settings: `[project]`",
    "ProjectSection.time_zone": "IANA zone (e.g. `Europe/Berlin`) of `--date`/`--hour`, daily "
    "partitions, group schedules without their own zone, and the status page's axes",
    "ProjectSection.name": "a name for the project (informational: courier does not use it)",
    "Settings.storages": "named object storages (`[storages.NAME]`) couriers read and the ingest "
    "API lands in; by default one local folder named `landing`",
    "AzureStorageConfig.type": '`"azure"`: an Azure Blob container',
    "AzureStorageConfig.container": "the blob container",
    "AzureStorageConfig.prefix": "folder inside the container all keys live under",
    "AzureStorageConfig.connection_string": 'e.g. `"${AZURE_STORAGE_CONNECTION_STRING}"`; '
    "or account_url with credential",
    "AzureStorageConfig.account_url": "`https://ACCOUNT.blob.core.windows.net` (with credential)",
    "AzureStorageConfig.credential": "account key or SAS token for account_url, from the "
    'environment (`"${AZURE_STORAGE_KEY}"`)',
    "S3StorageConfig.type": '`"s3"`: an Amazon S3 (or S3-compatible) bucket',
    "S3StorageConfig.bucket": "the bucket",
    "S3StorageConfig.prefix": "folder inside the bucket all keys live under",
    "S3StorageConfig.endpoint_url": "an S3-compatible endpoint (MinIO, moto); unset: AWS",
    "S3StorageConfig.region": "the bucket's region; unset: the AWS default chain",
    "S3StorageConfig.access_key_id": 'e.g. `"${AWS_ACCESS_KEY_ID}"`; unset: the AWS default '
    "credential chain (instance role, profile, environment)",
    "S3StorageConfig.secret_access_key": 'e.g. `"${AWS_SECRET_ACCESS_KEY}"`, with access_key_id',
    "LocalStorageConfig.type": '`"local"`: a folder on this machine',
    "LocalStorageConfig.path": "the folder, relative to the project",
    "Settings.feeds": "the feed database and how runs use it: `[feeds]`",
    "FeedsSection.database": "DuckDB file holding the feed tables and courier's own "
    "(courier.files, courier.runs, courier.quarantine, ...), relative to the project",
    "FeedsSection.threads": "DuckDB threads of a run; unset: the cores",
    "Settings.state": "where courier keeps its run state: `[state]`",
    "StateSection.database": "must be the feed database for now (state and feed rows commit in "
    "one transaction)",
    "Settings.ingest": "the ingest API (`courier serve`) and `courier land`: `[ingest]`",
    "IngestSection.storage": "the storage (`[storages.NAME]`) payloads land in, unless a stream "
    "names its own",
    "IngestSection.wal_dir": "folder of the write-ahead logs (one per server process); put it "
    "on a local disk",
    "IngestSection.tenant": "tenant id producers must send (header below, or a token's `tenant` "
    "claim), unless a stream names its own",
    "IngestSection.tenant_header": "request header carrying the tenant id",
    "Settings.alerts": "where alerts go: `[alerts]`",
    "AlertsSection.sinks": 'a list of sinks: `{type = "log"}`, `{type = "webhook", url = ...}`, '
    '`{type = "command", command = [...]}`; default: the log',
    "CommandSinkConfig.type": '`"command"`: run a program for each alert',
    "CommandSinkConfig.timeout": "seconds the command may run",
    "WebhookSinkConfig.type": '`"webhook"`: POST each alert as JSON',
    "WebhookSinkConfig.headers": 'extra request headers, e.g. `{Authorization = "Bearer '
    '${ALERT_TOKEN}"}`',
    "WebhookSinkConfig.timeout": "seconds per delivery attempt",
    "LogSinkConfig.type": '`"log"`: write each alert to the log (stderr)',
    "Settings.ui": "the status page (`courier ui`, `courier scheduler --ui-port`): `[ui]`",
    "Settings.destinations": "named feed destinations (`[destinations.NAME]`) a feed or "
    "`[feeds] destination` may choose; `duckdb` (the feed database) always exists",
    "DeltaDestinationConfig.type": '`"delta"`: Delta Lake tables (delta-rs)',
    "DeltaDestinationConfig.storage": "the storage (`[storages.NAME]`) holding the tables; its "
    "credentials are used",
    "DeltaDestinationConfig.path": "folder of the tables inside the storage: one table per feed "
    "at `<path>/<feed id>`",
    "MemoryDestinationConfig.type": '`"memory"`: Arrow tables in memory, for tests',
    "DuckDBDestinationConfig.type": '`"duckdb"`: tables in a DuckDB file',
    "Settings.engines": "named query engines (`[engines.NAME]`) a courier's `engine` may choose; "
    "`duckdb` always exists",
    "SparkEngineConfig.type": '`"spark"`: a Spark Connect server (query tests today; runs not '
    "yet wired)",
    "SparkEngineConfig.remote": '`"sc://HOST:15002"`, parameters such as '
    "`;token=${SPARK_CONNECT_TOKEN};use_ssl=true` after it",
    "SparkEngineConfig.conf": 'Spark session settings, e.g. `{"spark.sql.shuffle.partitions" = '
    '"64"}`',
    "SparkEngineConfig.cluster_uri": "storage name -> the URI the cluster reads it at "
    '(`lake = "s3a://bucket/landing/"`)',
    "DuckDBEngineConfig.type": '`"duckdb"`: the embedded engine',
    # config/couriers/NAME.toml
    "CourierConfig.name": "the courier's name: the file name (set here only to match it)",
    "CourierConfig.storage": "the storage (`[storages.NAME]`) the files are read from",
    "CourierConfig.stream": "read this ingest stream's landing layout "
    "(`{stream}/yyyy/MM/dd/HH/*.{format}`); or give file_pattern",
    "CourierConfig.file_pattern": "where the files are, e.g. `\"'web/'yyyy/MM/dd/HH'/*.ndjson'\"` "
    "(date parts outside quotes, literal text inside)",
    "CourierConfig.prefix": 'daily partitions starting at this hour, `"00"` to `"23"` '
    '(`"00"`: midnight to midnight); unset: hourly partitions when the pattern has an hour, '
    "else daily from midnight",
    "CourierConfig.format": "`ndjson`, `cbor`, `json` or `xml`: how the files are read",
    "CourierConfig.file_tag": "the name queries read the files by (`FROM web_events`)",
    "CourierConfig.load_operations": "feed id -> how it is loaded: "
    '`[{type = "sql", sql-query = "QUERY", sql-files = [{file = "TAG"}]}]`',
    "LoadOperation.type": '`"load"` (the tag itself), `"truncateAndLoad"` (empty the feed '
    'first) or `"sql"` (a saved query over tags)',
    "LoadOperation.file": "the file tag loaded (`load`, `truncateAndLoad`)",
    "LoadOperation.sql_query": "the saved query `queries/NAME.sql` (`sql`)",
    "LoadOperation.sql_files": 'the file tags the query reads: `[{file = "TAG"}]` (`sql`)',
    "SqlFile.file": "a file tag the query reads",
    "SqlFile.options": "accepted for compatibility with Amperity courier files; not used",
    "CourierConfig.skip_missing": "an empty window is no error: the run is skipped, with a warning",
    "CourierConfig.required": "false: a run over an empty window is skipped, not failed",
    "CourierConfig.lookback": 'also load never-loaded files this far before the window (`"3d"`)',
    "CourierConfig.options": "read options: max_bad_records, schema_scan, max_columns and the "
    "tree formats' (see below); an unknown option is refused",
    "CourierOptions.max_bad_records": "more bad records than this fail the run (a count, or a "
    "fraction of the records below 1)",
    "CourierOptions.schema_scan": '`"detect"` (a sample, widened when a record has keys it '
    'missed) or `"full"` (every record)',
    "CourierConfig.description": "free text for the file's readers",
    # config/streams/ID.toml
    "StreamConfig.id": "the stream id: the file name (set here only to match it)",
    "StreamConfig.payload": '`"json"` (landed as NDJSON) or `"xml"` (landed as CBOR)',
    "StreamConfig.tenant": "the tenant producers must name; unset: `[ingest] tenant`",
    "StreamConfig.batch_arrays": "a top-level JSON array is a batch: each element one record "
    "(all or none)",
    "StreamConfig.storage": "land in this storage instead of `[ingest] storage`",
    "StreamConfig.auth": "how producers' tokens are checked: `[auth]`",
    "StreamAuth.algorithm": '`"HS256"` (secret) or `"RS256"` (public_key); pinned per stream',
    "StreamAuth.secret": 'HS256 key, 32+ bytes, from the environment (`"${COURIER_JWT_SECRET}"`)',
    "StreamAuth.public_key": "RS256: PEM text or file that verifies tokens",
    "StreamAuth.private_key": "RS256: PEM text or file that signs them (`courier token create`)",
    "StreamConfig.api_keys": "header names of API-key producers: `[api_keys]`",
    "StreamKeyHeaders.id_header": "header carrying the key id",
    "StreamConfig.webhook": "accept signed webhooks at `POST /webhook/v0/{stream}`: `[webhook]`",
    "WebhookConfig.preset": '`"github"` or `"stripe"`: their header, algorithm and signed text',
    "WebhookConfig.algorithm": "HMAC hash: `sha1` or `sha256`",
    "WebhookConfig.encoding": "how the signature is written: `hex` or `base64`",
    # config/groups/NAME.toml
    "GroupConfig.name": "the group's name: the file name (set here only to match it)",
    "GroupConfig.catch_up": "fire times missed while the scheduler was down: run `all`, the "
    "`latest` only, or `none`",
    "GroupConfig.run_after": "groups whose runs at or before the same time must finish first",
    "GroupConfig.couriers": 'the members: `[[couriers]] name = "..."` with the keys below',
    "GroupCourier.name": "a courier of config/couriers/",
    # config/sources/NAME.toml
    "SourceConfig.name": "the source's name: the file name (set here only to match it)",
    "SourceConfig.type": '`"http_poll"` (page through an API) or `"file_pull"` (list, get, '
    "delete files)",
    "SourceConfig.stream": "the (JSON) stream the records land in",
    "SourceConfig.interval": 'time between rounds under `courier poll`/`scheduler` (`"5m"`)',
    "SourceConfig.headers": 'request headers, secrets as `"${ENV}"` (`Authorization = "Bearer '
    '${TOKEN}"`)',
    "SourceConfig.timeout": "seconds per request",
    "SourceConfig.max_retries": "retries of a 429, 5xx or network error, with back-off",
    "SourceConfig.url": "http_poll: the first page's URL",
    "SourceConfig.cursor": "http_poll: resume where the last round stopped: `[cursor]`",
    "CursorConfig.param": "the query parameter the cursor is sent in",
    "SourceConfig.pagination": "http_poll: how to reach the next page: `[pagination]`",
    "SourceConfig.files": "file_pull: JSON pointer to the names in the list answer "
    '(`""`: the body is the array)',
    "SourceConfig.num_files": "file_pull: names asked for per list call",
    "SourceConfig.num_files_param": "file_pull: the query parameter carrying num_files",
    # feeds/ID.toml
    "FeedConfig.id": "the feed id and table name: the file name (set here only to match it)",
    "FeedConfig.fields": "column -> type: string, int, bigint, decimal(p,s), double, boolean, "
    "date, timestamp or json",
    "FeedConfig.primary_key": "columns rows are upserted on (the last record wins); empty: "
    "rows are appended",
    "FeedConfig.required": "columns that must not be NULL: a row without one is quarantined",
    "FeedConfig.unknown_columns": '`"ignore"` query columns not under [fields], or `"reject"` '
    "(quarantine) the rows carrying them",
    "FeedConfig.description": "free text for the file's readers",
}
