#!/usr/bin/env bash
# Data-parallel scaling on this machine: one epoch of ResNet-20 on Fashion-MNIST (global batch
# 128) as 1 process of 1 thread, 1 process of 2 threads, 2 processes of 1 thread, and 2
# processes of 1 thread with synchronised batch norm. Prints the training pass's images/s of
# each, which the README's table reports. About 8 minutes on 2 cores.
#
# Usage: scripts/bench-data-parallel.sh [extra train options]
# Writes shards/fashion-mnist/ (when missing) and runs/data-parallel/<setting>/ (replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo build --release --bin shardify --bin train
bin=target/release
fashion_mnist_shards "$bin"

out=runs/data-parallel
common=(--data shards/fashion-mnist --model resnet20 --epochs 1 --batch-size 128 --seed 0)
settings=(
    "1x1|--threads 1"
    "1x2|--threads 2"
    "2x1|--nproc-per-node 2 --threads 1"
    "2x1-sync-bn|--nproc-per-node 2 --threads 1 --sync-bn"
)
for setting in "${settings[@]}"; do
    name=${setting%%|*}
    read -r -a options <<<"${setting#*|}"
    rm -rf "${out:?}/$name"
    "$bin/train" "${common[@]}" "${options[@]}" --run-dir "$out/$name" "$@" >/dev/null
done

printf '%-12s %10s %10s\n' setting images/s seconds
for setting in "${settings[@]}"; do
    name=${setting%%|*}
    python3 - "$out/$name/metrics.jsonl" "$name" <<'PY'
import json, sys
train = next(json.loads(line) for line in open(sys.argv[1]) if '"split":"train"' in line)
print(f"{sys.argv[2]:<12} {train['images_per_second']:10.0f} {train['seconds']:10.1f}")
PY
done
