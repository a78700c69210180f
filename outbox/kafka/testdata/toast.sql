\set ON_ERROR_STOP 1
DROP SCHEMA IF EXISTS toast_measure_kafka CASCADE;
CREATE SCHEMA toast_measure_kafka;
SET search_path = toast_measure_kafka;
CREATE TABLE ev_pglz (id int, kind text, data json COMPRESSION pglz);
CREATE TABLE ev_lz4  (id int, kind text, data json COMPRESSION lz4);
-- order documents with line items, ~4 KiB, ~16 KiB, ~64 KiB
CREATE FUNCTION doc(n int, seed int) RETURNS json LANGUAGE sql AS $$
  SELECT json_build_object('order_id', seed, 'customer', 'c-' || (seed * 7919 % 1000003),
    'lines', (SELECT json_agg(json_build_object('sku', 'SKU-' || lpad(((seed * 31 + i) * 2654435761 % 1000000)::text, 6, '0'),
       'name', 'item ' || ((seed + i) * 40503 % 10000), 'qty', 1 + (seed + i) % 9, 'unit_cents', (seed * i * 7907) % 100000))
     FROM generate_series(1, n) i))
$$;
CREATE FUNCTION blob(bytes int) RETURNS json LANGUAGE sql AS $$
  SELECT json_build_object('blob', encode(decode(string_agg(lpad(to_hex((random() * 4294967295)::bigint), 8, '0'), ''), 'hex'), 'base64'))
  FROM generate_series(1, bytes / 4)
$$;
INSERT INTO ev_pglz SELECT s, '4k', doc(55, s) FROM generate_series(1, 2000) s;
INSERT INTO ev_pglz SELECT s, '16k', doc(220, s) FROM generate_series(1, 500) s;
INSERT INTO ev_pglz SELECT s, '64k', doc(880, s) FROM generate_series(1, 200) s;
INSERT INTO ev_pglz SELECT s, '4k-random', blob(3000) FROM generate_series(1, 2000) s;
INSERT INTO ev_lz4 SELECT id, kind, (data::text)::json FROM ev_pglz;
SELECT kind, count(*), round(avg(octet_length(data::text))) AS raw_bytes,
  round(avg(pg_column_size(p.data))) AS pglz_bytes,
  round(avg((SELECT pg_column_size(l.data) FROM ev_lz4 l WHERE l.id = p.id AND l.kind = p.kind))) AS lz4_bytes,
  (array_agg(DISTINCT pg_column_compression(p.data)))[1] AS pglz_method, (SELECT (array_agg(DISTINCT pg_column_compression(l.data)))[1] FROM ev_lz4 l WHERE l.kind = p.kind) AS lz4_method
FROM ev_pglz p GROUP BY kind ORDER BY kind;
SELECT 'pglz' AS method, pg_size_pretty(pg_total_relation_size('ev_pglz')) UNION ALL SELECT 'lz4', pg_size_pretty(pg_total_relation_size('ev_lz4'));
\timing on
SELECT count(*), sum(length(data::text)) FROM ev_pglz WHERE kind = '16k';
SELECT count(*), sum(length(data::text)) FROM ev_lz4 WHERE kind = '16k';
SELECT count(*), sum(length(data::text)) FROM ev_pglz WHERE kind = '16k';
SELECT count(*), sum(length(data::text)) FROM ev_lz4 WHERE kind = '16k';
\timing off
DROP SCHEMA toast_measure_kafka CASCADE;
