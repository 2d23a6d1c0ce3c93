#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) on one core, its corpus seeded from
# fuzz/seeds/TARGET. Usage: fuzz/run.sh TARGET [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
target="$1"
seconds="${2:-600}"
mkdir -p "fuzz/corpus/$target"
if [ -d "fuzz/seeds/$target" ]; then
    cp -n fuzz/seeds/"$target"/* "fuzz/corpus/$target/" 2>/dev/null || true
fi
cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
