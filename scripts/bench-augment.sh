#!/usr/bin/env bash
# Times our augmentation ops and recipes (benches/ops.rs) and the Python peers on the same
# decoded photos, alternately in one session, then prints a markdown table: op, input, our
# img/s, the fastest peer's img/s and name, and the ratio. Everything runs on one thread.
#
# Usage: scripts/bench-augment.sh [ROUNDS]    (default 2 rounds; about 8.5 minutes per round
#                                              on a 2-core VM, plus the first build)
# Each round runs `cargo bench --bench ops`, then the peers' ops_table.py and
# scripts/peer_recipe.py. Each figure in the table is the best of the rounds, for ours and for
# the peers alike, because a busy VM only ever slows a run down.
#
# Environment:
#   PEERS                  peer scripts folder (default ../shared/peers)
#   PYTHON                 Python with torch, torchvision, albumentations and OpenCV
#                          (default /tmp/pyref/bin/python; see the peers' README)
#   EXPANSE_PHOTOS         folder of *.jpg photos (default /tmp/peers-work/photos500)
#   EXPANSE_FASHION_MNIST  train-images-idx3-ubyte.gz (default: the Debian package's path)
#   BENCH_AUGMENT_OUT      folder for logs, JSON and table.md (default: a new /tmp folder)
#   OPS_BENCH_ARGS         extra criterion arguments, for example a filter such as "flip"
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rounds=${1:-2}
peers=$(cd "${PEERS:-../shared/peers}" && pwd)
python=${PYTHON:-/tmp/pyref/bin/python}
photos=$(cd "${EXPANSE_PHOTOS:-/tmp/peers-work/photos500}" && pwd)
out=${BENCH_AUGMENT_OUT:-$(mktemp -d /tmp/bench-augment.XXXXXX)}
mkdir -p "$out"

fmnist=${EXPANSE_FASHION_MNIST:-}
if [ -z "$fmnist" ]; then
    for candidate in /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
        /tmp/peers-work/root/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz; do
        if [ -f "$candidate" ]; then
            fmnist=$candidate
            break
        fi
    done
fi
if [ ! -f "$fmnist" ]; then
    echo "error: Fashion-MNIST not found; install dataset-fashion-mnist or set" \
        "EXPANSE_FASHION_MNIST to train-images-idx3-ubyte.gz" >&2
    exit 1
fi
export EXPANSE_PHOTOS=$photos EXPANSE_FASHION_MNIST=$fmnist

# ops_table.py reads $PEERS_WORK/photos500 and the Fashion-MNIST folder under
# $PEERS_WORK/root, so a folder of links hands it the same inputs as our bench.
peers_work=$out/peers-work
mkdir -p "$peers_work/root/usr/share/datasets"
ln -sfn "$photos" "$peers_work/photos500"
ln -sfn "$(dirname "$fmnist")" "$peers_work/root/usr/share/datasets/fashion-mnist"

cargo bench --no-run --bench ops
for round in $(seq "$rounds"); do
    echo "== round $round of $rounds: cargo bench --bench ops" >&2
    # shellcheck disable=SC2086 # OPS_BENCH_ARGS holds several words on purpose.
    CRITERION_HOME=$out/ours-$round cargo bench --bench ops -- ${OPS_BENCH_ARGS:-} \
        >"$out/ours-$round.log" 2>&1 || {
        tail -n 30 "$out/ours-$round.log" >&2
        exit 1
    }

    echo "== round $round of $rounds: ops_table.py, peer_recipe.py" >&2
    mkdir -p "$out/peers-$round"
    PEERS_WORK=$peers_work PEERS_RESULTS=$out/peers-$round "$python" "$peers/ops_table.py" \
        >"$out/peers-$round/ops_table.log" 2>&1
    "$python" scripts/peer_recipe.py --photos "$photos" --json "$out/peers-$round/recipes.json" \
        >"$out/peers-$round/recipes.log" 2>&1
done

"$python" - "$out" "$rounds" <<'PY' | tee "$out/table.md"
import json
import re
import sys
from pathlib import Path

out, rounds = Path(sys.argv[1]), int(sys.argv[2])


def ours():
    """(op, input) -> best img/s over the rounds, and the rows in the order the bench ran."""
    best, order = {}, []
    for r in range(1, rounds + 1):
        log = (out / f"ours-{r}.log").read_text(errors="replace")
        for bench_file in (out / f"ours-{r}").rglob("new/benchmark.json"):
            bench = json.loads(bench_file.read_text())
            estimates = json.loads((bench_file.parent / "estimates.json").read_text())
            images = bench["throughput"]["Elements"]
            rate = images * 1e9 / estimates["median"]["point_estimate"]
            key = (bench["group_id"], bench["value_str"] or bench["function_id"])
            best[key] = max(best.get(key, 0.0), rate)
            position = log.find(bench["full_id"])
            order.append((position if position >= 0 else len(log), key))
    keys = []
    for _, key in sorted(order):
        if key not in keys:
            keys.append(key)
    return best, keys


def peers():
    """(op, input) -> (best img/s, implementation), over every implementation and round."""
    best = {}
    for r in range(1, rounds + 1):
        for name in ("ops_table.json", "recipes.json"):
            path = out / f"peers-{r}" / name
            if not path.exists():
                continue
            for row in json.loads(path.read_text())["ops"]:
                key = (row["op"], row["input"])
                if row["img_per_s"] > best.get(key, (0.0, ""))[0]:
                    best[key] = (row["img_per_s"], row["impl"])
    return best


ours_rates, keys = ours()
peer_rates = peers()
print(f"## Augmentation throughput, one thread unless a row says otherwise, best of {rounds} rounds\n")
print("| op | input | ours img/s | fastest peer img/s | fastest peer | ours / peer |")
print("|---|---|---|---|---|---|")
matched = set()
for op, label in keys:
    # A bracketed suffix marks a variant of an op, which compares with the op's peers, except
    # the multi-thread rows: every peer figure is for one thread.
    peer_key = (re.sub(r"\s*\[.*\]$", "", op), label)
    rate = ours_rates[(op, label)]
    if peer_key in peer_rates and "threads]" not in op:
        matched.add(peer_key)
        peer_rate, impl = peer_rates[peer_key]
        print(f"| {op} | {label} | {rate:,.0f} | {peer_rate:,.0f} | {impl} | {rate / peer_rate:.2f} |")
    else:
        print(f"| {op} | {label} | {rate:,.0f} | - | - | - |")
for (op, label), (peer_rate, impl) in peer_rates.items():
    if (op, label) not in matched:
        print(f"| {op} | {label} | - | {peer_rate:,.0f} | {impl} | - |")
PY
echo "logs, JSON and table.md in $out" >&2
