#!/usr/bin/env bash
# Installs the lean CPU libtorch 2.11.0 that tch 0.24.0 links against, cut from PyPI's torch
# wheel (libtorch_cuda.so left out), into a cache folder outside the repository.
#
# Usage: scripts/setup-libtorch.sh [DIR]     (default: $EXPANSE_CACHE/libtorch-2.11.0-cpu,
#                                             EXPANSE_CACHE defaulting to ~/.cache/expanse)
# Prints the libtorch folder on its last line; set LIBTORCH to it.
set -euo pipefail

cache=${EXPANSE_CACHE:-$HOME/.cache/expanse}
dest=${1:-$cache/libtorch-2.11.0-cpu}
if [ -f "$dest/.complete" ]; then
    echo "$dest"
    exit 0
fi

wheels=$cache/wheels
mkdir -p "$wheels"
echo "downloading torch 2.11.0 and CUDA runtime wheels into $wheels (about 545 MB)" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_25_x86_64 \
    -d "$wheels" torch==2.11.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2

# Unpack into a temporary sibling and rename it into place, so that an interrupted run never
# leaves a folder that looks complete.
work=$(mktemp -d "$(dirname "$dest")/.libtorch-XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 - "$wheels" "$work" <<'PY'
import pathlib, shutil, sys, zipfile

wheels, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
lib = out / "lib"
lib.mkdir(parents=True)
keep = ("libtorch.so", "libtorch_cpu.so", "libc10.so", "libshm.so", "libtorch_global_deps.so")

torch = next(wheels.glob("torch-2.11.0-*.whl"))
with zipfile.ZipFile(torch) as z:
    for name in z.namelist():
        if name.startswith(("torch/include/", "torch/share/")):
            z.extract(name, out)
            continue
        base = name.rsplit("/", 1)[-1]
        if name.startswith("torch/lib/") and (base in keep or base.startswith("libgomp")):
            with z.open(name) as src, open(lib / base, "wb") as dst:
                shutil.copyfileobj(src, dst)
for prefix in ("nvidia_cuda_runtime-13.0.96", "nvidia_cuda_cupti-13.0.85"):
    wheel = next(wheels.glob(prefix + "-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            base = name.rsplit("/", 1)[-1]
            if base.startswith(("libcudart.so.13", "libcupti.so.13")):
                with z.open(name) as src, open(lib / base, "wb") as dst:
                    shutil.copyfileobj(src, dst)
shutil.move(str(out / "torch" / "include"), str(out / "include"))
shutil.move(str(out / "torch" / "share"), str(out / "share"))
(out / "torch").rmdir()
PY
touch "$work/.complete"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work" "$dest"
trap - EXIT
echo "$dest"
