# sm_switchover_gap: a switchover on a self-managed fleet, clients through HAProxy moved by
# its runtime API (`dbshift --provider self-managed --fleet F switchover main --to lab-1-2`,
# `redirect = "haproxy"`), against the same switchover of the same lab through the lab
# provider (clients following the cluster's name), in the same run: the probe at 200
# writes/s for 8 s, the switchover 3 s in.
# Value: the probe's longest write gap (ms). Target (issue 19): within noise of the lab's.
case_name="switchover write gap, self-managed fleet through HAProxy's runtime API vs the lab provider (probe 200/s)"
case_note="values: probe max_write_gap_ms per switchover; dbshift = self-managed + HAProxy, peer = lab provider"
BENCH_LAB="$BENCH_TMP/smlab"
SM_DIR="$BENCH_TMP/sm"
setup() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 2 >/dev/null
  mkdir -p "$SM_DIR"
  local hp; hp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  {
    printf 'global\n  stats socket %s level admin\ndefaults\n  mode tcp\n  timeout connect 5s\n' "$SM_DIR/haproxy.sock"
    printf '  timeout client 1m\n  timeout server 1m\nlisten mysql\n  bind 127.0.0.1:%s\n' "$hp"
    for id in lab-1-1 lab-1-2 lab-1-3; do
      local dis=""; [ "$id" = lab-1-1 ] || dis=" disabled"
      printf '  server %s 127.0.0.1:%s%s\n' "$id" "$(port_of "$id")" "$dis"
    done
  } > "$SM_DIR/haproxy.cfg"
  haproxy -D -f "$SM_DIR/haproxy.cfg" -p "$SM_DIR/haproxy.pid"
  echo "$hp" > "$SM_DIR/haproxy.port"
  field "s['users']['replication']['password']" > "$SM_DIR/replication.password"
  {
    printf '[credentials]\nadmin = { user = "%s", password_env = "SM_ADMIN_PASSWORD" }\n' "$(field "s['users']['admin']['user']")"
    printf 'replication = { user = "%s", password_file = "replication.password" }\n' "$(field "s['users']['replication']['user']")"
    printf '[tls]\nca_file = "%s"\n' "$BENCH_LAB/tls/trust.pem"
    printf '[[cluster]]\nname = "main"\nredirect = "haproxy"\n'
    printf '[cluster.haproxy]\nsockets = ["unix:%s"]\nbackend = "mysql"\n' "$SM_DIR/haproxy.sock"
    for id in lab-1-1 lab-1-2 lab-1-3; do
      printf '[[cluster.instance]]\nid = "%s"\nendpoint = "127.0.0.1:%s"\n' "$id" "$(port_of "$id")"
    done
  } > "$SM_DIR/fleet.toml"
}
teardown() {
  [ -f "$SM_DIR/haproxy.pid" ] && kill "$(cat "$SM_DIR/haproxy.pid")" 2>/dev/null || true
  rm -rf "$SM_DIR"
  "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true
}
probe_during() { # probe_during TARGET [probe args...] -- SWITCH COMMAND...
  local report="$BENCH_TMP/sm_switchover_gap.report" args=()
  rm -rf "$report"
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  DBSHIFT_PROBE_PASSWORD=$(field "s['users']['app']['password']") \
    "$DBSHIFT" --dir "$BENCH_LAB" probe --target "${args[@]}" --rate 200 --duration 8s \
    --output json --report-dir "$report" >/dev/null &
  local probe=$!
  sleep 3
  "$@" >&2
  wait "$probe"
}
run_dbshift() {
  probe_during "mysql://app@127.0.0.1:$(cat "$SM_DIR/haproxy.port")/dbshift" --tls-ca "$BENCH_LAB/tls/trust.pem" -- \
    env SM_ADMIN_PASSWORD="$(field "s['users']['admin']['password']")" \
    "$DBSHIFT" --dir "$SM_DIR/state" --provider self-managed --fleet "$SM_DIR/fleet.toml" \
    switchover main --to lab-1-2 --yes
}
run_peer() { probe_during lab-1 -- "$DBSHIFT" --dir "$BENCH_LAB" switchover lab-1 --to lab-1-2 --yes; }
metric() { PROBE_REPORT=sm_switchover_gap.report probe_gap; }
extra_note() { echo "; target: within noise of the lab provider's"; }
