#!/usr/bin/env bash
# The Windows suite: builds the tests for x86_64-pc-windows-gnu and runs every
# test binary under Wine (real Win32: CreateProcessW, named pipes,
# DuplicateHandle, TerminateProcess). Installs what it needs first (see
# setup-windows.sh). Extra arguments go to `cargo test`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/setup-windows.sh"
. "$here/windows/env.sh"
cd "$here/.."
cargo test --no-fail-fast --target x86_64-pc-windows-gnu "$@"
