#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60) with
# cargo-fuzz (libFuzzer) on the nightly toolchain, installing both if they
# are missing. Seeds come from fuzz/seeds/<target>; new corpus entries go
# to a temporary directory. Exits 0 with a SKIPPED line when nightly or
# cargo-fuzz can't be had; non-zero when a target finds a crash.
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || {
    echo "fuzz: SKIPPED (the nightly toolchain can't be installed here)"; exit 0; }
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || {
    echo "fuzz: SKIPPED (cargo-fuzz can't be installed here)"; exit 0; }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in bootstrap frame pool_messages reply handles shared sync queue handshake; do
  mkdir -p "$work/$t"
  echo "fuzz: $t for ${secs}s"
  # -malloc_limit_mb: any single allocation over 256 MiB is a failure, so a
  # length field can't make a decoder allocate what the data doesn't carry.
  rc=0
  cargo +nightly fuzz run "$t" "$work/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -malloc_limit_mb=256 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$work/$t.log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==[0-9]+==|SUMMARY)' "$work/$t.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$work/$t.log"
    echo "fuzz: $t FAILED (rc=$rc)"
    exit "$rc"
  fi
done
