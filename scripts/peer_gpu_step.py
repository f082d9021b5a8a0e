"""PyTorch eager training steps on CUDA, the same work as `step-bench --device cuda`:
torchvision resnet50 or googlenet (aux heads, loss main + 0.3 x each aux), SGD momentum 0.9 and
weight decay 1e-4, autocast (bf16 or f16 with a GradScaler), channels-last, cudnn.benchmark, the
loss read back every step. Prints one JSON object.

Usage: python scripts/peer_gpu_step.py --model resnet50 --batch 256 [--precision bf16]
           [--channels-last] [--warmup 10] [--steps 30]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=["resnet18", "resnet50", "googlenet"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--precision", choices=["f32", "bf16", "f16"], default="bf16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    a = p.parse_args()

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    if a.model == "googlenet":
        model = torchvision.models.googlenet(aux_logits=True, init_weights=True)
    else:
        model = getattr(torchvision.models, a.model)()
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=fmt).train()
    x = torch.randn(a.batch, 3, 224, 224, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (a.batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    dtype = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}[a.precision]
    scaler = torch.amp.GradScaler("cuda", enabled=a.precision == "f16")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(x)
            if isinstance(out, tuple):
                loss = F.cross_entropy(out[0], y) + 0.3 * (F.cross_entropy(out[1], y) + F.cross_entropy(out[2], y))
            else:
                loss = F.cross_entropy(out, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"model": a.model, "runner": "pytorch", "device": torch.cuda.get_device_name(),
                      "precision": a.precision, "channels_last": a.channels_last, "batch": a.batch,
                      "train_step_s": med, "train_img_per_s": a.batch / med, "train_all_s": times}),
          flush=True)


if __name__ == "__main__":
    main()
