#!/usr/bin/env bash
# Adds the x86_64-unknown-linux-musl target for the musl test run in
# .ci/run. Rust's musl target is self-contained (its own crt objects and
# libc.a, linked with the system's cc) and no dependency of this crate
# compiles C, so musl-tools (musl-gcc) is not needed. Fails when the target
# can't be had (offline): .ci/run then prints SKIPPED.
set -euo pipefail
target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
