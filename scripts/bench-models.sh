#!/usr/bin/env bash
# CPU training-step time of ResNet-18, ResNet-50 and GoogLeNet at 224 x 224, batch 16, against
# PyTorch eager doing the same work (the peers' train_step.py), alternately in one session.
# Takes about 6 minutes a round on 2 cores; run it on an otherwise idle machine.
#
# Usage: scripts/bench-models.sh   Env: ROUNDS (default 2), THREADS (default 2), PEERS
# (default ../shared/peers), PYTHON (default /tmp/pyref/bin/python, with torch and torchvision).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
rounds=${ROUNDS:-2}
threads=${THREADS:-2}
python=${PYTHON:-/tmp/pyref/bin/python}
export PEERS=$(cd "${PEERS:-../shared/peers}" && pwd)
out=${BENCH_MODELS_OUT:-target/bench-models.jsonl}

cargo build --release -p expanse-tools --bin step-bench
: > "$out"
for round in $(seq "$rounds"); do
    for model in resnet18 resnet50 googlenet; do
        echo "== round $round: $model (expanse)" >&2
        target/release/step-bench --model "$model" --batch 16 --threads "$threads" --json | tee -a "$out"
    done
    echo "== round $round: PyTorch eager" >&2
    # The peers' torch brings its own libraries; ours must not shadow them.
    env -u LD_LIBRARY_PATH "$python" scripts/peer_models_step.py "$threads" | tee -a "$out"
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("\n| model | expanse step (s) | PyTorch step (s) | ratio (expanse / PyTorch) | rounds |")
print("|---|---|---|---|---|")
for model in ("resnet18", "resnet50", "googlenet"):
    ours = [r["train_step_s"] for r in rows if r["model"] == model and "runner" not in r]
    peer = [r["train_step_s"] for r in rows if r["model"] == model and r.get("runner") == "pytorch"]
    ratios = [f"{o / p:.2f}" for o, p in zip(ours, peer)]
    if ours and peer:
        o, p = statistics.median(ours), statistics.median(peer)
        print(f"| {model} | {o:.2f} | {p:.2f} | {o / p:.3f} ({', '.join(ratios)}) | {len(ours)} |")
PY
