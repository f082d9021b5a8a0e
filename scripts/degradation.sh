#!/usr/bin/env bash
# The degradation experiment of He et al., "Deep Residual Learning for Image Recognition"
# (2015), Fig. 6, on Fashion-MNIST: trains plain-20, ResNet-20, plain-56 and ResNet-56 with the
# same recipe, then plots their training and test error against iterations. A deeper plain
# network that trains worse than a shallower one shows the degradation; its residual twin
# should not.
#
# Usage: scripts/degradation.sh [extra train options]   (the last value of a repeated option
# wins)
# Environment: EPOCHS (default 2), BATCH (128), LR (0.1), OUT (runs/degradation), DATA (a
# shard set to use instead of shards/fashion-mnist, which is made like scripts/quickstart.sh
# does when it is missing or fails verification).
# Writes $OUT/<model>/ for each model (replaced on each run), $OUT/degradation.png and prints
# the summary table of `plot`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

epochs=${EPOCHS:-2}
batch=${BATCH:-128}
lr=${LR:-0.1}
out=${OUT:-runs/degradation}
models=(plain20 resnet20 plain56 resnet56)

cargo build --release -p expanse-tools
bin=${CARGO_TARGET_DIR:-target}/release

data=${DATA:-}
if [ -z "$data" ]; then
    data=shards/fashion-mnist
    if ! "$bin/shardify" verify "$data" >/dev/null 2>&1; then
        apt_install dataset-fashion-mnist
        rm -rf "$data"
        "$bin/shardify" /usr/share/datasets/fashion-mnist "$data" --classes \
            "t-shirt/top,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle boot"
        "$bin/shardify" verify "$data"
    fi
fi

# The paper divides the rate by 10 at 50% and 75% of training (32k and 48k of 64k
# iterations). Runs of 3 epochs or fewer are too short for that and keep the rate constant.
if [ "$epochs" -gt 3 ]; then
    schedule=(--schedule step --milestones "$((epochs / 2)),$((epochs * 3 / 4))")
else
    schedule=(--schedule constant)
fi

mkdir -p "$out"
started=$(date +%s)
for model in "${models[@]}"; do
    echo "training $model for $epochs epochs into $out/$model" >&2
    rm -rf "${out:?}/$model"
    # SGD with momentum 0.9 and weight decay 1e-4 as in the paper (the train defaults). The
    # 28x28 images get the 2-pixel padding of scripts/quickstart.sh instead of the paper's 4.
    "$bin/train" --data "$data" --model "$model" --run-dir "$out/$model" \
        --epochs "$epochs" --batch-size "$batch" --lr "$lr" "${schedule[@]}" \
        --momentum 0.9 --weight-decay 1e-4 --padding 2 --seed 0 --log-every 20 "$@"
done

run_dirs=()
for model in "${models[@]}"; do
    run_dirs+=("$out/$model")
done
"$bin/plot" "${run_dirs[@]}" --out "$out/degradation.png" \
    --title "Fashion-MNIST: plain vs residual, 20 and 56 layers"
echo "plot: $out/degradation.png"
echo "wall time: $(( $(date +%s) - started )) s"
