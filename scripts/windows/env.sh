# Sourced by scripts/setup-windows.sh and scripts/test-windows.sh:
# `cargo test --target x86_64-pc-windows-gnu` then builds with MinGW and runs
# every test binary under Wine.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
export WINEPREFIX="${WINEPREFIX:-$HOME/.wine}"
export WINEDEBUG="${WINEDEBUG:--all}"
