-- Spark SQL twin of sessions.sql, for Spark engines (Spark and Sail resolve no column alias of
-- the same aggregating SELECT, so the duration is computed one level up). Same rows: checked by
-- `courier query test` on every engine.
WITH events AS (
    SELECT
        s.session_id,
        upper(s.type) AS event_type,
        try_cast(s.`timestamp` AS TIMESTAMP) AS event_at,
        get(filter(s.entities, kv -> kv.key = 'user_id'), 0).value AS user_id,
        get(filter(s.entities, kv -> kv.key = 'device'), 0).value AS device
    FROM session_events AS s
),
sessions AS (
    SELECT
        session_id,
        min(event_at) FILTER (WHERE event_type = 'START') AS started_at,
        max(event_at) FILTER (WHERE event_type = 'END') AS ended_at,
        count(*) FILTER (WHERE event_type = 'UPDATE') AS updates,
        coalesce(
            first(user_id, true) FILTER (WHERE event_type = 'START'), first(user_id, true)
        ) AS user_id,
        first(device, true) FILTER (WHERE event_type = 'START') AS device
    FROM events
    GROUP BY session_id
)
SELECT
    session_id,
    started_at,
    ended_at,
    -- whole milliseconds between the two, as DuckDB's date_diff('millisecond', ...)
    (floor(unix_micros(ended_at) / 1000) - floor(unix_micros(started_at) / 1000)) / 1000.0
        AS duration_s,
    updates,
    user_id,
    device
FROM sessions
ORDER BY coalesce(started_at, ended_at) NULLS LAST, session_id NULLS LAST
