#!/usr/bin/env bash
# The Bayesian hyperparameter search on Fashion-MNIST that the README shows. It searches the
# learning rate, weight decay, batch size, depth and augmentation strength in 30 trials. Each
# trial is 3-fold cross-validation on 6,000 training images (4,000 to train and 2,000 to
# evaluate per fold), 2 epochs each. About 11 minutes of training on 2 cores when nothing else runs.
#
# Usage: scripts/search-fashion-mnist.sh [extra train search options]
# Writes shards/fashion-mnist/ (when missing) and runs/search-fashion-mnist/ (a stopped search
# continues when the script runs again; delete the folder to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo build --release --bin shardify --bin train
bin=target/release
fashion_mnist_shards "$bin"

"$bin/train" search --data shards/fashion-mnist --out runs/search-fashion-mnist \
    --strategy bayes --trials 30 --folds 3 --records 6000 \
    --epochs 2 --schedule cosine --nesterov --no-decay-bn-bias --padding 2 --seed 0 \
    --param lr=log:0.01..1 \
    --param weight-decay=log:1e-5..1e-2 \
    --param batch-size=choice:32,64,128 \
    --param depth=choice:8,14,20 \
    --param augment-strength=lin:0..2 \
    "$@"
