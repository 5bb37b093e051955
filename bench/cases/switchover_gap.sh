# switchover_gap: the longest gap between acknowledged writes that a client saw during a
# switchover, measured by the same probe (200 writes/s, no other load) for both.
# dbshift: `dbshift switchover lab-1 --to lab-1-2 --yes`.
# peer: bench/runbook-switchover.sh (runbook 003 by hand: read_only, poll SHOW SLAVE STATUS
# each second, STOP SLAVE, RESET SLAVE ALL, read_only off, config flip).
# Target (issue 4): dbshift median <= 150 ms, max <= 1 s.
case_name="switchover write gap (probe 200/s)"
case_note="values: probe max_write_gap_ms per switchover"
setup() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab up --clusters 1 --replicas 2 >/dev/null
}
teardown() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab down --purge >/dev/null 2>&1 || true
}
with_probe() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" probe --target lab-1 --rate 200 --duration 8s \
    --output json --report-dir "$BENCH_TMP/switchover_gap.report" >"$BENCH_TMP/switchover_gap.json" &
  local probe=$!
  sleep 3
  "$@" >&2
  wait "$probe"
  cat "$BENCH_TMP/switchover_gap.json"
}
run_dbshift() { with_probe "$DBSHIFT" --dir "$BENCH_TMP/lab" switchover lab-1 --to lab-1-2 --yes; }
run_peer() { DBSHIFT="$DBSHIFT" with_probe bash bench/runbook-switchover.sh "$BENCH_TMP/lab" lab-1 lab-1-2; }
metric() {
  # The probe's own summary; no value (a failed bench) if it reports a lost write.
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["max_write_gap_ms"] if d["lost_writes"] == 0 or d["lost_writes"] == [] else "")' \
    "$BENCH_TMP/switchover_gap.report/summary.json"
}
extra_note() { echo "; target median <= 150"; }
