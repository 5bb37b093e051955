# switchover_gap_load: as switchover_gap, under a steady write load the replica can keep up
# with: sysbench oltp_write_only at half the rate the replica applies (measured first, in the
# same run, with the replica's SQL thread stopped and then released).
# dbshift: `dbshift switchover lab-1 --to lab-1-2 --yes`; peer: bench/runbook-switchover.sh.
# Value: the probe's max_write_gap_ms (200 writes/s) per switchover.
# Target (issue 4): dbshift median <= 300 ms, max <= 1 s. Needs sysbench (installed if missing).
case_name="switchover write gap under load (probe 200/s + sysbench at half the apply rate)"
case_note="values: probe max_write_gap_ms per switchover"
command -v sysbench >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null

BENCH_LAB="$BENCH_TMP/lab"
PROBE_REPORT=switchover_gap_load.report
seq_of() { # the domain-1 seq of a GTID position variable on an instance
  admin_sql "$1" "SELECT @@$2" | tr ',' '\n' | awk -F- '$1==1 {print $3}' | head -1
}
sb() {
  sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$(port_of lab-1-1)" \
    --mysql-user=app --mysql-password="$(field "s['users']['app']['password']")" --mysql-db=app \
    --tables=4 --table-size=10000 "$@"
}
# Transactions per second the replica applies, measured once per bench run.
apply_rate() {
  if [ ! -s "$BENCH_TMP/apply_rate" ]; then
    admin_sql lab-1-2 "STOP SLAVE SQL_THREAD"
    local from; from=$(seq_of lab-1-2 gtid_slave_pos); from=${from:-0}
    sb --threads=4 --time=8 run >/dev/null
    local to; to=$(seq_of lab-1-1 gtid_binlog_pos)
    local t0; t0=$(date +%s%N)
    admin_sql lab-1-2 "START SLAVE SQL_THREAD"
    until [ "$(seq_of lab-1-2 gtid_slave_pos)" -ge "$to" ]; do sleep 0.05; done
    local t1; t1=$(date +%s%N)
    python3 -c "print(int(($to - $from) / (($t1 - $t0) / 1e9)))" > "$BENCH_TMP/apply_rate"
    echo "replica applies $(cat "$BENCH_TMP/apply_rate") trx/s; load at half that" >&2
  fi
  cat "$BENCH_TMP/apply_rate"
}
setup() {
  # A buffer pool that holds the sysbench tables: with the 16 MiB default, page eviction
  # under this load stalls every write for hundreds of ms, switchover or not.
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab up --clusters 1 --replicas 2 --buffer-pool-mb 128 >/dev/null
  sb --threads=4 prepare >/dev/null
  apply_rate >/dev/null
}
teardown() {
  pkill -f "sysbench oltp_write_only" 2>/dev/null || true
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab down --purge >/dev/null 2>&1 || true
}
with_load_and_probe() {
  local rate; rate=$(( $(cat "$BENCH_TMP/apply_rate") / 2 ))
  sb --threads=4 --time=14 --rate="$rate" --mysql-ignore-errors=all run >"$BENCH_TMP/sysbench.log" 2>&1 &
  local load=$!
  sleep 2
  with_probe "$@"
  kill "$load" 2>/dev/null || true
  wait "$load" 2>/dev/null || true
  echo "load: $rate trx/s requested"
}
run_dbshift() { with_load_and_probe "$DBSHIFT" --dir "$BENCH_TMP/lab" switchover lab-1 --to lab-1-2 --yes; }
run_peer() { DBSHIFT="$DBSHIFT" with_load_and_probe bash bench/runbook-switchover.sh "$BENCH_TMP/lab" lab-1 lab-1-2; }
metric() { probe_gap; }
extra_note() { echo "; load $(( $(cat "$BENCH_TMP/apply_rate") / 2 )) trx/s (replica applies $(cat "$BENCH_TMP/apply_rate")); target median <= 300"; }
