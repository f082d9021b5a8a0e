#!/usr/bin/env bash
# The main job, from a fresh machine: install what is missing, build, shardify Fashion-MNIST,
# train a CIFAR-style ResNet-20 on it on the CPU, evaluating on the 10,000 test images after
# every epoch, and print a summary.
#
# Usage: scripts/quickstart.sh [extra train options]   e.g. --epochs 1 for a short try (the
# last value of a repeated option wins)
# Writes shards/fashion-mnist/ and runs/fashion-mnist-resnet20/ (replaced on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
apt_install dataset-fashion-mnist

cargo build --release --bin shardify --bin train
bin=target/release

started=$(date +%s)
rm -rf shards/fashion-mnist runs/fashion-mnist-resnet20
"$bin/shardify" /usr/share/datasets/fashion-mnist shards/fashion-mnist --classes \
    "t-shirt/top,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle boot"
"$bin/shardify" verify shards/fashion-mnist
"$bin/shardify" inspect shards/fashion-mnist

# The recipe: zero-pad 2 and random 28x28 crop, horizontal flip, SGD with Nesterov momentum
# 0.9, weight decay 5e-4 (not on batch-norm parameters and biases), batch 128, peak rate 0.1
# with per-step cosine decay, 9 epochs.
"$bin/train" --data shards/fashion-mnist --model resnet20 --run-dir runs/fashion-mnist-resnet20 \
    --epochs 9 --batch-size 128 --lr 0.1 --schedule cosine --nesterov --weight-decay 5e-4 \
    --no-decay-bn-bias --padding 2 --seed 0 "$@"

echo "wall time from shardify to summary: $(( $(date +%s) - started )) s"
