# green_create: building green from a lab cluster holding a 1 GB data set, against a plain copy
# of the same data directory (the disk is the limit).
# dbshift: `dbshift bluegreen create --source lab-1 --replicas 0`: hot backup of blue's replica
# (mariadb-backup --backup --slave-info, --prepare), green's writer started on it, pointed at
# blue's writer from the recorded position and replicating.
# peer: `cp -a` of the replica's data directory without its binary and relay logs (the data
# set; mariadb-backup does not copy them either), then `sync`.
# The page cache is emptied before every run. Target (issue 5): dbshift within 2x of the copy.
# Needs sysbench (installed if missing).
case_name="green creation, 1 GB data set (bluegreen create vs cp -a of the datadir without binlogs)"
case_note="times: wall ms per run; page cache dropped before each"
command -v sysbench >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null
BENCH_LAB="$BENCH_TMP/greenlab"
GREEN_ROWS=${GREEN_ROWS:-4200000}

setup() {
  if [ ! -f "$BENCH_LAB/lab.json" ]; then
    "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 1 --buffer-pool-mb 256 >/dev/null
    sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 \
      --mysql-port="$(port_of lab-1-1)" --mysql-user=app \
      --mysql-password="$(field "s['users']['app']['password']")" --mysql-db=app \
      --tables=8 --table-size=$((GREEN_ROWS / 8)) --threads=2 prepare >/dev/null
    local want; want=$(admin_sql lab-1-1 "SELECT @@gtid_binlog_pos")
    admin_sql lab-1-2 "SELECT MASTER_GTID_WAIT('$want', 600)" >/dev/null
    du -sm --exclude='binlog.*' --exclude='relay-bin.*' "$BENCH_LAB/lab-1-2/data" | cut -f1 \
      > "$BENCH_TMP/green_create.mb"
    echo "data set: $(cat "$BENCH_TMP/green_create.mb") MiB in the replica's datadir (without logs)" >&2
  fi
  drop_caches
}
teardown() {
  "$DBSHIFT" --dir "$BENCH_LAB" bluegreen cleanup green --yes >/dev/null 2>&1 || true
  rm -rf "$BENCH_TMP/copy"
}
finish() { "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true; }
run_dbshift() { "$DBSHIFT" --dir "$BENCH_LAB" bluegreen create --source lab-1 --name green --replicas 0; }
run_peer() {
  mkdir -p "$BENCH_TMP/copy"
  find "$BENCH_LAB/lab-1-2/data" -mindepth 1 -maxdepth 1 ! -name 'binlog.*' ! -name 'relay-bin.*' \
    -exec cp -a {} "$BENCH_TMP/copy/" \; && sync
}
extra_note() { echo "; data set $(cat "$BENCH_TMP/green_create.mb") MiB (datadir without binlogs); target dbshift <= 2x the copy"; }
