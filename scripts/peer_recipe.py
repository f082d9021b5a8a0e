"""Times the Python equivalents of expanse's named augmentation recipes, one thread per process.

Rows, on decoded 500x375 RGB photos (the inputs of the `ops` bench and of the peers'
ops_table.py: each photo centre-cropped to 4:3 and resized with cv2 INTER_AREA):

- recipe resnet-imagenet: shorter side U{256..480}, random crop 224, horizontal flip p=0.5,
  fixed-eigen ImageNet PCA lighting (sigma 0.1), ImageNet mean/std normalisation to float32.
  The Albumentations 2.0 version resizes with SmallestMaxSize (cv2 bilinear) and adds the
  lighting through a per-image cv2.LUT, as ops_table.py does. It runs once with HWC output
  and once with a contiguous CHW copy, the layout expanse writes. The torchvision v2 versions
  run on uint8 CHW tensors and on PIL images, with antialiased resizing, and add the lighting
  to [0, 1] floats as fb.resnet.torch does.
- recipe eval-center: resize the shorter side to 256, centre crop 224, normalise.
- recipe eval-10crop: resize the shorter side to 256, TenCrop 224 (the four corners and the
  centre, then their mirrors), normalise each view.

Timing follows ops_table.py: a few warm-up calls, repeats sized to about 0.5 s, and the
median of 5 repeats. Prints a markdown table and, with --json PATH, writes the rows as JSON
({"ops": [{"op", "impl", "input", "img_per_s", "us_per_img"}]}).

Usage: /tmp/pyref/bin/python scripts/peer_recipe.py [--photos DIR] [--json PATH] [--quick]
(photos default to $EXPANSE_PHOTOS, else /tmp/peers-work/photos500; --quick uses 0.1 s
repeats for a smoke test). Takes about 1 minute.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
import albumentations as A

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# AlexNet / fb.resnet.torch ImageNet PCA: standard deviations along the eigenvectors in [0, 1]
# pixel units, and the eigenvectors as columns (row c = component of colour channel c).
EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32)
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]], np.float32)
RNG = np.random.default_rng(0)
REPEATS = 5


def pca_offset():
    """Returns one draw of the per-channel RGB offset in [0, 1] units (sigma 0.1)."""
    return EIGVEC @ (RNG.normal(0, 0.1, 3).astype(np.float32) * EIGVAL)


def pca_u8_lut(img, **_):
    """Adds a PCA lighting offset to a uint8 HWC image through a per-channel cv2.LUT."""
    lut = np.clip(np.arange(256, dtype=np.float32)[:, None] + pca_offset() * 255, 0, 255)
    return cv2.LUT(img, np.rint(lut).astype(np.uint8).reshape(256, 1, 3))


def pca_f32_torch(x):
    """Adds a PCA lighting offset to a float CHW tensor in [0, 1] (fb.resnet.torch Lighting)."""
    return x + torch.from_numpy(pca_offset())[:, None, None]


def load_photos(folder):
    """Decodes every JPEG in `folder` to RGB, cuts the centre 4:3 window, resizes to 500x375."""
    out = []
    for path in sorted(Path(folder).glob("*.jpg")):
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        ch, cw = (h, h * 4 // 3) if w * 3 >= h * 4 else (w * 3 // 4, w)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        window = img[y0:y0 + ch, x0:x0 + cw]
        out.append(cv2.resize(window, (500, 375), interpolation=cv2.INTER_AREA))
    if not out:
        sys.exit(f"error: no *.jpg photos found in {folder}; set EXPANSE_PHOTOS or --photos")
    return out


def albumentations_resnet(chw):
    pipeline = A.Compose([
        A.SmallestMaxSize(max_size=list(range(256, 481)), p=1),
        A.RandomCrop(224, 224),
        A.HorizontalFlip(p=0.5),
        A.Lambda(image=pca_u8_lut, p=1),
        A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ], seed=0)
    if chw:
        return lambda img: np.ascontiguousarray(pipeline(image=img)["image"].transpose(2, 0, 1))
    return lambda img: pipeline(image=img)["image"]


def torchvision_resnet(pil):
    to_tensor = [v2.PILToTensor()] if pil else []
    return v2.Compose([
        v2.RandomResize(256, 481),
        v2.RandomCrop(224),
        v2.RandomHorizontalFlip(p=0.5),
        *to_tensor,
        v2.ToDtype(torch.float32, scale=True),
        v2.Lambda(pca_f32_torch),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def torchvision_eval_center():
    return v2.Compose([
        v2.Resize(256),
        v2.CenterCrop(224),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def torchvision_eval_ten_crop():
    resize = v2.Resize(256)
    ten_crop = v2.TenCrop(224)
    to_float = v2.Compose([v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return lambda x: to_float(torch.stack(ten_crop(resize(x))))


def cv2_eval_ten_crop():
    mean = np.array(IMAGENET_MEAN, np.float32) * 255
    scale = 1 / (np.array(IMAGENET_STD, np.float32) * 255)

    def run(img):
        h, w = img.shape[:2]
        nh, nw = (256, int(256 * w / h)) if h <= w else (int(256 * h / w), 256)
        small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        # Normalise the resized image once, then cut the ten views from its CHW float copy.
        norm = small.astype(np.float32)
        norm -= mean
        norm *= scale
        norm = np.ascontiguousarray(norm.transpose(2, 0, 1))
        tops = (0, 0, nh - 224, nh - 224, (nh - 224) // 2)
        lefts = (0, nw - 224, 0, nw - 224, (nw - 224) // 2)
        crops = [norm[:, t:t + 224, l:l + 224] for t, l in zip(tops, lefts)]
        crops += [c[:, :, ::-1] for c in crops]
        return np.stack(crops)

    return run


def bench(fn, inputs, target_s):
    """Images/s of fn over inputs (cycled): warm-up, repeats sized to target_s, median of 5."""
    k = len(inputs)
    for i in range(min(k, 5)):
        fn(inputs[i])
    t0 = time.perf_counter()
    fn(inputs[0])
    one = time.perf_counter() - t0
    n = max(1, min(5000, int(target_s / max(one, 1e-7))))
    rates = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for j in range(n):
            fn(inputs[j % k])
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=os.environ.get("EXPANSE_PHOTOS", "/tmp/peers-work/photos500"),
                        help="folder of *.jpg photos (default $EXPANSE_PHOTOS or /tmp/peers-work/photos500)")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--quick", action="store_true", help="0.1 s repeats instead of 0.5 s")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    target_s = 0.1 if args.quick else 0.5

    photos = load_photos(args.photos)
    tensors = [torch.from_numpy(i).permute(2, 0, 1).contiguous() for i in photos]
    pils = [Image.fromarray(i) for i in photos]

    cases = [
        ("recipe resnet-imagenet", "albumentations Compose, float32 HWC", photos, albumentations_resnet(False)),
        ("recipe resnet-imagenet", "albumentations Compose + contiguous CHW copy", photos,
         albumentations_resnet(True)),
        ("recipe resnet-imagenet", "torchvision v2, uint8 tensor (antialias)", tensors, torchvision_resnet(False)),
        ("recipe resnet-imagenet", "torchvision v2, PIL (antialias)", pils, torchvision_resnet(True)),
        ("recipe eval-center", "torchvision v2, uint8 tensor (antialias)", tensors, torchvision_eval_center()),
        ("recipe eval-10crop", "torchvision v2 TenCrop, uint8 tensor (antialias)", tensors,
         torchvision_eval_ten_crop()),
        ("recipe eval-10crop", "cv2 INTER_AREA + numpy normalise and crops, float32 CHW", photos, cv2_eval_ten_crop()),
    ]

    records = []
    for op, impl, inputs, fn in cases:
        rate = bench(fn, inputs, target_s)
        records.append({"op": op, "impl": impl, "input": "500x375", "img_per_s": rate, "us_per_img": 1e6 / rate})
        print(f"{op} | {impl} | {rate:,.1f} img/s", file=sys.stderr, flush=True)

    print(f"## Recipe throughput, single thread, {len(photos)} photos (median of {REPEATS} repeats of ~{target_s}s)\n")
    print("| recipe | implementation | input | img/s | us/img |")
    print("|---|---|---|---|---|")
    for r in records:
        print(f"| {r['op']} | {r['impl']} | {r['input']} | {r['img_per_s']:,.1f} | {r['us_per_img']:,.1f} |")
    if args.json:
        versions = {"torch": torch.__version__, "albumentations": A.__version__, "cv2": cv2.__version__}
        Path(args.json).write_text(json.dumps({"versions": versions, "ops": records}, indent=2))


if __name__ == "__main__":
    main()
