#!/usr/bin/env bash
# Prepares this Linux machine to build multiproc for Windows and run its
# Windows test binaries under Wine: Wine, the MinGW-w64 linker, Rust's
# x86_64-pc-windows-gnu standard library, and a small bcryptprimitives.dll
# (Wine 8 lacks it; Rust's std on Windows imports ProcessPrng from it, and
# without it every Windows binary fails to start with exit code 53).
# Safe to run again: each step is skipped when already done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/windows/env.sh"

if ! command -v wine >/dev/null || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-windows: wine and gcc-mingw-w64-x86-64 are missing; run this script as root to install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wine64 gcc-mingw-w64-x86-64 >/dev/null
fi
rustup target list --installed | grep -qx x86_64-pc-windows-gnu || rustup target add x86_64-pc-windows-gnu

sys32="$WINEPREFIX/drive_c/windows/system32"
if [ ! -d "$sys32" ]; then
  wineboot --init >/dev/null 2>&1 || true
  wineserver -w || true
fi
if [ ! -f "$sys32/bcryptprimitives.dll" ]; then
  x86_64-w64-mingw32-gcc -shared -O2 -o "$sys32/bcryptprimitives.dll" "$here/windows/bcryptprimitives_shim.c"
fi
echo "windows test environment ready: $(wine --version), WINEPREFIX=$WINEPREFIX"
