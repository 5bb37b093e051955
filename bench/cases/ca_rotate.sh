# ca_rotate: CA rotation of 12 clusters x 3 instances (36 real servers, default small buffer
# pool), restart mode, against runbook 000 done well.
# dbshift: `dbshift ca-rotate --to lab-ca-2026 --mode restart --concurrency 4 --yes`: 4
# clusters at a time, readers then the writer, a health gate after each instance.
# peer: bench/serial-rotation.sh: one instance at a time, writer first, each instance the same
# `ca-rotate --filter <instance> --concurrency 1 --mode restart` (health-checked, no fixed
# sleep). Setup (untimed) moves every instance back to lab-ca-2024 without a restart.
# Targets (issue 6): speedup >= 0.7 x K = 2.8; dbshift <= 1.5 x the ideal critical path at K=4.
case_name="CA rotation, 12 clusters x 3 (36 servers), restart mode: ca-rotate --concurrency 4 vs serial runbook 000 with health checks"
case_note="times: wall ms per rotation of 36 instances"
BENCH_LAB="$BENCH_TMP/calab"

setup() {
  if [ ! -f "$BENCH_LAB/lab.json" ]; then
    "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 12 --replicas 2 >/dev/null
  fi
  "$DBSHIFT" --dir "$BENCH_LAB" ca-rotate --to lab-ca-2024 --mode no-restart --concurrency 12 \
    --yes -o json >/dev/null
}
teardown() { :; }
finish() { "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true; }
run_dbshift() {
  "$DBSHIFT" --dir "$BENCH_LAB" ca-rotate --to lab-ca-2026 --mode restart --concurrency 4 --yes -o json \
    | tee -a "$BENCH_TMP/ca_rotate.dbshift.json"
}
run_peer() { DBSHIFT="$DBSHIFT" bash bench/serial-rotation.sh "$BENCH_LAB" lab-ca-2026; }
extra_note() {
  # Per-instance time: the serial peer's wall time over 36 (no contention); the ideal critical
  # path at K=4 is 12/4 rounds of 3 instances each.
  python3 - "$1" "$2" "$BENCH_TMP/ca_rotate.dbshift.json" <<'PY'
import json, sys
dm, pm, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dec = json.JSONDecoder(); text = open(path).read(); i = 0; steps = []
while i < len(text):
    while i < len(text) and text[i].isspace(): i += 1
    if i >= len(text): break
    obj, i = dec.raw_decode(text, i)
    steps += [s["duration_ms"] for c in obj["clusters"] for s in c["steps"] if s["outcome"] == "done"]
per = pm / 36
ideal = per * 3 * 3
print(f"; per instance {per:.0f} ms serial, {sum(steps)/max(len(steps),1):.0f} ms inside ca-rotate at K=4;"
      f" ideal critical path at K=4 {ideal:.0f} ms, dbshift {dm/ideal:.2f}x it (target <= 1.5x);"
      f" speedup {pm/dm:.2f} (target >= 2.8); runbook 000's fixed sleep alone for 500 instances:"
      f" 500 x 60 s = 30000 s = 8.3 h")
PY
}
