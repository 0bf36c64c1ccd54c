#!/usr/bin/env bash
# A stand-in daemon for `loadtest throughput --bin` / `loadtest latency --bin`: runs the
# real binary with the same arguments and records what it costs, thread by thread.
#
#   BIN=target/release/navixy-alerts LOG=/tmp/threads \
#       target/release/examples/loadtest throughput --trackers 8000 --bin scripts/daemon-wrapper.sh
#
# BIN: the daemon binary. LOG: a path prefix; each process started (`run`, then `replay`)
# writes LOG.<nanoseconds>, one line per thread every 0.1 s: `tid|name|utime|stime` in
# clock ticks (`/proc/PID/task/TID/stat`); a thread's last line is its total. With PERF
# (a path prefix), the daemon runs under `perf record -F 999` (PERFG: more perf options,
# such as `--call-graph dwarf`), which writes PERF.<nanoseconds>.
#
# `loadtest` reads the CPU of the process it started, here this script's: read the
# figures from LOG instead, for example
#   awk -F'|' '{t[$1]=$2; c[$1]=$3+$4} END {for (i in t) s[t[i]]+=c[i]; for (n in s) print n, s[n]/100}' LOG.<ns>
set -u
LOG=$LOG.$(date +%s%N)
PERF=${PERF:+$PERF.$(date +%s%N)}
if [[ -n $PERF ]]; then
    perf record -F 999 ${PERFG:-} -o "$PERF" -- "$BIN" "$@" 2>/dev/null &
    top=$!
    pid=
    for _ in $(seq 100); do
        pid=$(pgrep -P $top | head -1)
        [[ -n $pid ]] && break
        sleep 0.01
    done
else
    "$BIN" "$@" &
    top=$!
    pid=$top
fi
trap 'kill -TERM $pid' TERM INT
: >"$LOG"
(
    while kill -0 "$pid" 2>/dev/null; do
        out=""
        for t in /proc/$pid/task/*; do
            read -r line <"$t/stat" 2>/dev/null || continue
            rest=${line##*) }
            set -- $rest
            out+="${t##*/}|$(cat "$t/comm" 2>/dev/null)|${12}|${13}"$'\n'
        done
        printf '%s' "$out" >>"$LOG"
        sleep 0.1
    done
) &
wait $top
rc=$?
while kill -0 $top 2>/dev/null; do
    wait $top
    rc=$?
done
exit $rc
