"""Check the Python shard reader against shard sets that the Rust `shardify` binary wrote.

    python3 test_expanse_shards.py write-idx DIR [--seed N] [--train-count N]
        Write a small MNIST-style IDX source to DIR: N (default 7) train and 4 test images of
        5x6 pixels with labels 0..2, and a classes.txt. The train images are gzipped, the
        other files plain.

    python3 test_expanse_shards.py check SET --shardify BIN [--idx DIR] [--photos ROOT]
        Open SET with expanse_shards (every record checksum verified), compare it with
        `BIN inspect SET --json`, check every record's metadata, and compare records with the
        source: IDX pixels and labels (--idx), or for a photo set the source files (--photos),
        where a JPEG record stored without re-encoding must equal its source file byte for
        byte. Then damage copies of a shard and check that the Python reader rejects them.

Exits with status 1 and a message naming the failed check on the first mismatch.
"""

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import expanse_shards as es  # noqa: E402

IDX_ROWS, IDX_COLUMNS = 5, 6
IDX_CLASSES = ["circle", "square", "triangle"]


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def write_idx(folder, seed, train_count):
    """Write the IDX source described in the module docstring, pixels from a seeded generator."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for prefix, count, gzip_images in [("train", train_count, True), ("t10k", 4, False)]:
        images = rng.integers(0, 256, size=(count, IDX_ROWS, IDX_COLUMNS), dtype=np.uint8)
        labels = rng.integers(0, len(IDX_CLASSES), size=count, dtype=np.uint8)
        image_bytes = idx_bytes(0x0803, images.shape, images)
        label_bytes = idx_bytes(0x0801, labels.shape, labels)
        image_name = f"{prefix}-images-idx3-ubyte" + (".gz" if gzip_images else "")
        with open(os.path.join(folder, image_name), "wb") as file:
            file.write(gzip.compress(image_bytes, mtime=0) if gzip_images else image_bytes)
        with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as file:
            file.write(label_bytes)
    with open(os.path.join(folder, "classes.txt"), "w") as file:
        file.write("\n".join(IDX_CLASSES) + "\n")


def idx_bytes(magic, shape, array):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + np.ascontiguousarray(array).tobytes()


def read_idx(folder, prefix, part):
    """Read `<prefix>-<part>-idx?-ubyte[.gz]` from folder as a numpy array."""
    dimensions = 3 if part == "images" else 1
    path = os.path.join(folder, f"{prefix}-{part}-idx{dimensions}-ubyte")
    if not os.path.exists(path):
        path += ".gz"
    with open(path, "rb") as file:
        data = file.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    shape = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(dimensions)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def inspect_json(shardify, folder):
    run = subprocess.run(
        [shardify, "inspect", folder, "--json"], capture_output=True, text=True, check=False
    )
    expect(run.returncode == 0, f"shardify inspect failed ({run.returncode}): {run.stderr}")
    return json.loads(run.stdout)


def channel_stats(split, channels):
    """Mean and population std per channel from exact integer sums, as FORMAT.md defines."""
    sums = [0] * channels
    squares = [0] * channels
    pixels = 0
    for i in range(len(split)):
        image = split.image(i).reshape(-1, channels).astype(np.int64)
        sums = [s + int(image[:, c].sum()) for c, s in enumerate(sums)]
        squares = [q + int((image[:, c] ** 2).sum()) for c, q in enumerate(squares)]
        pixels += image.shape[0]
    mean = [s / pixels for s in sums]
    std = [math.sqrt((pixels * q - s * s) / (pixels * pixels)) for s, q in zip(sums, squares)]
    return mean, std


def close(a, b):
    return all(math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9) for x, y in zip(a, b))


def check_against_inspect(shards, inspect):
    manifest = shards.manifest
    expect(inspect["sample"] == manifest["sample"], f"sample {inspect['sample']} != manifest")
    expect(tuple(shards.schema) == tuple(manifest["sample"][k] for k in es.Schema._fields),
           f"Python schema {shards.schema} != {manifest['sample']}")
    expect(inspect["classes"] == manifest["classes"], "classes differ")
    expect(inspect["coarse_classes"] == manifest.get("coarse_classes"), "coarse classes differ")
    expect(inspect.get("conversion") == manifest.get("conversion"), "conversion differs")
    names = [split["name"] for split in inspect["splits"]]
    expect(names == list(shards.splits), f"splits {names} != {list(shards.splits)}")

    for listed in inspect["splits"]:
        split = shards.split(listed["name"])
        where = f"split {split.name}"
        expect(listed["records"] == len(split), f"{where}: {listed['records']} != {len(split)}")
        expect(listed["shards"] == len(split.shards), f"{where}: shard count differs")
        size = sum(os.path.getsize(shard.path) for shard in split.shards)
        expect(listed["bytes"] == size, f"{where}: {listed['bytes']} bytes, files have {size}")
        labels = np.array([split.label(i) for i in range(len(split))], dtype=np.int64)
        counts = np.bincount(labels, minlength=len(manifest["classes"])).tolist()
        expect(listed["class_counts"] == counts, f"{where}: class counts {counts} differ")
        if manifest.get("coarse_classes") is not None:
            coarse = np.array([split.coarse_label(i) for i in range(len(split))])
            counts = np.bincount(coarse, minlength=len(manifest["coarse_classes"])).tolist()
            expect(listed["coarse_class_counts"] == counts, f"{where}: coarse counts differ")
        for field in ["rgb_covariance", "rgb_eigenvalues", "rgb_eigenvectors", "skipped",
                      "source_bytes", "channel_mean", "channel_std", "content_hash"]:
            expect(listed.get(field) == split.stats.get(field), f"{where}: {field} differs")
        if shards.schema.layout == "fixed":
            mean, std = channel_stats(split, shards.schema.channels)
            expect(close(mean, listed["channel_mean"]), f"{where}: mean {mean} differs")
            expect(close(std, listed["channel_std"]), f"{where}: std {std} differs")


def check_record_meta(shards, photos):
    schema = shards.schema
    for split in shards.splits.values():
        for i in range(len(split)):
            meta, path = split.meta(i), split.source_path(i)
            where = f"split {split.name} record {i} ({path!r})"
            expect(meta.channels == schema.channels, f"{where}: channels {meta.channels}")
            expect(meta.encoding == schema.encoding, f"{where}: encoding {meta.encoding}")
            expect(meta.flags & ~es.KNOWN_FLAGS == 0, f"{where}: flags {meta.flags}")
            payload = split.payload(i)
            if schema.layout == "fixed":
                expect((meta.height, meta.width) == (schema.height, schema.width), where)
            if schema.encoding == "raw":
                expect(split.image(i).shape == (meta.height, meta.width, meta.channels), where)
            else:
                expect(payload[:2] == b"\xff\xd8", f"{where}: payload does not start FF D8")
            if photos is not None:
                check_photo_source(photos, path, meta, payload, where)


def check_photo_source(root, path, meta, payload, where):
    expect(path != "" and not path.startswith("/"), f"{where}: path is not relative")
    source = os.path.join(root, *path.split("/"))
    expect(os.path.isfile(source), f"{where}: source file {source} not found")
    if meta.encoding == "jpeg" and not meta.flags & es.FLAG_REENCODED:
        with open(source, "rb") as file:
            expect(file.read() == payload, f"{where}: kept JPEG differs from {source}")


def check_idx_source(shards, folder):
    for name, prefix in [("train", "train"), ("test", "t10k")]:
        split = shards.split(name)
        images = read_idx(folder, prefix, "images")
        labels = read_idx(folder, prefix, "labels")
        expect(len(split) == len(images), f"{name}: {len(split)} records, IDX has {len(images)}")
        for i in range(len(split)):
            expect(np.array_equal(split.image(i)[:, :, 0], images[i]), f"{name} {i}: pixels differ")
            expect(split.label(i) == labels[i], f"{name} {i}: label differs")
            expect(split.source_path(i) == "", f"{name} {i}: IDX records have no path")


def check_damage_is_found(shards):
    """Damage copies of the first shard and check that the Python reader rejects each."""
    shard = next(iter(shards.splits.values())).shards[0]
    with open(shard.path, "rb") as file:
        original = file.read()
    last = len(shard) - 1
    last_offset = int(shard.entries[last]["offset"])
    height_at = es.HEADER_LEN + last * es.INDEX_ENTRY_LEN + 24
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "damaged-00000.shard")

        def write(data):
            with open(path, "wb") as file:
                file.write(data)

        flipped = bytearray(original)
        flipped[-1] ^= 0x01
        write(flipped)
        try:
            es.Shard(path).check_record(last)
            raise CheckFailed("a flipped payload byte passed the record checksum")
        except es.FormatError as error:
            place = f"record {last} at byte {last_offset}: checksum mismatch"
            expect(place in str(error), str(error))

        write(original[:-1])
        try:
            es.Shard(path)
            raise CheckFailed("a truncated shard was accepted")
        except es.FormatError as error:
            expect(f"record {last} at byte {last_offset}" in str(error), str(error))

        resized = bytearray(original)
        resized[height_at] ^= 0x01
        write(resized)
        try:
            es.Shard(path, header_checksum=False)
            if shards.schema.encoding == "raw":
                raise CheckFailed("a raw record with a wrong height passed the structure checks")
        except es.FormatError as error:
            expect(f"record {last}" in str(error), str(error))
        try:
            es.Shard(path)
            raise CheckFailed("a changed index entry passed the header checksum")
        except es.FormatError as error:
            expect("header checksum mismatch" in str(error) or f"record {last}" in str(error),
                   str(error))


def check(args):
    expect(es.crc32c(b"123456789") == 0xE3069283, "crc32c check value")
    inspect = inspect_json(args.shardify, args.set)
    shards = es.ShardSet(args.set, verify=True)
    records = sum(len(split) for split in shards.splits.values())
    print(f"python reader: {args.set}: {records} records, every record checksum verified")

    check_against_inspect(shards, inspect)
    print("python reader: counts, labels, schema and statistics match shardify inspect")
    check_record_meta(shards, args.photos)
    print("python reader: record metadata checked")
    if args.idx:
        check_idx_source(shards, args.idx)
        print(f"python reader: pixels and labels match the IDX source {args.idx}")
    if args.photos:
        print(f"python reader: source paths found under {args.photos}")
    check_damage_is_found(shards)
    print("python reader: damaged copies rejected")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write-idx", help="write a small IDX source")
    write.add_argument("dir")
    write.add_argument("--seed", type=int, default=7)
    write.add_argument("--train-count", type=int, default=7)
    test = commands.add_parser("check", help="check a shard set against shardify inspect")
    test.add_argument("set")
    test.add_argument("--shardify", required=True, help="path of the shardify binary")
    test.add_argument("--idx", help="the IDX source folder the set was converted from")
    test.add_argument("--photos", help="the photo folder the set was converted from")
    args = parser.parse_args()

    if args.command == "write-idx":
        write_idx(args.dir, args.seed, args.train_count)
        return 0
    try:
        check(args)
    except (CheckFailed, es.FormatError) as error:
        print(f"python reader check failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
