#!/usr/bin/env bash
# Runs our benches and the Python peers on the same work, alternately, in one session, and
# prints the figures that BENCHMARKS.md records. Takes about 15 minutes.
#
# Usage: scripts/bench-compare.sh [ROUNDS]   (default 2 rounds)
# Needs the peers folder (PEERS, default ../shared/peers); creates /tmp/pyref with torch from
# the cached wheel when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
rounds=${1:-2}
peers=$(cd "${PEERS:-../shared/peers}" && pwd)
export PEERS=$peers PEERS_WORK=${PEERS_WORK:-/tmp/peers-work}
mkdir -p "$PEERS_WORK/results"

if [ ! -x /tmp/pyref/bin/python ]; then
    python3 -m venv /tmp/pyref
    /tmp/pyref/bin/pip install -q "$HOME"/.cache/expanse/wheels/torch-2.11.0-*.whl \
        torchvision==0.26.0 numpy pillow opencv-python-headless==5.1.0.95
fi

cargo bench --no-run --bench loader --bench train_step --bench augment
for round in $(seq "$rounds"); do
    echo "== round $round: loader (ours, then cifar_pipeline.py)"
    cargo bench --bench loader -- --warm-up-time 1 --measurement-time 5 2>&1 | grep -E "^loader|thrpt"
    EXPANSE_BENCH_THREADS=1 cargo bench --bench loader -- --warm-up-time 1 --measurement-time 5 \
        2>&1 | grep -E "^loader|thrpt"
    (cd "$peers" && /tmp/pyref/bin/python cifar_pipeline.py 2>&1 | grep -E "^\|")
    echo "== round $round: ResNet-20 train step (ours, then PyTorch)"
    cargo bench --bench train_step 2>&1 | grep -E "^resnet20|time:"
    /tmp/pyref/bin/python scripts/peer_resnet20.py 2 2>&1 | grep "^pytorch"
done
