# probe_outage: is a known outage measured right? The lab writer is stopped (SIGSTOP) for
# 2.0 s, 3 s into a probe, then continued (SIGCONT); the actual stop time is logged.
# dbshift: `dbshift probe --rate 1000 --duration 8s`; value = its longest write outage (ms).
# peer: bench/peers/probe_shell_loop.sh, the runbook's loop (`mariadb -e INSERT; sleep 0.01`),
# under the same stop; value = its longest gap between successful INSERTs (ms).
# Target: dbshift within +/- 100 ms of the 2000 ms stop.
case_name="probe_outage (writer SIGSTOP 2.0 s)"
case_note="values: measured outage ms for a 2000 ms stop (target +/- 100)"
setup() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab up --clusters 1 --replicas 1 >/dev/null
}
teardown() {
  # Never leave a stopped server behind, whatever happened.
  local pid
  pid=$(writer_pid 2>/dev/null) && kill -CONT "$pid" 2>/dev/null
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab down --purge >/dev/null 2>&1 || true
}
writer_pid() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab status -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)
w = [c["writer"] for c in s["clusters"] if c["name"] == "lab-1"][0]
print([i["pid"] for i in s["instances"] if i["id"] == w][0])'
}
# Stop the writer for 2.0 s after $1 s; log the stop as measured around the two signals.
stop_writer() {
  local pid t0 t1
  pid=$(writer_pid)
  sleep "$1"
  t0=$(date +%s%N); kill -STOP "$pid"; sleep 2; kill -CONT "$pid"; t1=$(date +%s%N)
  echo "sigstop_ms=$(( (t1 - t0) / 1000000 ))" >&2
}
run_dbshift() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" probe --target lab-1 --rate 1000 --duration 8s \
    --output json --report-dir "$BENCH_TMP/probe_outage.report" >"$BENCH_TMP/probe_outage.json" &
  local probe=$!
  stop_writer 3
  wait "$probe"
  cat "$BENCH_TMP/probe_outage.json"
}
run_peer() {
  local port pw
  port=$("$DBSHIFT" --dir "$BENCH_TMP/lab" resolve lab-1 | cut -d: -f2)
  pw=$("$DBSHIFT" --dir "$BENCH_TMP/lab" lab status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["users"]["app"]["password"])')
  MYSQL_PWD=$pw CA="$BENCH_TMP/lab/tls/trust.pem" bash bench/peers/probe_shell_loop.sh "$port" 8 0.01 &
  local loop=$!
  stop_writer 3
  wait "$loop"
}
metric() {
  if [ "$1" = dbshift ]; then
    # The JSON is the last thing on stdout; the log also holds stderr lines before it.
    python3 -c '
import json, sys
text = open(sys.argv[1]).read()
s = json.loads(text[text.index("{"):text.rindex("}") + 1])
print("%.0f" % max([o["duration_ms"] for o in s["outages"] if o["kind"] == "write"] or [0]))' "$2"
  else
    sed -n 's/.*max_gap_ms=\([0-9]*\).*/\1/p' "$2" | tail -1
  fi
}
extra_note() {
  printf '; actual stops (ms): %s' "$(grep -ho 'sigstop_ms=[0-9]*' "$BENCH_TMP"/probe_outage.*.log | cut -d= -f2 | paste -sd, -)"
}
