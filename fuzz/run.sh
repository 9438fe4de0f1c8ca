#!/bin/sh
# Runs one fuzz target for SECONDS (default 600) with the settings recorded in
# docs/fuzzing.md: new inputs go to corpus/TARGET, seeds/TARGET is read too.
set -eu
target=$1
seconds=${2:-600}
cd "$(dirname "$0")"
mkdir -p "corpus/$target"
exec cargo +nightly fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1
