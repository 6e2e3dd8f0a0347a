-- One row per session: its START and END paired, with the duration in seconds. A session
-- whose START or END falls outside the window keeps that side NULL (and no duration); the
-- next window's row for it replaces this one (primary key session_id), so load windows that
-- hold whole sessions (daily) or accept open sessions at the edges.
WITH events AS (
    SELECT
        s.session_id,
        upper(s.type) AS event_type,
        TRY_CAST(s."timestamp" AS TIMESTAMPTZ) AS event_at,
        list_filter(s.entities, lambda kv: kv.key = 'user_id')[1].value AS user_id,
        list_filter(s.entities, lambda kv: kv.key = 'device')[1].value AS device
    FROM session_events AS s
)
SELECT
    session_id,
    min(event_at) FILTER (WHERE event_type = 'START') AS started_at,
    max(event_at) FILTER (WHERE event_type = 'END') AS ended_at,
    date_diff('millisecond', started_at, ended_at) / 1000.0 AS duration_s,
    count(*) FILTER (WHERE event_type = 'UPDATE') AS updates,
    coalesce(
        any_value(user_id) FILTER (WHERE event_type = 'START'), any_value(user_id)
    ) AS user_id,
    any_value(device) FILTER (WHERE event_type = 'START') AS device
FROM events
GROUP BY session_id
ORDER BY coalesce(started_at, ended_at), session_id
