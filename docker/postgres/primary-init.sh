#!/usr/bin/env bash
# First start of the primary (docker-entrypoint-initdb.d): a role the replica streams as.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set role="$REPLICATION_USER" --set password="$REPLICATION_PASSWORD" <<-'SQL'
	CREATE ROLE :"role" WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication ${REPLICATION_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
