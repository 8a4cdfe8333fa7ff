-- Drop the scratch database of dwh_backup_verify: restore, whatever is still connected to it.
DROP DATABASE IF EXISTS :"scratch" WITH (FORCE);
