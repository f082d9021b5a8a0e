#!/usr/bin/env bash
# Times the training loader (loader-bench) against the Python peers' DataLoader pipelines on
# the same ImageNet-like photos, alternately in one session. Then it prints a markdown table:
# pipeline, cores, our img/s, the img/s of torchvision (PIL and torchvision.io back ends) and
# Albumentations with the ratios, our batch times and peak RSS, and the targets.
#
# Usage: ROUNDS=N scripts/bench-loader.sh    (default 1 round; about 5 minutes per round on a
#                                             2-core VM, plus the first build)
#
# Data: the photos (default /tmp/peers-work/photos500: real photos, shorter side 500, JPEG
# q90; see the peers' README for how to make them) repeated through symlinks to at least 500
# files, as the peers' loader_imagenet.py repeats its list, labelled with CLASSES classes by
# file, and converted with `shardify LIST.csv OUT --store keep` (the JPEG bytes are kept).
#
# Each round runs loader-bench with the recipes resnet-imagenet, scripts/recipes/
# resnet-scale-flip.json (resnet-imagenet without PCA lighting: the peers' "resnet" pipeline)
# and scripts/recipes/rrc-flip.json (the peers' "rrc" pipeline), at 1 and 2 threads, batch 32,
# EPOCHS epochs (the first is a warm-up), and the peers' loader_imagenet.py; odd rounds run
# ours first, even rounds the peers first. Each figure in the table is the best of the rounds,
# for ours and the peers alike, because a busy VM only ever slows a run down. One thread
# compares with num_workers=0 (everything in the main process), two threads with
# num_workers=2. The batch times are the intervals between batches reaching the consumer,
# pooled over the timed epochs; with fewer than 100 batches the nearest-rank p99 is the
# slowest batch. A last run of RSS_EPOCHS epochs (resnet-imagenet, 2 threads) checks that the
# resident set size stays flat.
#
# Environment:
#   ROUNDS            rounds of ours and the peers (default 1)
#   EPOCHS            epochs per loader-bench run, the first a warm-up (default 6: like the
#                     peers, one warm-up and five timed epochs)
#   RSS_EPOCHS        epochs of the RSS run (default 20)
#   CLASSES           classes of the photo shards, by file (default 10)
#   PEERS             peer scripts folder (default ../shared/peers)
#   PYTHON            Python with torch, torchvision, albumentations and OpenCV
#                     (default /tmp/pyref/bin/python; see the peers' README)
#   PEERS_WORK        the peers' work folder with photos500/ (default /tmp/peers-work)
#   PEERS_RESULTS     where loader_imagenet.py writes its JSON and finds photoset.json
#                     (default $PEERS_WORK/results)
#   PEERS_JSON        a loader_imagenet.json to use instead of running the peers (such as
#                     the peers' reference/ figures): then the ratios compare runs of
#                     different sessions, so say so wherever they are quoted
#   BENCH_LOADER_OUT  folder for shards, logs, JSON and table.md (default: a new /tmp folder)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rounds=${ROUNDS:-1}
epochs=${EPOCHS:-6}
rss_epochs=${RSS_EPOCHS:-20}
classes=${CLASSES:-10}
peers=$(cd "${PEERS:-../shared/peers}" && pwd)
python=${PYTHON:-/tmp/pyref/bin/python}
export PEERS_WORK=${PEERS_WORK:-/tmp/peers-work}
export PEERS_RESULTS=${PEERS_RESULTS:-$PEERS_WORK/results}
photos=$PEERS_WORK/photos500
out=${BENCH_LOADER_OUT:-$(mktemp -d /tmp/bench-loader.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! compgen -G "$photos/*.jpg" >/dev/null; then
    echo "error: no *.jpg photos found in $photos; create them with the peers'" \
        "make_photos.py (see the peers' README)" >&2
    exit 1
fi
if [ ! -f "$PEERS_RESULTS/photoset.json" ]; then
    echo "error: $PEERS_RESULTS/photoset.json not found; loader_imagenet.py needs it (the" \
        "peers' make_photos.py writes it)" >&2
    exit 1
fi

cargo build --release -p expanse-tools --bin shardify --bin loader-bench
bin=${CARGO_TARGET_DIR:-target}/release

# 1. ImageNet-like photo shards: files * ceil(500 / files) list entries, each repeat a
# symlink of its own because a list file names every path once.
shards=$out/shards
if [ ! -f "$shards/manifest.json" ]; then
    mapfile -t files < <(find "$photos" -maxdepth 1 -name '*.jpg' | sort)
    repeats=$(((500 + ${#files[@]} - 1) / ${#files[@]}))
    list=$out/photos/list.csv
    mkdir -p "$out/photos"
    : >"$list"
    for repeat in $(seq -w 0 $((repeats - 1))); do
        mkdir -p "$out/photos/r$repeat"
        for i in "${!files[@]}"; do
            name=$(basename "${files[$i]}")
            ln -sfn "${files[$i]}" "$out/photos/r$repeat/$name"
            echo "r$repeat/$name,class$((i % classes))" >>"$list"
        done
    done
    "$bin/shardify" "$list" "$shards" --store keep >"$out/shardify.log" 2>&1 || {
        cat "$out/shardify.log" >&2
        exit 1
    }
    echo "shards: $(wc -l <"$list") photos ($((${#files[@]})) files x $repeats), $classes" \
        "classes, in $shards" >&2
fi

recipes=(resnet-imagenet scripts/recipes/resnet-scale-flip.json scripts/recipes/rrc-flip.json)

run_ours() {
    local round=$1
    for recipe in "${recipes[@]}"; do
        for threads in 1 2; do
            local name
            name=$(basename "$recipe" .json)-t$threads
            echo "== round $round: loader-bench $name" >&2
            "$bin/loader-bench" "$shards" --recipe "$recipe" --threads "$threads" \
                --batch-size 32 --epochs "$epochs" --json "$out/ours-$round/$name.json" \
                >"$out/ours-$round/$name.log" 2>&1 || {
                cat "$out/ours-$round/$name.log" >&2
                exit 1
            }
        done
    done
}

run_peers() {
    local round=$1
    if [ -n "${PEERS_JSON:-}" ]; then
        cp "$PEERS_JSON" "$out/peers-$round.json"
        return
    fi
    echo "== round $round: loader_imagenet.py" >&2
    # env.sh points LD_LIBRARY_PATH at our libtorch, which the peers' torch must not load.
    (cd "$peers" && env -u LD_LIBRARY_PATH "$python" loader_imagenet.py) \
        >"$out/peers-$round.log" 2>&1 || {
        tail -n 30 "$out/peers-$round.log" >&2
        exit 1
    }
    cp "$PEERS_RESULTS/loader_imagenet.json" "$out/peers-$round.json"
}

for round in $(seq "$rounds"); do
    mkdir -p "$out/ours-$round"
    if [ $((round % 2)) -eq 1 ]; then
        run_ours "$round"
        run_peers "$round"
    else
        run_peers "$round"
        run_ours "$round"
    fi
done

echo "== loader-bench, $rss_epochs epochs for the RSS check" >&2
"$bin/loader-bench" "$shards" --recipe resnet-imagenet --threads 2 --batch-size 32 \
    --epochs "$rss_epochs" --json "$out/rss.json" >"$out/rss.log" 2>&1 || {
    cat "$out/rss.log" >&2
    exit 1
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: $(grep -m1 'model name' /proc/cpuinfo |
        cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(rustc --version)"
} >"$out/machine.txt"

"$python" - "$out" "$rounds" <<'PY' | tee "$out/table.md"
import json
import sys
from pathlib import Path

out, rounds = Path(sys.argv[1]), int(sys.argv[2])
PIPELINES = [
    ("resnet-imagenet", "resnet", "resnet-imagenet (with PCA lighting) vs peers' resnet"),
    ("resnet-scale-flip", "resnet", "resnet-scale-flip vs peers' resnet"),
    ("rrc-flip", "rrc", "rrc-flip vs peers' rrc"),
]


def best_ours(name):
    """The loader-bench report with the highest steady img/s over the rounds."""
    reports = [json.loads((out / f"ours-{r}" / f"{name}.json").read_text())
               for r in range(1, rounds + 1)]
    return max(reports, key=lambda report: report["steady"]["images_per_second"])


def best_peers():
    """(pipeline, backend, num_workers) -> best img/s over the rounds, and the versions."""
    best, versions = {}, {}
    for r in range(1, rounds + 1):
        report = json.loads((out / f"peers-{r}.json").read_text())
        versions = report.get("versions", versions)
        for row in report["loader"]:
            key = (row["pipeline"], row["backend"], row["num_workers"])
            best[key] = max(best.get(key, 0.0), row["img_per_s"])
    return best, versions


def met(ok):
    return "met" if ok else "**missed**"


peers, versions = best_peers()
print(f"{(out / 'machine.txt').read_text().strip()}")
print("peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
print(f"\n## Loader: decode + augment + normalise to f32, batch 32, best of {rounds} round(s)\n")
print("| pipeline | cores | ours img/s | torchvision (PIL) img/s | ratio | >= 3x | "
      "Albumentations img/s | ratio | >= 1.5x | torchvision.io img/s | ratio | "
      "interval p50 / p99 ms | p99 < 2x p50 | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, peer_pipeline, label in PIPELINES:
    for threads in (1, 2):
        report = best_ours(f"{name}-t{threads}")
        steady = report["steady"]
        rate = steady["images_per_second"]
        workers = 0 if threads == 1 else 2
        pil = peers[(peer_pipeline, "pil_v2", workers)]
        albu = peers[(peer_pipeline, "cv2_albu", workers)]
        tvio = peers[(peer_pipeline, "tvio_v2", workers)]
        p50, p99 = steady["interval_ms"]["p50"], steady["interval_ms"]["p99"]
        print(f"| {label} | {threads} (workers {workers}) | {rate:,.0f} | {pil:,.0f} | "
              f"{rate / pil:.2f} | {met(rate >= 3 * pil)} | {albu:,.0f} | {rate / albu:.2f} | "
              f"{met(rate >= 1.5 * albu)} | {tvio:,.0f} | {rate / tvio:.2f} | "
              f"{p50:.1f} / {p99:.1f} | {met(p99 < 2 * p50)} | {report['peak_rss_mib']:.0f} |")

decode = json.loads((out / f"peers-{rounds}.json").read_text())["decode"]["photos500"]
rates = ", ".join(f"{name} {figures['img_per_s']:,.0f}" for name, figures in decode.items()
                  if isinstance(figures, dict))
print(f"\nPeers' decode alone, one thread, from memory (photos500, {decode['avg_mpix']:.2f} MPix "
      f"on average; last round), img/s: {rates}.")

mix = best_ours("resnet-imagenet-t1")["class_mix"]
print(f"\nClass mix of epoch 0's plan (shuffle, {mix['batches']} batches): "
      f"{mix['mean_distinct']:.2f} distinct classes per batch, a uniform shuffle gives "
      f"{mix['expected_distinct']:.2f}; top class share {mix['mean_top_share']:.3f}.")

rss = json.loads((out / "rss.json").read_text())
epochs = rss["epochs"]
first, steady_first, last = epochs[0]["rss_mib"], epochs[1]["rss_mib"], epochs[-1]["rss_mib"]
flat = last <= steady_first * 1.05
print(f"\nRSS over {len(epochs)} epochs (resnet-imagenet, 2 threads): end of epoch 0 "
      f"{first:.1f} MiB, epoch 1 {steady_first:.1f} MiB, epoch {len(epochs) - 1} {last:.1f} "
      f"MiB, peak (VmHWM) {rss['peak_rss_mib']:.1f} MiB; flat (last within 5% of epoch 1): "
      f"{met(flat)}.")
PY
echo "logs, JSON and table.md in $out" >&2
