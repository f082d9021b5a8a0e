"""Runs the ResNet-20 rows of the Python peers' train_step.py (PyTorch eager, CPU).

The peer script also times ResNet-18/50 and GoogLeNet at 224 px, which take minutes; the
ResNet-20 rows are the ones `benches/train_step.rs` measures.

Usage: PEERS=../shared/peers python scripts/peer_resnet20.py [THREADS]
"""
import os
import sys

sys.path.insert(0, os.environ.get("PEERS", os.path.join(os.path.dirname(__file__), "../../shared/peers")))
import train_step  # noqa: E402

all_configs = train_step.configs
train_step.configs = lambda: [c for c in all_configs() if c[0].startswith("ResNet-20")]
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
_, records = train_step.run(threads)
for r in records:
    print(f"pytorch {r['model']}, batch {r['batch']}, {threads} threads: "
          f"train step {r['train_step_s'] * 1000:.1f} ms")
