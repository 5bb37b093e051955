#!/usr/bin/env bash
# The peer of the switchover benchmark: reference runbook 003's cut-over, scripted as an
# operator would: read_only on the old writer, poll SHOW SLAVE STATUS once a second until the
# replica has executed everything, STOP SLAVE, RESET SLAVE ALL, read_only off on the new
# writer, then flip the application's config (here: the lab's name for the cluster).
# Usage: runbook-switchover.sh LAB_DIR CLUSTER NEW_WRITER
set -euo pipefail
lab=$1 cluster=$2 new=$3
dbshift=${DBSHIFT:-dbshift}
status=$("$dbshift" --dir "$lab" lab status -o json)
field() { python3 -c "import json,sys; s=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$status" "$1"; }
old=$(field "[c['writer'] for c in s['clusters'] if c['name']=='$cluster'][0]")
old_port=$(field "[i['endpoint']['port'] for i in s['instances'] if i['id']=='$old'][0]")
new_port=$(field "[i['endpoint']['port'] for i in s['instances'] if i['id']=='$new'][0]")
export MYSQL_PWD
MYSQL_PWD=$(field "s['users']['admin']['password']")
sql() { mariadb -h127.0.0.1 -P"$1" -udbshift_admin --ssl-ca="$lab/tls/trust.pem" -B "${@:3}" -e "$2"; }

sql "$old_port" "SET GLOBAL read_only=ON"
read -r file pos _ < <(sql "$old_port" "SHOW MASTER STATUS" -N)
while true; do
  st=$(sql "$new_port" "SHOW SLAVE STATUS\G" | sed 's/^ *//')
  [ -n "$st" ] || { echo "runbook: $new is not replicating" >&2; exit 1; }
  exec_file=$(echo "$st" | awk -F': ' '$1=="Relay_Master_Log_File"{print $2}')
  exec_pos=$(echo "$st" | awk -F': ' '$1=="Exec_Master_Log_Pos"{print $2}')
  [ "$exec_file" = "$file" ] && [ "$exec_pos" = "$pos" ] && break
  sleep 1
done
sql "$new_port" "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=OFF"
# The application's config flip: the lab's name now points at the new writer.
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
echo "runbook switchover done: $old -> $new"
