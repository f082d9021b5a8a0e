"""Runs the 224-pixel rows of the Python peers' train_step.py (PyTorch eager, CPU): torchvision
resnet18, resnet50 and googlenet (aux heads, loss main + 0.3 x each aux), batch 16, and prints one
JSON object per model with the fields `step-bench --json` prints.

Usage: PEERS=../shared/peers python scripts/peer_models_step.py [THREADS]
"""
import json
import os
import sys

sys.path.insert(0, os.environ.get("PEERS", os.path.join(os.path.dirname(__file__), "../../shared/peers")))
import train_step  # noqa: E402

NAMES = {"resnet18": "resnet18", "resnet50": "resnet50", "googlenet (aux)": "googlenet"}
all_configs = train_step.configs
train_step.configs = lambda: [c for c in all_configs() if c[0] in NAMES]
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
_, records = train_step.run(threads)
for r in records:
    print(json.dumps({"model": NAMES[r["model"]], "runner": "pytorch", "threads": threads,
                      "batch": r["batch"], "params": r["params"],
                      "train_step_s": r["train_step_s"], "eval_batch_s": r["eval_batch_s"]}),
          flush=True)
