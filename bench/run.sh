#!/usr/bin/env bash
# Benchmark runner: builds dbshift in release mode, runs each case in bench/cases/ beside its
# peer in the same run (alternating, BENCH_REPS times each), and appends one row per case to
# bench/RESULTS.md with the medians and the ratio peer/dbshift (above 1: dbshift is faster).
#
# A case is a bash file that defines:
#   case_name, case_note   text for the results row
#   setup / teardown       untimed, around every single run
#   run_dbshift / run_peer the timed parts
#   metric WHO LOG         optional: the case measures something other than its wall time;
#                          prints the value of one run (WHO is dbshift or peer, LOG its output),
#                          and the row holds the medians of those values instead of times
#   extra_note DM PM       optional: text appended to the note, from the two medians
#   finish                 optional: run once after the case's last run (a lab kept across
#                          runs is taken down here)
# Usage: bash bench/run.sh [case ...]   (default: every case)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
reps=${BENCH_REPS:-3}
cargo build --release --bin dbshift >&2
export DBSHIFT="${CARGO_TARGET_DIR:-$root/target}/release/dbshift"
export BENCH_TMP
BENCH_TMP=$(mktemp -d /tmp/dbshift-bench.XXXXXX)
# Kept when a run fails, so its logs can be read.
trap 'rm -rf "$BENCH_TMP"' EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
  for f in bench/cases/*.sh; do cases+=("$(basename "$f" .sh)"); done
fi

results=bench/RESULTS.md
if [ ! -f "$results" ]; then
  cat > "$results" <<'HDR'
# Benchmark results

Appended by `bash bench/run.sh` (or `make bench`). Times are medians over the repetitions;
ratio = peer / dbshift (above 1: dbshift is faster). Cases that measure something else (the
probe's achieved rate, a measured outage) say what their values are in the note.

| date | commit | case | dbshift (ms) | peer (ms) | ratio | reps | machine | note |
|---|---|---|---|---|---|---|---|---|
HDR
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh

for c in "${cases[@]}"; do
  unset -f metric extra_note finish
  # shellcheck source=/dev/null
  source "bench/cases/$c.sh"
  d_times=(); p_times=()
  for ((i = 1; i <= reps; i++)); do
    for who in dbshift peer; do
      setup
      t0=$(now_ms)
      "run_$who" >"$BENCH_TMP/$c.$who.$i.log" 2>&1 || { echo "bench $c: $who failed, see $BENCH_TMP/$c.$who.$i.log" >&2; cat "$BENCH_TMP/$c.$who.$i.log" >&2; trap - EXIT; echo "bench: kept $BENCH_TMP" >&2; exit 1; }
      t1=$(now_ms)
      teardown
      v=$((t1 - t0))
      if declare -F metric >/dev/null; then
        v=$(metric "$who" "$BENCH_TMP/$c.$who.$i.log")
        [ -n "$v" ] || { echo "bench $c: no value in $BENCH_TMP/$c.$who.$i.log" >&2; cat "$BENCH_TMP/$c.$who.$i.log" >&2; trap - EXIT; echo "bench: kept $BENCH_TMP" >&2; exit 1; }
        echo "bench $c: $who run $i: value $v ($((t1 - t0)) ms)" >&2
      else
        echo "bench $c: $who run $i: $v ms" >&2
      fi
      if [ "$who" = dbshift ]; then d_times+=("$v"); else p_times+=("$v"); fi
    done
  done
  if declare -F finish >/dev/null; then finish; fi
  dm=$(printf '%s\n' "${d_times[@]}" | median)
  pm=$(printf '%s\n' "${p_times[@]}" | median)
  ratio=$(awk -v p="$pm" -v d="$dm" 'BEGIN {printf "%.2f", p / d}')
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)
  machine="$(nproc) cores"
  note=$case_note
  if declare -F extra_note >/dev/null; then note="$note$(extra_note "$dm" "$pm")"; fi
  row="| $(date -u +%Y-%m-%d) | $commit | $case_name | $dm | $pm | $ratio | $reps | $machine | $note |"
  echo "$row" >> "$results"
  echo "$row"
done
