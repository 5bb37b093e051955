# proxy_latency: the latency a client adds by going through the dbshift proxy, at a load that
# does not saturate this 2-core machine: sysbench oltp_point_select, 1 thread at a fixed 200
# queries/s for 10 s, through the dbshift proxy and through HAProxy 2.6 in TCP mode in front of
# the same writer, in the same run, with a direct run each time for the added latency.
# (proxy_tps measures at saturation, where the three share two cores and p99 is queueing.)
# The dbshift proxy reaches the writer over TLS (verified); HAProxy relays bytes in plain TCP.
# Value: p99 latency in microseconds (sysbench --percentile=99); ratio = HAProxy p99 / dbshift
# p99. Target (issue 16): dbshift p99 <= direct p99 + 1 ms. Needs sysbench and haproxy.
case_name="p99 latency through the dbshift proxy vs HAProxy TCP, 200 point selects/s"
case_note="values: p99 us; ratio = HAProxy p99 / dbshift p99"
command -v sysbench >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null
command -v haproxy >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
BENCH_LAB="$BENCH_TMP/latlab"

sbl() { # sbl PORT LOG: point selects at 200/s against 127.0.0.1:PORT, log to LOG
  sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$1" \
    --mysql-user=app --mysql-password="$(field "s['users']['app']['password']")" --mysql-db=app \
    --tables=1 --table-size=10000 --percentile=99 --threads=1 --rate=200 --time=10 \
    --histogram=off run > "$2"
}
p99_us() { awk '/99th percentile:/ {printf "%d\n", $3 * 1000}' "$1"; }
setup() {
  [ -f "$BENCH_TMP/proxy_latency.ready" ] && return 0
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 1 --buffer-pool-mb 64 >/dev/null
  sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 \
    --mysql-port="$(port_of lab-1-1)" --mysql-user=app \
    --mysql-password="$(field "s['users']['app']['password']")" --mysql-db=app \
    --tables=1 --table-size=10000 prepare >/dev/null
  "$DBSHIFT" --dir "$BENCH_LAB" lab proxy up >/dev/null
  haproxy_tcp_up haproxy-lat lab-1-1 64
  touch "$BENCH_TMP/proxy_latency.ready"
}
teardown() { :; }
finish() {
  kill "$(cat "$BENCH_TMP/haproxy-lat.pid")" 2>/dev/null || true
  "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true
}
run_dbshift() {
  sbl "$(port_of lab-1-1)" "$BENCH_TMP/lat-direct.$i.log"
  p99_us "$BENCH_TMP/lat-direct.$i.log" >> "$BENCH_TMP/proxy_latency.direct"
  sbl "$(field "s['clusters'][0]['proxy']['port']")" "$BENCH_TMP/lat-dbshift.$i.log"
  cat "$BENCH_TMP/lat-dbshift.$i.log"
}
run_peer() {
  sbl "$(cat "$BENCH_TMP/haproxy-lat.port")" "$BENCH_TMP/lat-haproxy.$i.log"
  cat "$BENCH_TMP/lat-haproxy.$i.log"
}
metric() { p99_us "$2"; }
extra_note() {
  local direct; direct=$(median < "$BENCH_TMP/proxy_latency.direct")
  echo "; direct p99 ${direct} us; added over direct: dbshift $(( $1 - direct )) us, HAProxy $(( $2 - direct )) us; target: dbshift added <= 1000 us"
}
