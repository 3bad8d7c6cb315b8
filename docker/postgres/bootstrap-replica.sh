#!/usr/bin/env bash
# Runs a streaming replica of $PRIMARY_HOST. On first start (empty $PGDATA) it clones the
# primary with pg_basebackup -R, which also writes the standby settings; afterwards it only
# starts PostgreSQL. Extra arguments go to postgres (e.g. -c hot_standby_feedback=on).
#
# Environment: PGDATA, PRIMARY_HOST, PRIMARY_PORT (5432), REPLICATION_USER (replicator),
# REPLICATION_PASSWORD, REPLICATION_SLOT (replica_1).
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${PRIMARY_HOST:?PRIMARY_HOST must be set}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"
REPLICATION_SLOT="${REPLICATION_SLOT:-replica_1}"
export PGPASSWORD="${REPLICATION_PASSWORD:-}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "bootstrap-replica: cloning ${PRIMARY_HOST}:${PRIMARY_PORT} into ${PGDATA}"
    for _ in $(seq 1 60); do
        pg_isready --quiet --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" && break
        sleep 1
    done
    clone=(pg_basebackup --host="$PRIMARY_HOST" --port="$PRIMARY_PORT"
           --username="$REPLICATION_USER" --pgdata="$PGDATA" --write-recovery-conf
           --wal-method=stream --checkpoint=fast --slot="$REPLICATION_SLOT" --no-password)
    # The slot keeps the primary's WAL while this replica is down. It survives a lost
    # replica volume, so a second bootstrap reuses it instead of creating it.
    "${clone[@]}" --create-slot || { rm -rf "${PGDATA:?}"/*; "${clone[@]}"; }
    chmod 0700 "$PGDATA"
fi

exec postgres -D "$PGDATA" -c hot_standby=on "$@"
