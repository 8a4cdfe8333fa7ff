-- The scratch database of dwh_backup_verify: restore (psql variable scratch; template0: nothing inherited).
CREATE DATABASE :"scratch" TEMPLATE template0;
