# failover_gap_sigstop: as failover_gap, for a hung writer (SIGSTOP): the replicas' IO threads
# notice it after slave_net_timeout (4 s in the lab, heartbeat every 2 s); dbshift's fence
# kills the stopped server outright. Target (issue 9): dbshift <= 10000 ms.
# shellcheck source=bench/cases/failover_gap.sh
source bench/cases/failover_gap.sh
case_name="failover gap, writer SIGSTOP (probe 200/s)"
case_note="values: probe max_write_gap_ms from the SIGSTOP to the first write on the new writer"
FAILOVER_SIGNAL=STOP
FAILOVER_CASE=failover_gap_sigstop
FAILOVER_TARGET=10000
PROBE_REPORT=$FAILOVER_CASE.report
