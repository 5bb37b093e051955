# probe_rate: can the probe hold its schedule? 1000 writes/s against a lab writer for 10 s.
# dbshift: `dbshift probe --rate 1000 --duration 10s`; value = achieved writes/s (acknowledged
# writes over the run; target: within 1% of 1000).
# peer: bench/peers/probe_shell_loop.sh asked for the same (sleep 0.001 between INSERTs, one
# mariadb client per INSERT); value = its achieved INSERTs/s.
case_name="probe_rate (1000 writes/s requested, 10 s)"
case_note="values: achieved writes/s (target 1000 +/- 1%); ratio: peer/dbshift"
setup() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab up --clusters 1 --replicas 1 >/dev/null
}
teardown() { "$DBSHIFT" --dir "$BENCH_TMP/lab" lab down --purge >/dev/null 2>&1 || true; }
run_dbshift() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" probe --target lab-1 --rate 1000 --duration 10s \
    --output json --report-dir "$BENCH_TMP/probe_rate.report"
}
run_peer() {
  local port pw
  port=$("$DBSHIFT" --dir "$BENCH_TMP/lab" resolve lab-1 | cut -d: -f2)
  pw=$("$DBSHIFT" --dir "$BENCH_TMP/lab" lab status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["users"]["app"]["password"])')
  MYSQL_PWD=$pw CA="$BENCH_TMP/lab/tls/trust.pem" bash bench/peers/probe_shell_loop.sh "$port" 10 0.001
}
# metric WHO LOG: the number this run reports.
metric() {
  if [ "$1" = dbshift ]; then
    # The JSON summary is on stdout; log lines (stderr) may come before it.
    python3 -c '
import json, sys
text = open(sys.argv[1]).read()
s = json.loads(text[text.index("{"):text.rindex("}") + 1])
print("%.1f" % s["achieved_write_rate"])' "$2"
  else
    sed -n 's/.*achieved_rate=\([0-9.]*\).*/\1/p' "$2" | tail -1
  fi
}
extra_note() { awk -v d="$1" 'BEGIN { printf "; dbshift achieved/requested = %.4f", d / 1000 }'; }
