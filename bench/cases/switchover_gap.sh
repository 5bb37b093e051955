# switchover_gap: the longest gap between acknowledged writes that a client saw during a
# switchover, measured by the same probe (200 writes/s, no other load) for both.
# dbshift: `dbshift switchover lab-1 --to lab-1-2 --yes`.
# peer: bench/runbook-switchover.sh (runbook 003 by hand: read_only, poll SHOW SLAVE STATUS
# each second, STOP SLAVE, RESET SLAVE ALL, read_only off, config flip).
# Target (issue 4): dbshift median <= 150 ms, max <= 1 s.
case_name="switchover write gap (probe 200/s)"
case_note="values: probe max_write_gap_ms per switchover"
BENCH_LAB="$BENCH_TMP/lab"
PROBE_REPORT=switchover_gap.report
setup() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 2 >/dev/null
}
teardown() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true
}
run_dbshift() { with_probe "$DBSHIFT" --dir "$BENCH_LAB" switchover lab-1 --to lab-1-2 --yes; }
run_peer() { DBSHIFT="$DBSHIFT" with_probe bash bench/runbook-switchover.sh "$BENCH_LAB" lab-1 lab-1-2; }
metric() { probe_gap; }
extra_note() { echo "; target median <= 150"; }
