#!/usr/bin/env bash
# The runbook's downtime probe, as operators write it: a shell loop that runs the mariadb
# client once per INSERT, sleeps a little, and logs a timestamp per attempt. What it calls the
# outage is the longest time between two successful INSERTs.
#
# Usage: probe_shell_loop.sh PORT SECONDS SLEEP_S
#   env MYSQL_PWD (the app user's password), CA (the lab's trust bundle)
# Prints: attempts=N ok=N failed=N achieved_rate=R max_gap_ms=G
set -uo pipefail
port=$1 secs=$2 pause=$3
q() { mariadb -h127.0.0.1 -P"$port" -uapp --ssl-ca="$CA" --ssl-verify-server-cert -N -e "$1"; }
q "CREATE TABLE IF NOT EXISTS dbshift.probe_peer (id BIGINT AUTO_INCREMENT PRIMARY KEY, sent_at DATETIME(6) NOT NULL)"
log=$(mktemp)
start=$(date +%s%3N)
end=$((start + secs * 1000))
while true; do
  now=$(date +%s%3N)
  [ "$now" -ge "$end" ] && break
  if q "INSERT INTO dbshift.probe_peer (sent_at) VALUES (NOW(6))" 2>/dev/null; then
    echo "$(date +%s%3N) ok" >>"$log"
  else
    echo "$(date +%s%3N) fail" >>"$log"
  fi
  sleep "$pause"
done
stop=$(date +%s%3N)
awk -v start="$start" -v stop="$stop" '
  { n++ } $2 == "ok" { ok++; if (last != "" && $1 - last > gap) gap = $1 - last; last = $1 }
  $2 == "fail" { failed++ }
  END { printf "attempts=%d ok=%d failed=%d achieved_rate=%.1f max_gap_ms=%d\n", n, ok, failed + 0, ok / ((stop - start) / 1000), gap }
' "$log"
rm -f "$log"
q "DROP TABLE IF EXISTS dbshift.probe_peer" || true
