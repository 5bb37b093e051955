# proxy_switch_gap: what clients see of a switchover (`dbshift switchover lab-1 --to lab-1-2`)
# when they connect through the lab's dbshift proxy, against the same switchover seen by
# clients that follow the cluster name directly (no proxy), in the same run: the probe at
# 200 writes/s for 8 s, the switchover 3 s in.
# Value: the probe's longest write gap (ms). The note gives failed attempts through the proxy.
# Target (issue 7): through the proxy p50 <= 250 ms and 0 client errors.
case_name="switchover seen through the dbshift proxy vs directly (probe 200/s)"
case_note="values: probe max_write_gap_ms per switchover"
BENCH_LAB="$BENCH_TMP/pslab"
setup() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 2 >/dev/null
  "$DBSHIFT" --dir "$BENCH_LAB" lab proxy up >/dev/null
}
teardown() { "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true; }
probe_during_switch() { # probe_during_switch TARGET [probe args...]
  local report="$BENCH_TMP/proxy_switch_gap.report"
  rm -rf "$report"
  DBSHIFT_PROBE_PASSWORD=$(field "s['users']['app']['password']") \
    "$DBSHIFT" --dir "$BENCH_LAB" probe --target "$@" --rate 200 --duration 8s \
    --output json --report-dir "$report" >/dev/null &
  local probe=$!
  sleep 3
  "$DBSHIFT" --dir "$BENCH_LAB" switchover lab-1 --to lab-1-2 --yes >&2
  wait "$probe"
}
run_dbshift() {
  probe_during_switch "mysql://app@127.0.0.1:$(field "s['clusters'][0]['proxy']['port']")/dbshift" \
    --tls-ca "$BENCH_LAB/tls/trust.pem"
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("failed", sum(k["failed"] for k in d["kinds"].values()))' \
    "$BENCH_TMP/proxy_switch_gap.report/summary.json" >> "$BENCH_TMP/proxy_switch_gap.failed"
}
run_peer() { probe_during_switch lab-1; }
metric() { PROBE_REPORT=proxy_switch_gap.report probe_gap; }
extra_note() {
  echo "; failed attempts through the proxy per run: $(awk '{print $2}' "$BENCH_TMP/proxy_switch_gap.failed" | paste -sd, -); target p50 <= 250, 0 errors"
}
