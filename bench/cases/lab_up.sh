# lab_up: from nothing to 2 clusters x (writer + 2 replicas) replicating, 6 servers.
# dbshift: `dbshift lab up --clusters 2 --replicas 2` (TLS, verified replication, users).
# peer: bench/peers/lab_up_by_hand.sh, what an operator's script does: one server at a time,
# install-db, start, poll with sleep 1, then CHANGE MASTER on each replica (no TLS: less work).
case_name="lab_up (2x3 servers)"
case_note="peer: serial shell script, no TLS"
setup() { rm -rf "$BENCH_TMP/lab" "$BENCH_TMP/peer"; }
teardown() {
  "$DBSHIFT" --dir "$BENCH_TMP/lab" lab down --purge >/dev/null 2>&1 || true
  bash bench/peers/lab_up_by_hand.sh down "$BENCH_TMP/peer" >/dev/null 2>&1 || true
}
run_dbshift() { "$DBSHIFT" --dir "$BENCH_TMP/lab" lab up --clusters 2 --replicas 2; }
run_peer() { bash bench/peers/lab_up_by_hand.sh up "$BENCH_TMP/peer"; }
