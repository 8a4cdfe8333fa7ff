-- Exact row counts of the tables named in the psql variable names (a JSON array of [schema, table]), or of every
-- user table when names is '[]': one JSON object {"schema.table": count}. Identifiers go through format('%I').
SELECT coalesce(json_object_agg(n.nspname || '.' || c.relname,
         (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM ONLY %I.%I', n.nspname, c.relname),
                                               false, true, '')))[1]::text::bigint), '{}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_%'
  AND (:'names' = '[]'
       OR (n.nspname, c.relname) IN (SELECT x ->> 0, x ->> 1 FROM json_array_elements(:'names'::json) AS x));
