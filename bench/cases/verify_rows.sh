# verify_rows: how fast a table checksum reads, on a 1,000,000-row sysbench table
# (oltp_read_only prepare, 1 table) in a lab of 1 cluster and 1 replica, buffer pool 256 MiB.
# dbshift: `dbshift bluegreen verify green -o json` after `bluegreen create --source lab-1 --name
#   green --replicas 0`: both sides checksummed at one snapshot position; its rows_per_s counts
#   the rows of both sides ((rows_blue + rows_green) / elapsed, the whole command included).
# peer: pt-table-checksum (percona-toolkit) on the source only (--recursion-method=none: no
#   replica is checked or waited for); rows/s = ROWS / TIME of its output.
# Value: milliseconds per million rows (1e9 / rows/s), so the runner's ratio peer / dbshift
# is dbshift rows/s / pt rows/s (above 1: dbshift reads faster). Target: ratio >= 1.
# The lab is built once per bench run and kept between the repetitions (neither side changes
# user data); finish takes it down after the last one.
case_name="verify rows/s (1M-row sysbench table)"
case_note="values: ms per million rows; dbshift counts both sides, pt-table-checksum the source only"
command -v sysbench >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null
command -v pt-table-checksum >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq percona-toolkit >/dev/null

# Helpers (port_of, field, admin_sql) come from bench/lib.sh, for the lab in $BENCH_LAB.
BENCH_LAB="$BENCH_TMP/verify_lab"
vl() { "$DBSHIFT" --dir "$BENCH_LAB" "$@"; }
build_lab() {
  vl lab up --clusters 1 --replicas 1 --buffer-pool-mb 256 >/dev/null || return 1
  sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$(port_of lab-1-1)" \
    --mysql-user=app --mysql-password="$(field "s['users']['app']['password']")" --mysql-db=app \
    --tables=1 --table-size=1000000 prepare >/dev/null || return 1
  # The snapshot behind `bluegreen create` is taken on the replica: let it finish applying the
  # prepare first, or the backup's redo copy can fall behind.
  local pos; pos=$(admin_sql lab-1-1 "SELECT @@gtid_binlog_pos") || return 1
  [ "$(admin_sql lab-1-2 "SELECT MASTER_GTID_WAIT('$pos', 300)")" = 0 ] || return 1
  vl bluegreen create --source lab-1 --name green --replicas 0 >/dev/null || return 1
  touch "$BENCH_LAB/.verify_rows_ready"
}
setup() {
  [ -f "$BENCH_LAB/.verify_rows_ready" ] && return 0
  build_lab || { vl lab down --purge >/dev/null 2>&1; return 1; }
}
teardown() { :; }
finish() { vl lab down --purge >/dev/null 2>&1 || true; }
run_dbshift() { vl bluegreen verify green -o json; }
run_peer() {
  pt-table-checksum "h=127.0.0.1,P=$(port_of lab-1-1),u=dbshift_admin,p=$(field "s['users']['admin']['password']")" \
    --recursion-method=none --no-check-binlog-format --no-check-replication-filters \
    --databases=app --tables=sbtest1
}
metric() {
  python3 - "$1" "$2" <<'PY'
import json, sys
who, log = sys.argv[1], open(sys.argv[2]).read()
if who == "dbshift":
    start = log.find("{")
    report, _ = json.JSONDecoder().raw_decode(log[start:])
    rate = report["rows_per_s"] if report["equal"] else 0
else:
    # TS ERRORS DIFFS ROWS DIFF_ROWS CHUNKS SKIPPED TIME TABLE, one line per table.
    rows = secs = 0.0
    for line in log.splitlines():
        f = line.split()
        if len(f) == 9 and f[3].isdigit():
            rows += float(f[3]); secs += float(f[7])
    rate = rows / secs if secs else 0
print(int(1e9 / rate) if rate else "")
PY
}
extra_note() {
  awk -v d="$1" -v p="$2" 'BEGIN {printf "; dbshift %.0f rows/s (both sides), pt-table-checksum %.0f rows/s (source)", 1e9 / d, 1e9 / p}'
}
