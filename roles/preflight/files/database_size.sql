-- Size of the connected database in bytes (dwh_backup_scope: database, free-disk check).
SELECT pg_database_size(current_database());
