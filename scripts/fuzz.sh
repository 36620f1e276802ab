#!/usr/bin/env bash
# Runs pounce's cargo-fuzz targets, each for FUZZ_SECONDS (default 600), one after another.
#   scripts/fuzz.sh                  all six targets
#   scripts/fuzz.sh chunked_decoder  one target
# Needs the nightly toolchain and cargo-fuzz (installed here when missing). A crash leaves
# its input in fuzz/artifacts/<target>/ and makes this script fail; turn it into a
# regression test next to the code it broke.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-600}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(request_parser chunked_decoder config_parser ajp_response tls_front proxy_header)

rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # Seeds (committed) are copied into the working corpus (not committed).
    [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    echo "== $t: ${SECONDS_EACH}s"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|panicked|Test unit written" || true
    if compgen -G "fuzz/artifacts/$t/crash-*" >/dev/null || compgen -G "fuzz/artifacts/$t/oom-*" >/dev/null || compgen -G "fuzz/artifacts/$t/timeout-*" >/dev/null; then
        echo "== $t: FAILED, see fuzz/artifacts/$t/"
        exit 1
    fi
    echo "== $t: no crash in ${SECONDS_EACH}s"
done
