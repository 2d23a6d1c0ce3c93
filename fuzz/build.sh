#!/usr/bin/env bash
# Builds every fuzz target (nightly toolchain and cargo-fuzz needed:
# `rustup toolchain install nightly`, `cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
for target in $(cargo +nightly fuzz list); do
    cargo +nightly fuzz build "$target"
done
