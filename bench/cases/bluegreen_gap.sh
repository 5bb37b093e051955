# bluegreen_gap: the longest gap between acknowledged writes a client saw during a blue/green
# switch (blue's writer -> green's writer, green encrypted), measured by the same probe
# (200 writes/s through the cluster name, no other load) for both.
# dbshift: `dbshift bluegreen switchover --yes` (the switchover core between the two writers).
# peer: bench/runbook-switchover.sh from blue's writer to green's writer (read_only, poll SHOW
# SLAVE STATUS each second, STOP SLAVE, RESET SLAVE ALL, read_only off, config flip).
# Target (issue 5): dbshift median <= 150 ms.
case_name="bluegreen switch write gap (probe 200/s)"
case_note="values: probe max_write_gap_ms per switch"
BENCH_LAB="$BENCH_TMP/bglab"
PROBE_REPORT=bluegreen_gap.report
setup() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 1 >/dev/null
  "$DBSHIFT" --dir "$BENCH_LAB" bluegreen create --source lab-1 --name green --replicas 1 --encrypt >/dev/null
}
teardown() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true
}
run_dbshift() { with_probe "$DBSHIFT" --dir "$BENCH_LAB" bluegreen switchover green --yes; }
run_peer() { DBSHIFT="$DBSHIFT" with_probe bash bench/runbook-switchover.sh "$BENCH_LAB" lab-1 green-1; }
metric() { probe_gap; }
extra_note() { echo "; target median <= 150"; }
