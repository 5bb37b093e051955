#!/usr/bin/env bash
# The dbshift side of the failover benchmarks: `dbshift watch --auto-failover` runs, the
# writer gets SIGNAL (KILL or STOP), and the script returns once the watcher has failed over
# (the cluster name points elsewhere), after stopping the watcher with Ctrl-C (SIGINT). The
# watcher's lines (with the failover's phases) go to stderr.
# Usage: failover-watch.sh LAB_DIR CLUSTER SIGNAL (KILL, STOP, or CUT: SIGUSR1 to the relay
# RELAY_PID in front of the writer, see bench/cases/failover_gap_cut.sh)
set -euo pipefail
lab=$1 cluster=$2 sig=$3
dbshift=${DBSHIFT:-dbshift}
writer() { "$dbshift" --dir "$lab" lab status -o json | python3 -c "import json,sys; s=json.load(sys.stdin); print([c['writer'] for c in s['clusters'] if c['name']=='$cluster'][0])"; }
old=$(writer)
pid=$("$dbshift" --dir "$lab" lab status -o json | python3 -c "import json,sys; s=json.load(sys.stdin); print([i['pid'] for i in s['instances'] if i['id']=='$old'][0])")
out=$(mktemp)
"$dbshift" --dir "$lab" watch "$cluster" --auto-failover --interval 200ms --confirmations 2 >"$out" 2>&1 &
watch=$!
for _ in $(seq 100); do grep -q watching "$out" && break; sleep 0.1; done
if [ "$sig" = CUT ]; then
  # The writer runs on, cut off: its relay (RELAY_PID) black-holes every connection.
  kill -USR1 "$RELAY_PID"
  echo "cut $old off (relay pid $RELAY_PID)" >&2
else
  kill -"$sig" "$pid"
  echo "killed $old (pid $pid) with SIG$sig" >&2
fi
for _ in $(seq 300); do [ "$(writer)" != "$old" ] && grep -q "failover .* -> " "$out" && break; sleep 0.1; done
kill -INT "$watch"
wait "$watch" || true
cat "$out" >&2
rm -f "$out"
