-- One row per tender of each point-of-sale record (XML posted to the pos-records stream).
-- XML values arrive as text; the feed casts total and amount to decimals. force_list (see the
-- courier) makes tenders.tender a list even when a record has a single tender.
SELECT
    r.id AS record_id,
    t.tender_idx,
    r.store,
    r.ts AS sold_at,
    r.total,
    t.tender.type AS tender_type,
    t.tender.amount AS amount
FROM pos_records AS r,
     LATERAL (
         SELECT unnest(r.tenders.tender) AS tender,
                generate_subscripts(r.tenders.tender, 1) AS tender_idx
     ) AS t
