#!/usr/bin/env bash
# Checks the Python shard reader (python/expanse_shards.py) against sets the Rust shardify
# binary writes: an IDX set and two small photo sets (kept JPEG and raw). Builds shardify (debug), writes a small IDX source with numpy, converts it
# with train shards of 1 MiB so that the train split spans two files, runs `shardify verify`,
# then python/test_expanse_shards.py: counts, labels and schema against `shardify inspect
# --json`, every record checksum, pixels against the IDX files, damaged copies rejected.
# Exits non-zero on any failure. Honours CARGO_TARGET_DIR, and PYTHON for the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
# Importing python/expanse_shards.py would otherwise leave a __pycache__ folder in the tree.
export PYTHONDONTWRITEBYTECODE=1
source scripts/env.sh
apt_install python3 python3-numpy

python=${PYTHON:-}
if [ -z "$python" ]; then
    # A python3 earlier on PATH (pyenv, a virtual environment) may lack numpy.
    for candidate in python3 /usr/bin/python3; do
        if "$candidate" -c "import numpy" 2>/dev/null; then
            python=$candidate
            break
        fi
    done
fi
if [ -z "$python" ]; then
    echo "error: no python3 with numpy found; set PYTHON to one" >&2
    exit 1
fi

cargo build --locked -p expanse-tools --bin shardify
shardify="${CARGO_TARGET_DIR:-target}/debug/shardify"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 20000 train records of 5x6 pixels take 1.4 MB with their index entries: two 1 MiB shards.
"$python" python/test_expanse_shards.py write-idx "$work/idx" --train-count 20000
"$shardify" "$work/idx" "$work/idx-shards" --shard-size 1
"$shardify" verify "$work/idx-shards"
"$python" python/test_expanse_shards.py check "$work/idx-shards" --shardify "$shardify" \
    --idx "$work/idx"

# A photo set in both storage modes: class folders of the committed test photos, one of them a
# CMYK JPEG that gets re-encoded, the other kept byte for byte (checked against its file).
mkdir -p "$work/photos/cmyk" "$work/photos/rgb"
cp dataset/testdata/images/cmyk_pil.jpg "$work/photos/cmyk/0.jpg"
cp dataset/testdata/images/photo_pil.jpg "$work/photos/rgb/0.jpg"
cp dataset/testdata/images/photo_pil.jpg "$work/photos/rgb/1.JPEG"
for store in keep raw; do
    "$shardify" "$work/photos" "$work/photos-$store" --store "$store" --max-side 40
    "$shardify" verify "$work/photos-$store"
    "$python" python/test_expanse_shards.py check "$work/photos-$store" --shardify "$shardify" \
        --photos "$work/photos"
done

echo "python reader: all checks passed"
