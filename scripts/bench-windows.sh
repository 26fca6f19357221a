#!/usr/bin/env bash
# The benchmark as a Windows binary under Wine (same rows, same-run
# baselines). Wine's process start is far slower than Windows' (~50 ms), so
# read the ratios, not the absolute figures. Extra arguments go to the bench.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/setup-windows.sh" >/dev/null
. "$here/windows/env.sh"
cd "$here/.."
cargo run --release --example bench --target x86_64-pc-windows-gnu -- "$@"
