#!/usr/bin/env bash
# The peer of the failover benchmarks: reference runbook 002's failover, scripted as an
# operator would: poll the writer once a second (`SELECT 1`, 1 s connect timeout); on a failed
# poll "allow enough time for the system to detect the failure" (a fixed 2 s sleep) and poll
# again; still down: promote the chosen replica by hand (STOP SLAVE, RESET SLAVE ALL,
# read_only off), flip the application's config (here: the lab's name for the cluster), then
# re-point the other replica to it by GTID. No fencing of the old writer: the runbook has none.
# Usage: runbook_failover.sh LAB_DIR CLUSTER NEW_WRITER OTHER_REPLICA
set -euo pipefail
lab=$1 cluster=$2 new=$3 other=$4
dbshift=${DBSHIFT:-dbshift}
status=$("$dbshift" --dir "$lab" lab status -o json)
field() { python3 -c "import json,sys; s=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$status" "$1"; }
old=$(field "[c['writer'] for c in s['clusters'] if c['name']=='$cluster'][0]")
old_port=$(field "[i['endpoint']['port'] for i in s['instances'] if i['id']=='$old'][0]")
new_port=$(field "[i['endpoint']['port'] for i in s['instances'] if i['id']=='$new'][0]")
other_port=$(field "[i['endpoint']['port'] for i in s['instances'] if i['id']=='$other'][0]")
export MYSQL_PWD
MYSQL_PWD=$(field "s['users']['admin']['password']")
sql() { mariadb -h127.0.0.1 -P"$1" -udbshift_admin --ssl-ca="$lab/tls/trust.pem" --connect-timeout=1 -N -B -e "$2"; }
alive() { timeout 2 mariadb -h127.0.0.1 -P"$old_port" -udbshift_admin --ssl-ca="$lab/tls/trust.pem" --connect-timeout=1 -N -B -e "SELECT 1" >/dev/null 2>&1; }

while alive; do sleep 1; done
echo "runbook: $old does not answer; waiting 2 s before acting" >&2
sleep 2
if alive; then echo "runbook: $old answers again; nothing done" >&2; exit 1; fi
sql "$new_port" "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=OFF"
python3 - "$lab/lab.json" "$cluster" "$new" <<'PY'
import json, os, sys
path, cluster, new = sys.argv[1:]
s = json.load(open(path))
for c in s["clusters"]:
    if c["name"] == cluster:
        c["writer"] = new
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(s, f, indent=2)
os.chmod(tmp, 0o600)
os.rename(tmp, path)
PY
sql "$other_port" "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$new_port, MASTER_USE_GTID=slave_pos; START SLAVE"
echo "runbook failover done: $old -> $new" >&2
