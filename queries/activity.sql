-- One row per actor/action event (stream activity-events).
-- client_id is optional (multi-tenant senders only): the UNION ALL BY NAME below declares it,
-- so a window in which no sender set it still has the column (NULL) instead of failing.
-- The attribute objects vary by actor, context and object type, and may be absent: they are
-- read through JSON (absent -> NULL) and stored as JSON without the keys other events had.
WITH events AS (
    SELECT * FROM activity_events
    UNION ALL BY NAME
    SELECT CAST(NULL AS VARCHAR) AS client_id WHERE false
)
SELECT
    e.id AS event_id,
    e.client_id,
    e.actor.type AS actor_type,
    e.actor.id AS actor_id,
    e.action.name AS action,
    e.context.name AS context,
    e.object.type AS object_type,
    e.object.id AS object_id,
    -- the sender's local time with its offset, as an instant (UTC)
    TRY_CAST(e.metadata.localtimestamp AS TIMESTAMPTZ) AS occurred_at,
    e.metadata.useragent AS user_agent,
    json_strip_nulls(NULLIF(json_extract(to_json(e.actor), '$.attributes'), 'null'))
        AS actor_attributes,
    json_strip_nulls(NULLIF(json_extract(to_json(e.context), '$.attributes'), 'null'))
        AS context_attributes,
    json_strip_nulls(NULLIF(json_extract(to_json(e.object), '$.attributes'), 'null'))
        AS object_attributes
FROM events AS e
