-- Spark SQL twin of activity.sql, for Spark engines (no UNION ... BY NAME there). Fields a
-- window may lack (client_id, the attribute objects) are read through JSON, so the query binds
-- whatever the window held; to_json leaves out NULL fields (json_strip_nulls). Same rows:
-- checked by `courier query test` on every engine.
SELECT
    e.id AS event_id,
    get_json_object(to_json(struct(e.*)), '$.client_id') AS client_id,
    e.actor.type AS actor_type,
    e.actor.id AS actor_id,
    e.action.name AS action,
    e.context.name AS context,
    e.object.type AS object_type,
    e.object.id AS object_id,
    -- the sender's local time with its offset, as an instant (UTC)
    e.metadata.localtimestamp AS occurred_at,
    e.metadata.useragent AS user_agent,
    get_json_object(to_json(e.actor), '$.attributes') AS actor_attributes,
    get_json_object(to_json(e.context), '$.attributes') AS context_attributes,
    get_json_object(to_json(e.object), '$.attributes') AS object_attributes
FROM activity_events AS e
