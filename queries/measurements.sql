-- One row per time-series packet. timestamp is epoch milliseconds; tags is a map whose keys
-- vary by series (read through JSON, so a window without some tag still binds); value is a
-- JSON document in a string: kept as JSON, and as a number when it is one.
SELECT
    m.id AS series_id,
    make_timestamp(m."timestamp" * 1000)::TIMESTAMPTZ AS measured_at,
    json_extract_string(to_json(m.tags), '$.site') AS site,
    json_extract_string(to_json(m.tags), '$.host') AS host,
    json_extract_string(to_json(m.tags), '$.unit') AS unit,
    json_strip_nulls(to_json(m.tags)) AS tags,
    CASE WHEN json_valid(m.value) THEN json(m.value) END AS value,
    CASE WHEN json_valid(m.value) AND json_type(json(m.value)) IN ('UBIGINT', 'BIGINT', 'DOUBLE')
        THEN CAST(json(m.value) AS DOUBLE)
    END AS value_number
FROM metrics AS m
