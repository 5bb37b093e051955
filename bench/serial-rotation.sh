#!/usr/bin/env bash
# The peer of the CA rotation benchmark: reference runbook 000 done well. One instance at a
# time, each cluster's writer first then its readers, each instance moved to the new CA with a
# restart and waited on by a health check instead of the runbook's fixed `sleep 60`. The
# per-instance rotation is `dbshift ca-rotate --filter <instance> --concurrency 1 --mode
# restart` (issue, restart, health gate: TLS chain of the new CA, replication caught up), so
# both sides do the same work per instance and only the scheduling differs.
# Usage: serial-rotation.sh LAB_DIR CA
set -euo pipefail
lab=$1 ca=$2
dbshift=${DBSHIFT:-dbshift}
status=$("$dbshift" --dir "$lab" lab status -o json)
order=$(python3 -c '
import json, re, sys
s = json.loads(sys.argv[1])
key = lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
for c in sorted(s["clusters"], key=lambda c: key(c["name"])):
    ids = sorted((i["id"] for i in s["instances"] if i["cluster"] == c["name"]), key=key)
    print(c["writer"])
    for i in ids:
        if i != c["writer"]:
            print(i)
' "$status")
for id in $order; do
  "$dbshift" --dir "$lab" ca-rotate --to "$ca" --filter "$id" --concurrency 1 --mode restart \
    --yes -o json >/dev/null
done
