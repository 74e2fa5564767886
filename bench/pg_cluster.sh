#!/bin/sh
# A PostgreSQL 15 cluster for the benchmarks (durable: fsync on, unlike the test cluster).
#   sh bench/pg_cluster.sh          → postgresql+psycopg://postgres@127.0.0.1:15442
#   sh bench/pg_cluster.sh drop     → removes it
# Recipe from /work/shared/SERVICES.md; port below 32768, Debian's default listen_addresses
# (localhost only), trust auth.
set -eu
PORT=${HIE_BENCH_PG_PORT:-15442}
NAME=hiebench
if [ "${1:-}" = drop ]; then
  pg_dropcluster --stop 15 $NAME
  exit 0
fi
command -v pg_createcluster >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx 15/$NAME; then
  pg_createcluster 15 $NAME --port "$PORT" \
    -o shared_buffers=512MB -o max_connections=200 \
    -o work_mem=16MB -o maintenance_work_mem=256MB -o max_wal_size=4GB \
    -- --auth=trust >/dev/null
fi
pg_ctlcluster 15 $NAME start 2>/dev/null || true
for i in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$PORT" && break; sleep 0.2; done
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT"
