#!/usr/bin/env bash
# CPU smoke run of the ImageNet networks on real photographs through the whole pipeline:
# Debian's wallpaper photos (plasma-workspace-wallpapers, mate-backgrounds) become a two-class
# photo set (class = package), shardify converts them at 240 px, and `train` runs ResNet-18
# and GoogLeNet for one epoch at 112 x 112 (scale jitter 128..240, crop, flip, PCA lighting),
# then evaluates each run with the centre, ten-crop and multi-scale protocols. The classes
# carry no visual meaning: this checks that everything runs, not what is learned.
# Takes a few minutes on 2 cores. Env: OUT (default runs/smoke-photos), EPOCHS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
apt_install plasma-workspace-wallpapers mate-backgrounds
out=${OUT:-runs/smoke-photos}
epochs=${EPOCHS:-1}
cargo build --release -p expanse-tools --bin shardify --bin train
bin=${CARGO_TARGET_DIR:-target}/release

rm -rf "$out"
mkdir -p "$out/photos/train/plasma" "$out/photos/train/mate" "$out/photos/val"
# Every fifth photo of each package goes to the validation folder, listed in val.txt.
link_photos() {
    local class=$1 root=$2 i=0
    while IFS= read -r photo; do
        local name="$class-$i.${photo##*.}"
        if [ $((i % 5)) -eq 0 ]; then
            ln -s "$photo" "$out/photos/val/$name"
            echo "$name $class" >> "$out/photos/val.txt"
        else
            ln -s "$photo" "$out/photos/train/$class/$name"
        fi
        i=$((i + 1))
    done < <(find "$root" -type f \( -name '*.jpg' -o -name '*.png' \) | sort)
}
link_photos plasma /usr/share/wallpapers
link_photos mate /usr/share/backgrounds/mate

"$bin/shardify" "$out/photos/train" "$out/shards" --max-side 240 --store reencode
"$bin/shardify" "$out/photos/val" "$out/shards" --labels "$out/photos/val.txt" \
    --max-side 240 --store reencode
"$bin/shardify" verify "$out/shards"

for model in resnet18 googlenet; do
    "$bin/train" --data "$out/shards" --model "$model" --run-dir "$out/$model" \
        --recipe scripts/recipes/resnet-imagenet-112.json \
        --eval-recipe scripts/recipes/eval-center-112.json \
        --epochs "$epochs" --batch-size 16 --eval-batch-size 16 --lr 0.01 --log-every 2
    "$bin/train" --eval-only "$out/$model" --protocol center --crop 112
    "$bin/train" --eval-only "$out/$model" --protocol 10crop --crop 112
    "$bin/train" --eval-only "$out/$model" --protocol multiscale --scales 112,128,160
done
