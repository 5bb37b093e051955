#!/usr/bin/env bash
# The peer for bench/cases/lab_up.sh: building 2 clusters of a writer and 2 replicas the way a
# runbook script does, one server after the other. Usage: lab_up_by_hand.sh up|down DIR
set -euo pipefail
cmd=$1 dir=$2
user_opt=""; [ "$(id -u)" -eq 0 ] && user_opt="--user=root"
if [ "$cmd" = down ]; then
  for p in "$dir"/*/mysqld.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  for p in "$dir"/*/mysqld.pid; do while [ -f "$p" ]; do sleep 0.1; done; done
  rm -rf "$dir"; exit 0
fi
mkdir -p "$dir"
port=$(( 20000 + RANDOM % 20000 ))
for c in 1 2; do
  for i in 1 2 3; do
    d="$dir/s$c$i"; mkdir -p "$d"
    cat > "$d/my.cnf" <<CNF
[mysqld]
datadir=$d/data
port=$port
bind_address=127.0.0.1
socket=$d/mysqld.sock
pid_file=$d/mysqld.pid
log_error=$d/error.log
server_id=$c$i
gtid_domain_id=$c
log_bin=binlog
binlog_format=ROW
log_slave_updates=ON
innodb_buffer_pool_size=16M
innodb_log_file_size=8M
performance_schema=OFF
CNF
    echo "$port" > "$d/port"; port=$((port + 1))
    mariadb-install-db --defaults-file="$d/my.cnf" --skip-test-db $user_opt >/dev/null
    (setsid mariadbd --defaults-file="$d/my.cnf" $user_opt >/dev/null 2>&1 &)
    until mariadb-admin --socket="$d/mysqld.sock" ping >/dev/null 2>&1; do sleep 1; done
    mariadb --socket="$d/mysqld.sock" -e "CREATE USER repl@'127.0.0.1' IDENTIFIED BY 'replpw'; GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1'; RESET MASTER;"
  done
  wport=$(cat "$dir/s${c}1/port")
  for i in 2 3; do
    mariadb --socket="$dir/s$c$i/mysqld.sock" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$wport, MASTER_USER='repl', MASTER_PASSWORD='replpw', MASTER_USE_GTID=slave_pos; START SLAVE;"
    until mariadb --socket="$dir/s$c$i/mysqld.sock" -e "SHOW SLAVE STATUS\G" | grep -q "Slave_SQL_Running: Yes"; do sleep 1; done
  done
done
