#!/bin/bash
# Runs every fuzz target for SECONDS each (default 300), JOBS at a time
# (default 2), from its seed corpus; prints the runs each made. A crash
# stops that target and leaves its input in fuzz/artifacts/<target>/:
# turn it into a regression test, fix, and run again.
#   cargo install cargo-fuzz   # once
#   fuzz/run.sh [SECONDS] [JOBS]
set -u
cd "$(dirname "$0")"
seconds=${1:-300}
jobs=${2:-2}
# cargo-fuzz passes nightly-only flags; this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none -O || exit 1
targets=$(cargo fuzz list)
mkdir -p logs
run() {
    local t=$1
    mkdir -p "corpus/$t"
    cargo fuzz run --sanitizer none -O "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 > "logs/$t.log" 2>&1
    local rc=$?
    local runs
    runs=$(grep -o 'Done [0-9]* runs' "logs/$t.log" | grep -o '[0-9]*')
    echo "$t: ${runs:-?} runs in ${seconds}s, exit $rc"
}
export -f run
export seconds
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run {}'
