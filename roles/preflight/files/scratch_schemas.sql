-- A table-scoped dump (pg_dump -t) holds no CREATE SCHEMA: create the dumped tables' schemas in the scratch
-- database first (psql variable schemas: a JSON array of names; identifiers through format('%I')).
SELECT format('CREATE SCHEMA IF NOT EXISTS %I', s) FROM json_array_elements_text(:'schemas'::json) AS s
\gexec
