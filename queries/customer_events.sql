-- One row per customer event, whatever form its payload took on the event-batches stream:
--   individual:  {"identifiers": [...], "code": ..., "timestamp": ..., "attributes": [...]}
--   simple:      {"identifiers": [...], "events": [{"code", "timestamp", "attributes"}, ...]}
--   compound:    {"eventbatch": [{"channel": ..., "identifiers": [...], "events": [...]}, ...]}
-- identifiers [{name, value}] give customer_id and email; attributes [{name, value, type}]
-- become one JSON object whose values are cast by their declared type.
WITH payloads AS (
    -- Declare every field read below: a window holding only some of the forms still binds
    -- (fields it lacks are NULL), and types are unified by name.
    SELECT * FROM event_batches
    UNION ALL BY NAME
    SELECT
        CAST(NULL AS STRUCT(name VARCHAR, value VARCHAR)[]) AS identifiers,
        CAST(NULL AS VARCHAR) AS code,
        CAST(NULL AS TIMESTAMPTZ) AS "timestamp",
        CAST(NULL AS STRUCT(name VARCHAR, value VARCHAR, type VARCHAR)[]) AS attributes,
        CAST(NULL AS STRUCT(
            code VARCHAR, "timestamp" TIMESTAMPTZ,
            attributes STRUCT(name VARCHAR, value VARCHAR, type VARCHAR)[]
        )[]) AS events,
        CAST(NULL AS STRUCT(
            channel VARCHAR,
            identifiers STRUCT(name VARCHAR, value VARCHAR)[],
            events STRUCT(
                code VARCHAR, "timestamp" TIMESTAMPTZ,
                attributes STRUCT(name VARCHAR, value VARCHAR, type VARCHAR)[]
            )[]
        )[]) AS eventbatch
    WHERE false
),
batches AS (
    SELECT  -- individual events: the payload is the event
        NULL AS channel, p.identifiers,
        [{'code': p.code, 'timestamp': p."timestamp", 'attributes': p.attributes}] AS events
    FROM payloads AS p
    WHERE p.code IS NOT NULL
    UNION ALL
    SELECT NULL, p.identifiers, p.events  -- simple batches
    FROM payloads AS p
    WHERE p.events IS NOT NULL
    UNION ALL
    SELECT b.batch.channel, b.batch.identifiers, b.batch.events  -- compound batches
    FROM payloads AS p
    CROSS JOIN LATERAL (SELECT unnest(p.eventbatch) AS batch) AS b
),
events AS (
    SELECT b.channel, b.identifiers, x.event
    FROM batches AS b
    CROSS JOIN LATERAL (SELECT unnest(b.events) AS event) AS x
)
SELECT
    -- the same event sent twice (a client retry) has the same key, so it loads once
    md5(concat_ws('|', e.channel, to_json(e.identifiers), to_json(e.event))) AS event_key,
    list_filter(e.identifiers, lambda i: i.name = 'customer_id')[1].value AS customer_id,
    list_filter(e.identifiers, lambda i: i.name = 'email')[1].value AS email,
    e.channel,
    e.event.code AS event_code,
    TRY_CAST(e.event."timestamp" AS TIMESTAMPTZ) AS occurred_at,
    to_json(map_from_entries(list_transform(
        -- the first value of each attribute name (map keys must be unique)
        list_filter(e.event.attributes, lambda a, i:
            list_position(list_transform(e.event.attributes, lambda b: b.name), a.name) = i),
        lambda a: {
            'k': a.name,
            'v': CASE lower(a.type)
                WHEN 'int' THEN to_json(TRY_CAST(a.value AS BIGINT))
                WHEN 'integer' THEN to_json(TRY_CAST(a.value AS BIGINT))
                WHEN 'long' THEN to_json(TRY_CAST(a.value AS BIGINT))
                WHEN 'decimal' THEN to_json(TRY_CAST(a.value AS DOUBLE))
                WHEN 'double' THEN to_json(TRY_CAST(a.value AS DOUBLE))
                WHEN 'boolean' THEN to_json(TRY_CAST(a.value AS BOOLEAN))
                WHEN 'timestamp' THEN to_json(strftime(
                    TRY_CAST(a.value AS TIMESTAMPTZ), '%Y-%m-%dT%H:%M:%SZ'))
                ELSE to_json(a.value)
            END
        }
    ))) AS attributes,
    e.identifiers
FROM events AS e
ORDER BY occurred_at, event_key
