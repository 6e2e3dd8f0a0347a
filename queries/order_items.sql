-- One row per item of each web event: the customer and context objects become columns,
-- the items list is unnested with its 1-based position.
SELECT
    e.event_id,
    i.item_idx,
    e.occurred_at,
    e.customer.id AS customer_id,
    e.customer.email AS customer_email,
    i.item.sku AS sku,
    i.item.qty AS qty,
    i.item.price AS price,
    e.context.page AS page,
    e.context AS context
FROM web_events AS e,
     LATERAL (
         SELECT unnest(e.items) AS item, generate_subscripts(e.items, 1) AS item_idx
     ) AS i
