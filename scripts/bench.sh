#!/usr/bin/env bash
# The performance evidence of BENCHMARKS.md, in one run: builds the release binary and the
# load tools, generates a fleet recording, runs the criterion benches, `replay --stats`
# without and with the stock rules, decoding the same recording alone, the frame-to-webhook
# latency test, and the live path's CPU next to replay's (`loadtest throughput`); prints a
# table of the figures against the SPEC targets.
#
#   scripts/bench.sh                  # everything (about 10 minutes on two cores)
#   QUICK=1 scripts/bench.sh          # skip the criterion benches
#
# Environment: OUT (default target/bench: logs and the recording), TRACKERS (10000),
# UPDATES (1000000), RUNS (3: replay runs, the best is kept), RATE (20000 updates/s),
# SECONDS_OF_LOAD (30), BENCHES (decode rules replay dispatch memory), LIVE_TRACKERS (8000)
# and LIVE_MINUTES (30): the fleet `loadtest throughput` generates.
#
# The machine may be shared: every figure is printed with the load average at the time.

set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-target/bench}
TRACKERS=${TRACKERS:-10000}
UPDATES=${UPDATES:-1000000}
RUNS=${RUNS:-3}
RATE=${RATE:-20000}
SECONDS_OF_LOAD=${SECONDS_OF_LOAD:-30}
BENCHES=${BENCHES:-decode rules replay dispatch memory}
LIVE_TRACKERS=${LIVE_TRACKERS:-8000}
LIVE_MINUTES=${LIVE_MINUTES:-30}
mkdir -p "$OUT"

load() { cut -d' ' -f1 /proc/loadavg; }
say() { printf '\n== %s (load %s)\n' "$*" "$(load)" >&2; }

say "build"
cargo build --release --bin navixy-alerts --example gen_fleet --example loadtest >&2
BIN=target/release/navixy-alerts

FLEET="$OUT/fleet-$TRACKERS-$UPDATES.jsonl"
LIST="$OUT/fleet-$TRACKERS-trackers.json"
if [[ ! -s $FLEET || ! -s $LIST ]]; then
    say "generate $UPDATES updates of $TRACKERS trackers"
    target/release/examples/gen_fleet --trackers "$TRACKERS" --updates "$UPDATES" \
        --out "$FLEET" --tracker-list "$LIST" >&2
fi

# Rows of the final table: "what|figure|target|command".
ROWS=()
row() { ROWS+=("$1|$2|$3|$4"); }

# The middle throughput of a criterion bench id, in elements per second.
thrpt() { # log id
    awk -v id="$2" '
        function num(v, u) {
            if (u ~ /^G/) return v * 1e9; if (u ~ /^M/) return v * 1e6
            if (u ~ /^K/) return v * 1e3; return v
        }
        /^[^ ]/ { cur = $1 }
        cur == id && /thrpt:/ {
            sub(/.*thrpt: *\[/, ""); split($0, f, " "); printf "%.0f\n", num(f[3], f[4]); exit
        }' "$1"
}
# The middle time of a criterion bench id, as printed ("1.2345 ms").
mtime() { # log id
    awk -v id="$2" '
        /^[^ ]/ { cur = $1 }
        cur == id && /time:/ { sub(/.*time: *\[/, ""); split($0, f, " "); print f[3], f[4]; exit }' "$1"
}
commas() { sed -E ':a;s/([0-9])([0-9]{3})($|[^0-9])/\1,\2\3/;ta' <<<"$1"; }

if [[ -z ${QUICK:-} ]]; then
    for bench in $BENCHES; do
        [[ -f benches/$bench.rs ]] || continue
        say "cargo bench --bench $bench"
        cargo bench --bench "$bench" 2>&1 | tee "$OUT/bench-$bench.log" >&2
    done
    if [[ -f $OUT/bench-decode.log ]]; then
        row "decode, every field (states/s per core)" \
            "$(commas "$(thrpt "$OUT/bench-decode.log" state_batch/decode_frame)")" \
            ">= 500,000 (stretch 1,000,000)" "cargo bench --bench decode"
        row "decode, rule fields only (states/s per core)" \
            "$(commas "$(thrpt "$OUT/bench-decode.log" state_batch/decode_frame_rule_fields)")" \
            "stretch 1,000,000" "cargo bench --bench decode"
        row "decode, readings items (items/s per core)" \
            "$(commas "$(thrpt "$OUT/bench-decode.log" readings_batch/decode_frame)")" \
            "" "cargo bench --bench decode"
    fi
    if [[ -f $OUT/bench-rules.log ]]; then
        row "rule conditions, stock rules (evaluations/s per core)" \
            "$(commas "$(thrpt "$OUT/bench-rules.log" rules/conditions)")" "" "cargo bench --bench rules"
        row "state update through cache and rules (updates/s per core)" \
            "$(commas "$(thrpt "$OUT/bench-rules.log" rules/updates)")" "" "cargo bench --bench rules"
    fi
    if [[ -f $OUT/bench-replay.log ]]; then
        row "engine without rules (updates per CPU-second)" \
            "$(commas "$(thrpt "$OUT/bench-replay.log" replay/engine_no_rules)") (decode alone $(commas "$(thrpt "$OUT/bench-replay.log" replay/decode_only)"))" \
            "" "cargo bench --bench replay"
        row "engine with the stock rules (updates per CPU-second)" \
            "$(commas "$(thrpt "$OUT/bench-replay.log" replay/engine_stock_rules)")" \
            "" "cargo bench --bench replay"
    fi
    if [[ -f $OUT/bench-dispatch.log ]]; then
        row "dispatcher: record one transition (synchronous=FULL commit)" \
            "$(mtime "$OUT/bench-dispatch.log" dispatch_record/submit_one)" "" "cargo bench --bench dispatch"
        row "dispatcher: record transitions in batches of 1000 (transitions/s)" \
            "$(commas "$(thrpt "$OUT/bench-dispatch.log" dispatch_record/submit_batch_1000)")" "" "cargo bench --bench dispatch"
        row "dispatcher: submit to webhook request" \
            "$(grep -o 'p50=.*' "$OUT/bench-dispatch.log" | tail -1)" "" "cargo bench --bench dispatch"
    fi
    if [[ -f $OUT/bench-memory.log ]]; then
        while IFS= read -r line; do
            row "memory: ${line%%:*}" "${line##*: }" "< 1 GiB (1024 MiB)" "cargo bench --bench memory"
        done < <(grep 'MiB resident' "$OUT/bench-memory.log")
    fi
fi

# replay --stats: the best of RUNS, wall time.
best_replay() { # config label
    local best=0 rate line
    for _ in $(seq "$RUNS"); do
        line=$("$BIN" replay -c "$1" --stats --quiet --trackers "$LIST" "$FLEET" 2>&1 |
            tee -a "$OUT/replay-$2.log" | grep '^updates:')
        rate=$(sed -E 's/.*\(([0-9]+) updates\/s\).*/\1/' <<<"$line")
        printf '  %s (load %s)\n' "$line" "$(load)" >&2
        ((rate > best)) && best=$rate
    done
    echo "$best"
}
: >"$OUT/replay-no-rules.log"
: >"$OUT/replay-stock-rules.log"
say "replay --stats, no rules"
NO_RULES=$(best_replay tests/data/replay.yaml no-rules)
say "replay --stats, stock rules"
STOCK=$(best_replay tests/data/ops/replay-stock.yaml stock-rules)
say "decode alone, the same recording"
target/release/examples/loadtest decode "$FLEET" | tee "$OUT/decode-alone.log" >&2
DECODE=$(grep -o 'decoding alone [0-9]* updates' "$OUT/decode-alone.log" | grep -o '[0-9]*')
REPLAY_CMD="navixy-alerts replay -c CONFIG --stats --quiet --trackers $LIST $FLEET"
row "replay, no rules (updates/s, wall, best of $RUNS)" "$(commas "$NO_RULES")" "" \
    "${REPLAY_CMD/CONFIG/tests/data/replay.yaml}"
row "replay, stock rules (updates/s, wall, best of $RUNS)" "$(commas "$STOCK")" ">= 250,000" \
    "${REPLAY_CMD/CONFIG/tests/data/ops/replay-stock.yaml}"
row "decode alone, same recording (updates per CPU-second)" "$(commas "$DECODE")" "" \
    "target/release/examples/loadtest decode $FLEET"
row "decode alone / replay with stock rules" \
    "$(awk -v d="$DECODE" -v s="$STOCK" 'BEGIN { if (s > 0) printf "%.2fx", d / s; else print "n/a" }')" \
    "<= 3x" "the two rows above"

# The recording just written is still being flushed to the disk: its writeback would
# stall the daemon's commits (fsync) and measure the disk, not the daemon.
sync
say "latency: $RATE updates/s for $SECONDS_OF_LOAD s"
target/release/examples/loadtest latency --rate "$RATE" --seconds "$SECONDS_OF_LOAD" \
    2>&1 | tee "$OUT/latency.log" >&2
row "frame -> webhook at $RATE updates/s" "$(grep -o 'p50.*' "$OUT/latency.log" | tail -1)" \
    "p99 < 5 ms" "target/release/examples/loadtest latency --rate $RATE --seconds $SECONDS_OF_LOAD"
row "daemon CPU at $RATE updates/s" "$(grep -o '([0-9]* % of one core)' "$OUT/latency.log" | tr -d '()')" "" \
    "the same"

# The live path (`run`: WebSocket, engine, outbox, webhook) as fast as it reads, and
# `replay` of the same generated recording and rules, on CPU time.
sync
say "throughput: run next to replay, $LIVE_TRACKERS trackers x $LIVE_MINUTES min"
THROUGHPUT_CMD="target/release/examples/loadtest throughput --trackers $LIVE_TRACKERS --minutes $LIVE_MINUTES"
$THROUGHPUT_CMD 2>&1 | tee "$OUT/throughput.log" >&2
per_million() { grep "^$1:" "$OUT/throughput.log" | grep -o 'CPU [0-9.]* s ([0-9.]* s per million' | sed -E 's/CPU ([0-9.]*) s \(([0-9.]*) .*/\1 s, \2 s per million updates/'; }
row "run, the live path (CPU)" "$(per_million run)" "" "$THROUGHPUT_CMD"
row "replay, the same recording and rules (CPU)" "$(per_million replay)" "" "the same"
row "run / replay, CPU per update" "$(grep -o '^run / replay: [0-9.]*x' "$OUT/throughput.log" | grep -o '[0-9.]*x')" \
    "<= 1.25x (later)" "the same"

printf '\n| what | figure | target | command |\n|---|---|---|---|\n'
for r in "${ROWS[@]}"; do
    IFS='|' read -r what figure target command <<<"$r"
    printf '| %s | %s | %s | `%s` |\n' "$what" "$figure" "$target" "$command"
done
printf '\nmachine: %s cores, load average now %s; logs in %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$OUT"
