#!/usr/bin/env bash
# Every test: formatting, clippy, unit, integration and CLI tests, the Python shard reader,
# and a build of the benches. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
apt_install dataset-fashion-mnist

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
bash scripts/test-python-reader.sh
cargo bench --workspace --locked --no-run
