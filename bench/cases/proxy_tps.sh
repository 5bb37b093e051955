# proxy_tps: sysbench oltp_read_write (4 threads, 4 tables x 10,000 rows, 10 s) through the
# dbshift proxy against the same through HAProxy 2.6 in TCP mode (a zero-copy relay), both in
# front of lab-1's writer, in the same run; a direct run each time for the ratio to direct.
# The dbshift proxy speaks MySQL (its own handshake, command boundaries, session tracking) and
# reaches the writer over TLS (verified); HAProxy relays bytes. Clients connect in plain TCP.
# Value: ms per 1000 transactions (1e6 / TPS), so the runner's ratio peer / dbshift is
# dbshift TPS / HAProxy TPS. Target (issue 7): >= 0.9. Needs sysbench and haproxy (installed
# if missing).
case_name="sysbench oltp_read_write TPS through the dbshift proxy vs HAProxy TCP"
case_note="values: ms per 1000 trx (1e6/TPS); ratio = dbshift TPS / HAProxy TPS"
command -v sysbench >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null
command -v haproxy >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
BENCH_LAB="$BENCH_TMP/proxylab"

sb() { # sb PORT ARGS...: sysbench against 127.0.0.1:PORT as the application
  local port=$1; shift
  sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
    --mysql-user=app --mysql-password="$(field "s['users']['app']['password']")" --mysql-db=app \
    --tables=4 --table-size=10000 "$@"
}
tps() { awk '/transactions:/ {gsub(/\(/, "", $3); print $3}' "$1"; }
setup() {
  [ -f "$BENCH_TMP/proxy_tps.ready" ] && return 0
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 1 --buffer-pool-mb 128 >/dev/null
  sb "$(port_of lab-1-1)" --threads=4 prepare >/dev/null
  "$DBSHIFT" --dir "$BENCH_LAB" lab proxy up >/dev/null
  local hp; hp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$BENCH_TMP/haproxy.cfg" <<CFG
global
  maxconn 256
defaults
  mode tcp
  timeout connect 5s
  timeout client 1m
  timeout server 1m
listen mysql
  bind 127.0.0.1:$hp
  server writer 127.0.0.1:$(port_of lab-1-1)
CFG
  haproxy -D -f "$BENCH_TMP/haproxy.cfg" -p "$BENCH_TMP/haproxy.pid"
  echo "$hp" > "$BENCH_TMP/haproxy.port"
  touch "$BENCH_TMP/proxy_tps.ready"
}
teardown() { :; }
finish() {
  kill "$(cat "$BENCH_TMP/haproxy.pid")" 2>/dev/null || true
  "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true
}
proxy_port() { field "s['clusters'][0]['proxy']['port']"; }
run_dbshift() {
  sb "$(port_of lab-1-1)" --threads=4 --time=10 run > "$BENCH_TMP/direct.$i.log"
  echo "direct tps $(tps "$BENCH_TMP/direct.$i.log")" >> "$BENCH_TMP/proxy_tps.direct"
  sb "$(proxy_port)" --threads=4 --time=10 run
}
run_peer() { sb "$(cat "$BENCH_TMP/haproxy.port")" --threads=4 --time=10 run; }
metric() { python3 -c "import sys; print(round(1e6 / float(sys.argv[1]), 1))" "$(tps "$2")"; }
extra_note() {
  local direct; direct=$(awk '{print $3}' "$BENCH_TMP/proxy_tps.direct" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  python3 -c "
import sys
d, p, direct = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f'; median TPS: dbshift {1e6/d:.0f}, HAProxy {1e6/p:.0f}, direct {direct:.0f}; dbshift/direct {1e6/d/direct:.2f}, HAProxy/direct {1e6/p/direct:.2f}; target dbshift >= 0.9x HAProxy')
" "$1" "$2" "$direct"
}
