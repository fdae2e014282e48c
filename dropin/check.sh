#!/bin/sh
# Builds and tests the drop-in workspace: the example driver on kmdf-sim under the name wdk-sys,
# with wdk and wdk-alloc from crates.io. Run from anywhere; CARGO_TARGET_DIR is honoured.
set -eu
cd "$(dirname "$0")"
cargo fmt --all -- --check
cargo test --locked
cargo clippy --locked --all-targets -- -D warnings
