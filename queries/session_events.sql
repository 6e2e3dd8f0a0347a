-- One row per session event (START / UPDATE / END), the entities key/value list pivoted into
-- columns for the keys clients send; all pairs are kept as entities (JSON) too.
SELECT
    s.session_id,
    upper(s.type) AS event_type,
    TRY_CAST(s."timestamp" AS TIMESTAMPTZ) AS occurred_at,
    list_filter(s.entities, lambda kv: kv.key = 'user_id')[1].value AS user_id,
    list_filter(s.entities, lambda kv: kv.key = 'device')[1].value AS device,
    list_filter(s.entities, lambda kv: kv.key = 'app_version')[1].value AS app_version,
    list_filter(s.entities, lambda kv: kv.key = 'screen')[1].value AS screen,
    s.entities
FROM session_events AS s
