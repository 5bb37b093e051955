# Helpers for bench cases, sourced by bench/run.sh. $BENCH_LAB is the lab a case works on.
lab_json() { "$DBSHIFT" --dir "$BENCH_LAB" lab status -o json; }
field() { lab_json | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
port_of() { field "[i['endpoint']['port'] for i in s['instances'] if i['id']=='$1'][0]"; }
admin_sql() {
  MYSQL_PWD=$(field "s['users']['admin']['password']") mariadb -h127.0.0.1 -P"$(port_of "$1")" \
    -udbshift_admin --ssl-ca="$BENCH_LAB/tls/trust.pem" -N -B -e "$2"
}
# Empty the page cache (root only) so that a run reads from the disk, as a first run does.
drop_caches() { sync; echo 3 2>/dev/null >/proc/sys/vm/drop_caches || true; }
# Run "$@" 3 s into an 8 s probe (200 writes/s) on lab-1 of $BENCH_LAB; the probe's report goes
# to $BENCH_TMP/$PROBE_REPORT. probe_gap prints its max_write_gap_ms, nothing if a write was lost.
with_probe() {
  "$DBSHIFT" --dir "$BENCH_LAB" probe --target lab-1 --rate 200 --duration 8s \
    --output json --report-dir "$BENCH_TMP/$PROBE_REPORT" >/dev/null &
  local probe=$!
  sleep 3
  "$@" >&2
  wait "$probe"
}
probe_gap() {
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["max_write_gap_ms"] if d["lost_writes"] == 0 or d["lost_writes"] == [] else "")' \
    "$BENCH_TMP/$PROBE_REPORT/summary.json"
}
# HAProxy in TCP mode in front of INSTANCE of $BENCH_LAB, the peer of the dbshift proxy
# benches: haproxy_tcp_up NAME INSTANCE MAXCONN writes $BENCH_TMP/NAME.cfg, runs it as a daemon
# with its pid in $BENCH_TMP/NAME.pid, and its port (a free one) in $BENCH_TMP/NAME.port.
haproxy_tcp_up() {
  local name=$1 instance=$2 maxconn=$3 hp
  hp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$BENCH_TMP/$name.cfg" <<CFG
global
  maxconn $maxconn
defaults
  mode tcp
  timeout connect 5s
  timeout client 1m
  timeout server 1m
listen mysql
  bind 127.0.0.1:$hp
  server writer 127.0.0.1:$(port_of "$instance")
CFG
  haproxy -D -f "$BENCH_TMP/$name.cfg" -p "$BENCH_TMP/$name.pid"
  echo "$hp" > "$BENCH_TMP/$name.port"
}
