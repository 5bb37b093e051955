# failover_gap_cut: as failover_gap, for a writer cut off from the network while it runs:
# everything that reaches it (dbshift, the probe, the runbook's poll, the replicas' IO threads)
# goes through a fault-injecting relay (crates/dbshift-testkit/examples/relay.rs; the lab's
# inventory names the relay's port as the writer's), and the relay black-holes every
# connection at once. dbshift's watcher sees the writer unreachable and the replicas hearing
# nothing (no event, no heartbeat every 0.5 s) for 3 heartbeat periods, fences it by a
# provider stop, promotes, re-points. The runbook polls the writer through the relay too.
# Target (issue 9): dbshift <= 10000 ms.
# shellcheck source=bench/cases/failover_gap.sh
source bench/cases/failover_gap.sh
case_name="failover gap, writer cut off by a relay (probe 200/s)"
case_note="values: probe max_write_gap_ms from the cut to the first write on the new writer"
FAILOVER_SIGNAL=CUT
FAILOVER_CASE=failover_gap_cut
FAILOVER_TARGET=10000
PROBE_REPORT=$FAILOVER_CASE.report
RELAY_BIN="${CARGO_TARGET_DIR:-target}/release/examples/relay"
[ -x "$RELAY_BIN" ] && [ "$RELAY_BIN" -nt crates/dbshift-testkit/examples/relay.rs ] ||
  cargo build --release -p dbshift-testkit --example relay >&2
setup() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab up --clusters 1 --replicas 2 >/dev/null
  local status port pw
  status=$("$DBSHIFT" --dir "$BENCH_LAB" lab status -o json)
  port=$(python3 -c "import json,sys; s=json.loads(sys.argv[1]); print([i['endpoint']['port'] for i in s['instances'] if i['id']=='lab-1-1'][0])" "$status")
  pw=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['users']['admin']['password'])" "$status")
  coproc RELAY { exec "$RELAY_BIN" "$port"; }
  export RELAY_PID=$RELAY_PID
  local relay_port
  read -r relay_port <&"${RELAY[0]}"
  # The replicas reach the writer through the relay (heartbeat period as dbshift sets it).
  for r in lab-1-2 lab-1-3; do
    local rport
    rport=$(python3 -c "import json,sys; s=json.loads(sys.argv[1]); print([i['endpoint']['port'] for i in s['instances'] if i['id']==sys.argv[2]][0])" "$status" "$r")
    MYSQL_PWD=$pw mariadb -h127.0.0.1 -P"$rport" -udbshift_admin --ssl-ca="$BENCH_LAB/tls/trust.pem" -e \
      "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$relay_port, MASTER_HEARTBEAT_PERIOD=0.5; START SLAVE"
  done
  # Everyone else finds the writer at the relay's port: the lab's inventory says so.
  python3 - "$BENCH_LAB/lab.json" "$relay_port" <<'PY'
import json, os, sys
path, port = sys.argv[1], int(sys.argv[2])
s = json.load(open(path))
for i in s["instances"]:
    if i["id"] == "lab-1-1":
        i["port"] = port
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(s, f, indent=2)
os.chmod(tmp, 0o600)
os.rename(tmp, path)
PY
  sleep 1
}
teardown() {
  "$DBSHIFT" --dir "$BENCH_LAB" lab down --purge >/dev/null 2>&1 || true
  kill "$RELAY_PID" 2>/dev/null || true
  wait "$RELAY_PID" 2>/dev/null || true
}
peer_after() {
  DBSHIFT="$DBSHIFT" bash bench/peers/runbook_failover.sh "$BENCH_LAB" lab-1 lab-1-2 lab-1-3 &
  local runbook=$!
  kill -USR1 "$RELAY_PID"
  wait "$runbook"
}
