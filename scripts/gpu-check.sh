#!/usr/bin/env bash
# The GPU check of the trainer. It times ResNet-50 and GoogLeNet training steps at 224 x 224
# on CUDA with mixed precision and channels-last through `step-bench`. PyTorch eager doing the
# same work (scripts/peer_gpu_step.py) follows each run, and the script prints the ratio.
#
# Runs on a machine with an NVIDIA GPU and torch 2.11 with CUDA installed for Python; no
# Rust toolchain is needed there. Build the binary where Rust is, then copy the repository
# (with target/release/step-bench) over:
#   source scripts/env.sh && cargo build --release -p expanse-tools --bin step-bench
#   bash scripts/gpu-check.sh                 # on the GPU machine
# The binary links the lean CPU libtorch; it finds libtorch_cuda.so (and the CUDA runtime
# it needs) in the lib folder of Python's torch, which this script puts on the library path.
#
# Env: PYTHON (default python3), BATCH (default 256), PRECISION (bf16 or f16, default bf16),
# ROUNDS (default 2), STEPS (default 30), OUT (folder for gpu-check.jsonl, default .).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
bin=${STEP_BENCH:-target/release/step-bench}
batch=${BATCH:-256}
precision=${PRECISION:-bf16}
rounds=${ROUNDS:-2}
steps=${STEPS:-30}
out=${OUT:-.}/gpu-check.jsonl

torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export EXPANSE_TORCH_CUDA_LIB="$torch_lib"
nvidia-smi -L || true
"$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())'

: > "$out"
for round in $(seq "$rounds"); do
    for model in resnet50 googlenet; do
        echo "== round $round: $model, batch $batch, $precision, channels-last" >&2
        "$bin" --model "$model" --batch "$batch" --device cuda --precision "$precision" \
            --channels-last --warmup 10 --steps "$steps" --json | tee -a "$out"
        "$python" scripts/peer_gpu_step.py --model "$model" --batch "$batch" \
            --precision "$precision" --channels-last --warmup 10 --steps "$steps" | tee -a "$out"
    done
done

"$python" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("\n| model | expanse img/s | PyTorch img/s | time ratio (expanse / PyTorch) |")
print("|---|---|---|---|")
for model in ("resnet50", "googlenet"):
    ours = [r["batch"] / r["train_step_s"] for r in rows if r["model"] == model and "runner" not in r]
    peer = [r["batch"] / r["train_step_s"] for r in rows if r["model"] == model and r.get("runner") == "pytorch"]
    if ours and peer:
        o, p = statistics.median(ours), statistics.median(peer)
        print(f"| {model} | {o:.0f} | {p:.0f} | {p / o:.3f} |")
PY
