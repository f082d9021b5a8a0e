#!/usr/bin/env bash
# Benchmarks shardify on real photographs against the PIL conversion peer (convert_pil.py) in
# one session, and prints a markdown table of images/s, their ratio and shardify's peak RSS.
#
# Usage: scripts/bench-shardify.sh [SET...]      SET: photos500 (default) and/or originals
#
# For each set, store mode (keep, reencode, raw) and thread count, shardify converts the set
# into a fresh folder once untimed and then REPEATS times. The rate is images read divided by
# the wall time of the whole process (start-up, listing, conversion, shard writing, manifest),
# and the median run is reported. Peak RSS is the largest of the timed runs (GNU time -v). Then
# convert_pil.py converts the same photos with PIL, and its JSON gives the peer's figures.
#
# Needs: a release shardify (cargo build --release -p expanse-tools --bin shardify), GNU time
# (Debian package `time`), and the peers set-up: a Python with Pillow (PYTHON) and the photos
# that make_photos.py writes to $PEERS_WORK (see the README in the peers folder).
# Environment (defaults in brackets):
#   SHARDIFY    shardify binary [target/release/shardify]
#   PEERS       folder of convert_pil.py [../shared/peers]
#   PEERS_WORK  photo folders: photos500/ and results/photoset.json [/tmp/peers-work]
#   PYTHON      Python with Pillow [/tmp/pyref/bin/python]
#   REPEATS     timed shardify runs per case [3]
#   THREADS     thread counts, space separated; PIL runs 1 and the largest [1 2]
#   MIN_IMAGES  each set is repeated through symlinks to at least this many photos, as
#               convert_pil.py repeats its list to 800 jobs [800]
#   SKIP_PIL=1, SKIP_SHARDIFY=1  leave out one side; KEEP_TMP=1 keeps the temporary folder
# The photos500 set takes a few minutes on 2 cores; originals (4 MPix photos) take longer.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- shardify's command line: `$SHARDIFY SRC OUT <mode flags> --threads N --summary-json F`.
# The summary JSON must contain images_read, images_written and seconds.
SHARDIFY=${SHARDIFY:-target/release/shardify}
THREADS_FLAG=--threads
SUMMARY_FLAG=--summary-json
MODES=(keep reencode raw)
declare -A MODE_FLAGS=(
    # Keep every JPEG's own bytes: 65535, the largest --max-side, exceeds every photo's sides.
    [keep]="--store keep --max-side 65535"
    [reencode]="--store reencode --max-side 512 --quality 90"
    [raw]="--store raw --max-side 256"
)

PEERS=$(cd "${PEERS:-../shared/peers}" && pwd)
PEERS_WORK=${PEERS_WORK:-/tmp/peers-work}
PYTHON=${PYTHON:-/tmp/pyref/bin/python}
REPEATS=${REPEATS:-3}
read -ra THREAD_COUNTS <<<"${THREADS:-1 2}"
MIN_IMAGES=${MIN_IMAGES:-800}
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(photos500)

fail() {
    echo "error: $*" >&2
    exit 1
}

[ "${SKIP_SHARDIFY:-0}" = 1 ] || [ -x "$SHARDIFY" ] ||
    fail "$SHARDIFY not found; build it with: cargo build --release -p expanse-tools --bin shardify"
/usr/bin/time -v true 2>/dev/null || fail "GNU time not found at /usr/bin/time (apt-get install time)"
"$PYTHON" -c 'import PIL' 2>/dev/null ||
    fail "$PYTHON cannot import PIL; see $PEERS/README.md for the set-up"
[ -f "$PEERS_WORK/results/photoset.json" ] ||
    fail "$PEERS_WORK/results/photoset.json not found; run make_photos.py from $PEERS first"
for set in "${SETS[@]}"; do
    case $set in
        photos500 | originals) ;;
        *) fail "unknown set '$set', expected photos500 or originals" ;;
    esac
done

tmp=$(mktemp -d /tmp/bench-shardify.XXXXXX)
if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "temporary files kept in $tmp" >&2
else
    trap 'rm -rf "$tmp"' EXIT
fi

# Writes the class trees $PEERS_WORK/originals and $PEERS_WORK/photos500-classes when missing:
# one folder per Debian package, containing symlinks to its photos under make_photos.py's names.
make_class_trees() {
    "$PYTHON" - "$PEERS_WORK" <<'EOF'
import json, os, sys
from pathlib import Path

work = Path(sys.argv[1])
packages = {
    "usr/share/wallpapers/": "plasma-workspace-wallpapers",
    "usr/share/backgrounds/mate/": "mate-backgrounds",
}
for image in json.loads((work / "results/photoset.json").read_text())["images"]:
    rel = os.path.relpath(image["src"], work / "root")
    package = next(name for prefix, name in packages.items() if rel.startswith(prefix))
    name = os.path.basename(image["dst"])
    for tree, target in (("originals", image["src"]), ("photos500-classes", image["dst"])):
        link = work / tree / package / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(target)
EOF
}

# Prints the class tree of a set, the folder shardify reads.
class_tree() {
    case $1 in
        photos500) echo "$PEERS_WORK/photos500-classes" ;;
        originals) echo "$PEERS_WORK/originals" ;;
    esac
}

# Builds $tmp/src-SET: the set's class tree repeated COPIES times through symlinks to the
# photos, named <copy>_<name>, and prints the number of photos in it.
repeat_tree() {
    local set=$1 copies=$2 source dest count=0
    source=$(class_tree "$set")
    dest=$tmp/src-$set
    for class_dir in "$source"/*/; do
        local class
        class=$(basename "$class_dir")
        mkdir -p "$dest/$class"
        for file in "$class_dir"*; do
            local target
            target=$(readlink -f "$file")
            for copy in $(seq -w 1 "$copies"); do
                ln -s "$target" "$dest/$class/${copy}_$(basename "$file")"
                count=$((count + 1))
            done
        done
    done
    echo "$count"
}

# Prints the value of a top-level field of a JSON file.
json_field() {
    "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# Prints the median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Runs shardify once on SRC and prints "images wall_seconds summary_seconds peak_rss_kib".
run_shardify() {
    local src=$1 mode=$2 threads=$3 expected=$4 out=$tmp/out mode_flags start end
    read -ra mode_flags <<<"${MODE_FLAGS[$mode]}"
    rm -rf "$out" "$tmp/summary.json"

    start=$(date +%s.%N)
    if ! /usr/bin/time -v -o "$tmp/time.txt" "$SHARDIFY" "$src" "$out" "${mode_flags[@]}" \
        "$THREADS_FLAG" "$threads" "$SUMMARY_FLAG" "$tmp/summary.json" >"$tmp/shardify.log" 2>&1; then
        tail -n 20 "$tmp/shardify.log" >&2
        fail "shardify failed on $src ($mode, $threads threads); command flags: ${mode_flags[*]}"
    fi
    end=$(date +%s.%N)

    local read written seconds rss
    read=$(json_field "$tmp/summary.json" images_read)
    written=$(json_field "$tmp/summary.json" images_written)
    seconds=$(json_field "$tmp/summary.json" seconds)
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tmp/time.txt")
    [ "$read" = "$expected" ] || fail "shardify read $read photos of $src, expected $expected"
    [ "$written" = "$expected" ] ||
        echo "warning: shardify wrote $written of $read photos ($mode); rerun with KEEP_TMP=1 and see $tmp/shardify.log" >&2
    echo "$read $(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }') $seconds $rss"
}

max_threads=$(printf '%s\n' "${THREAD_COUNTS[@]}" | sort -n | tail -n 1)
make_class_trees
rows=()
for set in "${SETS[@]}"; do
    files=$(find -L "$(class_tree "$set")" -type f | wc -l)
    [ "$files" -gt 0 ] || fail "no photos in $(class_tree "$set")"
    copies=$(((MIN_IMAGES + files - 1) / files))
    images=$(repeat_tree "$set" "$copies")
    echo "== $set: $files photos, repeated $copies times: $images" >&2

    declare -A expanse_rate=() inner_rate=() peak_rss=()
    if [ "${SKIP_SHARDIFY:-0}" != 1 ]; then
        for mode in "${MODES[@]}"; do
            for threads in "${THREAD_COUNTS[@]}"; do
                run_shardify "$tmp/src-$set" "$mode" "$threads" "$images" >/dev/null # warm-up
                walls=() inners=() rss_max=0
                for _ in $(seq "$REPEATS"); do
                    result=$(run_shardify "$tmp/src-$set" "$mode" "$threads" "$images")
                    read -r count wall inner rss <<<"$result"
                    walls+=("$(awk -v n="$count" -v s="$wall" 'BEGIN { print n / s }')")
                    inners+=("$(awk -v n="$count" -v s="$inner" 'BEGIN { print n / s }')")
                    if [ "$rss" -gt "$rss_max" ]; then rss_max=$rss; fi
                done
                key=$mode/$threads
                expanse_rate[$key]=$(median "${walls[@]}")
                inner_rate[$key]=$(median "${inners[@]}")
                peak_rss[$key]=$rss_max
                echo "shardify $set $key: ${expanse_rate[$key]} img/s (runs: ${walls[*]})" >&2
            done
        done
    fi

    declare -A pil_rate=()
    if [ "${SKIP_PIL:-0}" != 1 ]; then
        pil_dir=$PEERS_WORK/$set
        echo "convert_pil.py --dir $pil_dir --workers $max_threads" >&2
        PEERS_RESULTS=$tmp/pil-$set "$PYTHON" "$PEERS/convert_pil.py" --dir "$pil_dir" \
            --workers "$max_threads" >"$tmp/pil-$set.log" 2>&1 ||
            { cat "$tmp/pil-$set.log" >&2; fail "convert_pil.py failed on $pil_dir"; }
        cat "$tmp/pil-$set.log" >&2
        for mode in "${MODES[@]}"; do
            for workers in 1 "$max_threads"; do
                pil_rate[$mode/$workers]=$("$PYTHON" -c '
import json, sys
print(json.load(open(sys.argv[1]))[sys.argv[2]]["img_per_s"])' \
                    "$tmp/pil-$set/convert_pil.json" "$mode/$workers")
            done
        done
    fi

    for mode in "${MODES[@]}"; do
        for threads in "${THREAD_COUNTS[@]}"; do
            key=$mode/$threads
            rows+=("$(awk -v set="$set" -v mode="$mode" -v t="$threads" -v n="$images" \
                -v e="${expanse_rate[$key]:-}" -v i="${inner_rate[$key]:-}" \
                -v p="${pil_rate[$key]:-}" -v p1="${pil_rate[$mode/1]:-}" \
                -v rss="${peak_rss[$key]:-}" 'BEGIN {
                    dash = "-"
                    ratio = (e != "" && p != "") ? sprintf("%.2f", e / p) : dash
                    per_core = (e != "" && p1 != "") ? sprintf("%.2f", e / t / p1) : dash
                    printf "| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s |", set, mode, t, n,
                        (e != "") ? sprintf("%.1f", e) : dash, (i != "") ? sprintf("%.1f", i) : dash,
                        (p != "") ? sprintf("%.1f", p) : dash, ratio, per_core,
                        (rss != "") ? sprintf("%.0f", rss / 1024) : dash }')")
        done
    done
    unset expanse_rate inner_rate peak_rss pil_rate
done

cpu=$(lscpu | sed -n 's/^Model name: *//p')
echo
echo "shardify vs PIL, $(date -u +%Y-%m-%d), $(nproc) cores ($cpu), $REPEATS timed runs per case"
echo
echo "| set | mode | threads | photos | expanse img/s | expanse in-process img/s | PIL img/s | ratio | per-core ratio | expanse peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
cat <<EOF

- expanse img/s: photos read / wall time of the whole shardify process (start-up, listing,
  conversion, shard files written and synced, manifest), median of $REPEATS runs after a warm-up.
  In-process: the same photos / the \`seconds\` of shardify's summary JSON.
- PIL img/s: convert_pil.py with as many processes as threads, median of 3 passes after a
  warm-up, in memory only (nothing written), the process pool started outside the timing.
- ratio = expanse img/s / PIL img/s. Per-core ratio = (expanse img/s / threads) / PIL img/s
  with 1 process.
- keep mode: PIL only reads the file and parses the JPEG header to learn the size, with no
  decode, while shardify checks and decodes each photo for the colour statistics, so the keep
  rows compare different work.
- Each set is repeated through symlinks to at least $MIN_IMAGES photos, as convert_pil.py
  repeats its file list. Every repeat reads the same files, so both tools read from the page
  cache after the first pass.
EOF
