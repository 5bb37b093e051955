# proxy_tps: sysbench oltp_read_write (4 threads, 4 tables x 10,000 rows, 10 s) through the
# dbshift proxy against the same through HAProxy 2.6 in TCP mode (a zero-copy relay), both in
# front of lab-1's writer, in the same run; a direct run each time for the ratio to direct.
# The dbshift proxy speaks MySQL (its own handshake, command boundaries, session tracking) and
# reaches the writer over TLS (verified); HAProxy relays bytes. Clients connect in plain TCP.
# Also reported: p99 latency (sysbench --percentile=99) of the three, and the CPU time the
# proxy process (dbshift proxy or haproxy) used per 1000 transactions.
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
    --tables=4 --table-size=10000 --percentile=99 "$@"
}
tps() { awk '/transactions:/ {gsub(/\(/, "", $3); print $3}' "$1"; }
p99() { awk '/99th percentile:/ {print $3}' "$1"; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
proxy_pid() { cat "$BENCH_LAB/proxy-lab-1/proxy.pid"; }
# Run sysbench through PORT while measuring the CPU of PID; log "tps p99 cpu_ms_per_1000trx".
measured() { # measured WHO PORT PID
  local c0 c1; c0=$(cpu_s "$3")
  sb "$2" --threads=4 --time=10 run > "$BENCH_TMP/$1.$i.sb"
  c1=$(cpu_s "$3")
  local t; t=$(tps "$BENCH_TMP/$1.$i.sb")
  echo "$1 $t $(p99 "$BENCH_TMP/$1.$i.sb") $(python3 -c "print(round(($c1 - $c0) * 1e6 / ($t * 10), 1))")" >> "$BENCH_TMP/proxy_tps.extra"
  cat "$BENCH_TMP/$1.$i.sb"
}
setup() {
  [ -f "$BENCH_TMP/proxy_tps.ready" ] && return 0
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 1 --buffer-pool-mb 128 >/dev/null
  sb "$(port_of lab-1-1)" --threads=4 prepare >/dev/null
  "$DBSHIFT" --dir "$BENCH_LAB" lab proxy up >/dev/null
  haproxy_tcp_up haproxy lab-1-1 256
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
  echo "direct $(tps "$BENCH_TMP/direct.$i.log") $(p99 "$BENCH_TMP/direct.$i.log") 0" >> "$BENCH_TMP/proxy_tps.extra"
  measured dbshift "$(proxy_port)" "$(proxy_pid)"
}
run_peer() { measured haproxy "$(cat "$BENCH_TMP/haproxy.port")" "$(cat "$BENCH_TMP/haproxy.pid")"; }
metric() { python3 -c "import sys; print(round(1e6 / float(sys.argv[1]), 1))" "$(tps "$2")"; }
extra_note() {
  python3 - "$BENCH_TMP/proxy_tps.extra" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    who, tps, p99, cpu = line.split()
    rows.setdefault(who, []).append((float(tps), float(p99), float(cpu)))
med = {w: [statistics.median(x[k] for x in v) for k in range(3)] for w, v in rows.items()}
d, h, x = med["dbshift"], med["haproxy"], med["direct"]
print(f"; median TPS: dbshift {d[0]:.0f}, HAProxy {h[0]:.0f}, direct {x[0]:.0f} (dbshift/direct {d[0]/x[0]:.2f}, HAProxy/direct {h[0]/x[0]:.2f});"
      f" p99 ms: dbshift {d[1]:.1f}, HAProxy {h[1]:.1f}, direct {x[1]:.1f} (added by dbshift {d[1]-x[1]:.1f});"
      f" proxy CPU ms per 1000 trx: dbshift {d[2]:.0f}, HAProxy {h[2]:.0f}; target dbshift >= 0.9x HAProxy")
PY
}
