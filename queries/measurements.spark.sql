-- Spark SQL twin of measurements.sql, for Spark engines (no json_valid/json_type/
-- json_strip_nulls there). Tags are read through JSON, so a window without some tag still binds;
-- to_json leaves out NULL fields (json_strip_nulls). Same rows: checked by `courier query test`
-- on every engine.
WITH m AS (
    SELECT
        m.*,
        -- a JSON document parses inside an array; anything else gives NULL
        get_json_object(concat('[', m.value, ']'), '$[0]') IS NOT NULL
            OR trim(m.value) = 'null' AS value_is_json
    FROM metrics AS m
)
SELECT
    m.id AS series_id,
    timestamp_micros(m.`timestamp` * 1000) AS measured_at,
    get_json_object(to_json(m.tags), '$.site') AS site,
    get_json_object(to_json(m.tags), '$.host') AS host,
    get_json_object(to_json(m.tags), '$.unit') AS unit,
    to_json(m.tags) AS tags,
    CASE WHEN m.value_is_json THEN trim(m.value) END AS value,
    CASE WHEN m.value_is_json AND trim(m.value) RLIKE '^-?[0-9]'
        THEN CAST(trim(m.value) AS DOUBLE)
    END AS value_number
FROM m
