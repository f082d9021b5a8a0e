"""Read expanse shard sets (format version 2) with the Python standard library and numpy.

This module follows ``dataset/FORMAT.md`` and nothing else, so it doubles as a check that the
specification is enough to read what the Rust writer produces. It memory-maps each shard file
with ``numpy.memmap`` and checks the header and every index entry as the specification's "What
a reader must check" section lists. Per split it gives the record count, labels, metadata,
source paths, payload bytes and, for raw records, the pixels as an HWC ``uint8`` array.

Checksums use a table-driven CRC-32C in pure Python, which runs at a few MB/s: fine for
tests and small sets, slow for ImageNet-sized ones. The header checksum (header plus index)
is checked on open unless ``header_checksum=False``. Record checksums are checked only with
``verify=True`` or ``Shard.check_record``. The BLAKE3 content hash is not checked, because the
standard library has no BLAKE3; ``shardify verify`` checks it.

Example::

    from expanse_shards import ShardSet
    shards = ShardSet("data/mnist-shards")
    train = shards.split("train")
    image = train.image(0)            # numpy array, height x width x channels
    print(len(train), train.label(0), train.meta(0), train.source_path(0))
"""

import bisect
import json
import os
import re
from collections import namedtuple

import numpy as np

MAGIC = b"EXPSHARD"
VERSION = 2
HEADER_LEN = 72
INDEX_ENTRY_LEN = 40
NO_LABEL = 0xFFFFFFFF
FLAG_REENCODED = 1
KNOWN_FLAGS = FLAG_REENCODED
MIN_JPEG_LEN = 4
ENCODINGS = {0: "raw", 1: "jpeg"}
MANIFEST_FILE = "manifest.json"

HEADER_DTYPE = np.dtype(
    [
        ("magic", "S8"),
        ("version", "<u4"),
        ("header_len", "<u4"),
        ("record_count", "<u8"),
        ("height", "<u4"),
        ("width", "<u4"),
        ("channels", "<u4"),
        ("dtype", "u1"),
        ("encoding", "u1"),
        ("labels_per_record", "u1"),
        ("reserved_a", "u1"),
        ("index_offset", "<u8"),
        ("data_offset", "<u8"),
        ("data_length", "<u8"),
        ("header_crc32c", "<u4"),
        ("reserved_b", "<u4"),
    ]
)
ENTRY_DTYPE = np.dtype(
    [
        ("offset", "<u8"),
        ("length", "<u4"),
        ("crc32c", "<u4"),
        ("label", "<u4"),
        ("second_label", "<u4"),
        ("height", "<u4"),
        ("width", "<u4"),
        ("path_len", "<u2"),
        ("channels", "u1"),
        ("encoding", "u1"),
        ("flags", "<u4"),
    ]
)
assert HEADER_DTYPE.itemsize == HEADER_LEN
assert ENTRY_DTYPE.itemsize == INDEX_ENTRY_LEN

Schema = namedtuple("Schema", "layout height width channels dtype encoding")
RecordMeta = namedtuple("RecordMeta", "height width channels encoding flags")
Limits = namedtuple("Limits", "max_records max_record_bytes max_side max_channels")
DEFAULT_LIMITS = Limits(1 << 28, 1 << 30, 1 << 16, 64)


class FormatError(ValueError):
    """A shard file or manifest that breaks the format, or a record whose checksum fails."""

    def __init__(self, path, message):
        super().__init__(f"{path}: {message}")
        self.path = path


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """Return the CRC-32C (Castagnoli) of ``data``, continuing from the CRC ``crc`` of earlier
    bytes. ``crc32c(b"123456789") == 0xE3069283``."""
    table = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class Shard:
    """One shard file, memory-mapped read-only and checked on open."""

    def __init__(self, path, limits=DEFAULT_LIMITS, header_checksum=True):
        self.path = str(path)
        size = os.path.getsize(self.path)
        if size < HEADER_LEN:
            raise FormatError(self.path, f"file size {size} is smaller than the 72-byte header")
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        header = self._map[:HEADER_LEN].view(HEADER_DTYPE)[0]
        self.schema, self.labels_per_record = self._check_header(header, limits)
        count = self._check_index(header, limits)
        index_end = HEADER_LEN + count * INDEX_ENTRY_LEN
        self.entries = self._map[HEADER_LEN:index_end].view(ENTRY_DTYPE)
        self._check_entries(header, limits)
        self.header_crc32c = int(header["header_crc32c"])
        if header_checksum:
            zeroed = bytearray(self._map[:HEADER_LEN].tobytes())
            zeroed[64:68] = bytes(4)
            index = self._map[HEADER_LEN : HEADER_LEN + count * INDEX_ENTRY_LEN]
            computed = crc32c(index, crc32c(zeroed))
            if computed != self.header_crc32c:
                raise FormatError(
                    self.path,
                    f"header checksum mismatch: stored 0x{self.header_crc32c:08x}, "
                    f"computed 0x{computed:08x}",
                )

    def _check_header(self, header, limits):
        fail = lambda message: FormatError(self.path, message)  # noqa: E731
        if bytes(header["magic"]) != MAGIC:
            raise fail(f"invalid magic bytes {bytes(header['magic'])!r}; not a shard file")
        version = int(header["version"])
        if version == 1:
            raise fail("shard version 1 is no longer supported; re-run shardify to convert again")
        if version != VERSION:
            raise fail(f"unsupported shard version {version}")
        if int(header["header_len"]) != HEADER_LEN:
            raise fail(f"header length {int(header['header_len'])} is not 72")
        if header["reserved_a"] != 0 or header["reserved_b"] != 0:
            raise fail("reserved header fields at bytes 39 and 68 must be zero")
        if header["dtype"] != 0:
            raise fail(f"unknown dtype code {int(header['dtype'])}")
        encoding = ENCODINGS.get(int(header["encoding"]))
        if encoding is None:
            raise fail(f"unknown encoding code {int(header['encoding'])}")
        labels = int(header["labels_per_record"])
        if labels not in (1, 2):
            raise fail(f"labels per record is {labels}, expected 1 or 2")
        channels = int(header["channels"])
        if not 1 <= channels <= min(limits.max_channels, 255):
            raise fail(f"channels {channels} is outside 1..={min(limits.max_channels, 255)}")

        height, width = int(header["height"]), int(header["width"])
        if height == 0 and width == 0:
            return Schema("variable", 0, 0, channels, "u8", encoding), labels
        if height == 0 or width == 0:
            raise fail(f"height {height} and width {width}: both 0 or both at least 1")
        if encoding != "raw":
            raise fail(f"encoding {encoding} with a fixed shape; fixed layouts store raw records")
        if max(height, width) > limits.max_side:
            raise fail(f"shape {height}x{width} exceeds the side limit {limits.max_side}")
        if height * width * channels > limits.max_record_bytes:
            raise fail(f"record size {height * width * channels} exceeds the limit")
        return Schema("fixed", height, width, channels, "u8", encoding), labels

    def _check_index(self, header, limits):
        """Check the record count and the index and data offsets; return the record count."""
        size = len(self._map)
        count = int(header["record_count"])
        if count > limits.max_records:
            raise FormatError(self.path, f"record count {count} exceeds the limit")
        if int(header["index_offset"]) != HEADER_LEN:
            raise FormatError(self.path, f"index offset {int(header['index_offset'])} is not 72")
        index_end = HEADER_LEN + count * INDEX_ENTRY_LEN
        if index_end > size:
            raise FormatError(self.path, f"record count {count} needs an index beyond the file")
        data_offset = int(header["data_offset"])
        if data_offset != index_end:
            raise FormatError(self.path, f"data offset {data_offset} is not {index_end}")
        return count

    def _check_entries(self, header, limits):
        size = len(self._map)
        index_end = HEADER_LEN + len(self.entries) * INDEX_ENTRY_LEN

        # A vectorised pass finds the first entry that fails any check. That entry is then
        # checked alone, in the documented order, to name the check and the values.
        e = self.entries
        lengths = e["length"].astype(np.uint64)
        offsets = e["offset"]
        # Records are contiguous: record i starts where the records before it end.
        expected = np.uint64(index_end) + (np.cumsum(lengths, dtype=np.uint64) - lengths)
        bad = (offsets != expected) | (offsets > np.uint64(size))
        bad |= lengths > np.uint64(size) - np.minimum(offsets, np.uint64(size))
        bad |= self._entry_faults(e, lengths, limits)
        if bad.any():
            i = int(np.argmax(bad))
            raise FormatError(self.path, self._describe_entry(i, int(expected[i]), size, limits))

        data_end = index_end + int(lengths.sum())
        if data_end != int(header["data_offset"]) + int(header["data_length"]):
            raise FormatError(self.path, f"data length {int(header['data_length'])} does not match")
        if data_end != size:
            raise FormatError(self.path, f"file size {size} is not the data end {data_end}")

    def _entry_faults(self, e, lengths, limits):
        s = self.schema
        path_len = e["path_len"].astype(np.uint64)
        payload = lengths - np.minimum(path_len, lengths)
        heights, widths = e["height"].astype(np.uint64), e["width"].astype(np.uint64)
        bad = (lengths > np.uint64(limits.max_record_bytes)) | (path_len > lengths)
        bad |= (e["channels"] != s.channels) | (e["encoding"] != _encoding_code(s.encoding))
        bad |= (e["flags"] & ~np.uint32(KNOWN_FLAGS)) != 0
        if s.layout == "fixed":
            bad |= (heights != s.height) | (widths != s.width)
        else:
            bad |= (heights == 0) | (heights > limits.max_side)
            bad |= (widths == 0) | (widths > limits.max_side)
        if s.encoding == "raw":
            bad |= payload != heights * widths * np.uint64(s.channels)
        else:
            bad |= payload < MIN_JPEG_LEN
        bad |= e["label"] == NO_LABEL
        if self.labels_per_record == 1:
            bad |= e["second_label"] != NO_LABEL
        else:
            bad |= e["second_label"] == NO_LABEL
        return bad

    def _describe_entry(self, i, expected_offset, size, limits):
        entry = {name: int(self.entries[i][name]) for name in ENTRY_DTYPE.names}
        s = self.schema
        place = f"record {i} at byte {entry['offset']}"
        length, path_len = entry["length"], entry["path_len"]
        payload = length - path_len
        shape = f"{entry['height']}x{entry['width']}x{entry['channels']}"
        checks = [
            (entry["offset"] + length > size, f"length {length} exceeds file size {size}"),
            (entry["offset"] != expected_offset, f"expected the record at byte {expected_offset}"),
            (length > limits.max_record_bytes, f"length {length} exceeds the limit"),
            (path_len > length, f"path length {path_len} exceeds the record length {length}"),
            (entry["channels"] != s.channels, f"channels {entry['channels']} != {s.channels}"),
            (entry["encoding"] != _encoding_code(s.encoding), f"encoding {entry['encoding']}"),
            (entry["flags"] & ~KNOWN_FLAGS, f"flags 0x{entry['flags']:08x} set undefined bits"),
            (
                s.layout == "fixed" and (entry["height"], entry["width"]) != (s.height, s.width),
                f"shape {shape} does not match the fixed {s.height}x{s.width}",
            ),
            (
                s.layout == "variable"
                and not 1 <= min(entry["height"], entry["width"])
                <= max(entry["height"], entry["width"])
                <= limits.max_side,
                f"shape {shape} is outside 1..={limits.max_side}",
            ),
            (
                s.encoding == "raw"
                and payload != entry["height"] * entry["width"] * entry["channels"],
                f"payload length {payload} does not match {shape}",
            ),
            (s.encoding == "jpeg" and payload < MIN_JPEG_LEN, f"payload length {payload} < 4"),
            (entry["label"] == NO_LABEL, f"label {NO_LABEL} is reserved"),
            (
                (entry["second_label"] == NO_LABEL) != (self.labels_per_record == 1),
                f"second label {entry['second_label']} with {self.labels_per_record} labels",
            ),
        ]
        failures = (f"{place}: {message}" for failed, message in checks if failed)
        return next(failures, f"{place}: entry fails a check")

    def __len__(self):
        return len(self.entries)

    def label(self, i):
        return int(self.entries[i]["label"])

    def coarse_label(self, i):
        """Return the coarse label of record ``i``, or None in a one-label shard."""
        return int(self.entries[i]["second_label"]) if self.labels_per_record == 2 else None

    def meta(self, i):
        e = self.entries[i]
        height, width, channels = int(e["height"]), int(e["width"]), int(e["channels"])
        return RecordMeta(height, width, channels, self.schema.encoding, int(e["flags"]))

    def _record(self, i):
        e = self.entries[i]
        start = int(e["offset"])
        return self._map[start : start + int(e["length"])], int(e["path_len"])

    def source_path(self, i):
        """Return the source path of record ``i`` ('' when the source had none)."""
        record, path_len = self._record(i)
        try:
            return record[:path_len].tobytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise FormatError(self.path, f"record {i}: source path is not UTF-8: {error}") from None

    def payload(self, i):
        """Return the payload of record ``i`` as bytes: pixels or a JPEG file."""
        record, path_len = self._record(i)
        return record[path_len:].tobytes()

    def image(self, i):
        """Return the pixels of raw record ``i`` as a read-only height x width x channels array."""
        if self.schema.encoding != "raw":
            encoding = self.schema.encoding
            raise ValueError(f"{self.path}: record {i} is {encoding}; decode payload(i)")
        record, path_len = self._record(i)
        meta = self.meta(i)
        return record[path_len:].reshape(meta.height, meta.width, meta.channels)

    def check_record(self, i):
        """Check the checksum of record ``i``, its path text and a JPEG payload's FF D8 start."""
        record, path_len = self._record(i)
        entry = self._map[HEADER_LEN + i * INDEX_ENTRY_LEN : HEADER_LEN + (i + 1) * INDEX_ENTRY_LEN]
        computed = crc32c(entry[16:40], crc32c(record))
        stored = int(self.entries[i]["crc32c"])
        place = f"record {i} at byte {int(self.entries[i]['offset'])}"
        if computed != stored:
            raise FormatError(
                self.path,
                f"{place}: checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}",
            )
        self.source_path(i)
        if self.schema.encoding == "jpeg" and bytes(record[path_len : path_len + 2]) != b"\xff\xd8":
            raise FormatError(self.path, f"{place}: JPEG payload does not start with FF D8")


def _encoding_code(name):
    return next(code for code, known in ENCODINGS.items() if known == name)


class Split:
    """The shards of one split, presented as records ``0..len(split)``."""

    def __init__(self, entry, shards, schema):
        self.name = entry["name"]
        self.stats = entry
        self.schema = schema
        self.shards = shards
        self._starts = []
        total = 0
        for shard in shards:
            self._starts.append(total)
            total += len(shard)
        self._len = total

    def __len__(self):
        return self._len

    def _locate(self, i):
        if not 0 <= i < self._len:
            raise IndexError(f"split {self.name}: record index {i} out of range 0..{self._len}")
        shard = bisect.bisect_right(self._starts, i) - 1
        return self.shards[shard], i - self._starts[shard]

    def label(self, i):
        shard, local = self._locate(i)
        return shard.label(local)

    def coarse_label(self, i):
        shard, local = self._locate(i)
        return shard.coarse_label(local)

    def meta(self, i):
        shard, local = self._locate(i)
        return shard.meta(local)

    def source_path(self, i):
        shard, local = self._locate(i)
        return shard.source_path(local)

    def payload(self, i):
        shard, local = self._locate(i)
        return shard.payload(local)

    def image(self, i):
        shard, local = self._locate(i)
        return shard.image(local)

    def check_records(self):
        """Check every record as ``Shard.check_record`` does, in order."""
        for shard in self.shards:
            for local in range(len(shard)):
                shard.check_record(local)


class ShardSet:
    """A shard set folder: ``manifest.json`` and every shard it lists, checked against it."""

    def __init__(self, folder, verify=False, limits=DEFAULT_LIMITS, header_checksum=True):
        self.folder = str(folder)
        path = os.path.join(self.folder, MANIFEST_FILE)
        with open(path, "rb") as file:
            self.manifest = json.loads(file.read())
        self.schema = _check_manifest(path, self.manifest)
        self.splits = {}
        for entry in self.manifest["splits"]:
            shards = [
                self._open_shard(path, entry, number, shard_entry, limits, header_checksum)
                for number, shard_entry in enumerate(entry["shards"])
            ]
            split = Split(entry, shards, self.schema)
            if len(split) != entry["records"]:
                raise FormatError(path, f"split {split.name} lists {entry['records']} records, "
                                  f"its shards hold {len(split)}")
            if verify:
                split.check_records()
            self.splits[split.name] = split

    def split(self, name):
        return self.splits[name]

    def _open_shard(self, manifest_path, split, number, entry, limits, header_checksum):
        expected = f"{split['name']}-{number:05d}.shard"
        if entry["file"] != expected:
            message = f"shard {number} is {entry['file']!r}, expected {expected!r}"
            raise FormatError(manifest_path, message)
        shard = Shard(os.path.join(self.folder, expected), limits, header_checksum)
        labels_per_record = 2 if self.manifest.get("coarse_classes") is not None else 1
        found = (len(shard), os.path.getsize(shard.path), shard.header_crc32c, shard.schema,
                 shard.labels_per_record)
        listed = (entry["records"], entry["bytes"], entry["header_crc32c"], self.schema,
                  labels_per_record)
        if found != listed:
            raise FormatError(shard.path, f"file has {found}, manifest lists {listed}")

        classes = len(self.manifest["classes"])
        if len(shard) and int(shard.entries["label"].max()) >= classes:
            raise FormatError(shard.path, f"a label is outside the manifest's {classes} classes")
        if labels_per_record == 2 and len(shard):
            coarse = len(self.manifest["coarse_classes"])
            if int(shard.entries["second_label"].max()) >= coarse:
                raise FormatError(shard.path, f"a coarse label is outside {coarse} coarse classes")
        return shard


def _check_manifest(path, manifest):
    """Check the manifest fields FORMAT.md lists and return its sample schema."""
    fail = lambda message: FormatError(path, message)  # noqa: E731
    if manifest.get("format") != "expanse-shards":
        raise fail(f"format {manifest.get('format')!r}, expected 'expanse-shards'")
    if manifest.get("version") == 1:
        raise fail("manifest version 1 is no longer supported; re-run shardify to convert again")
    if manifest.get("version") != VERSION:
        raise fail(f"unsupported manifest version {manifest.get('version')}")
    sample = manifest["sample"]
    schema = Schema(sample["layout"], sample["height"], sample["width"], sample["channels"],
                    sample["dtype"], sample["encoding"])
    fixed_ok = schema.layout == "fixed" and schema.height >= 1 and schema.width >= 1
    variable_ok = schema.layout == "variable" and schema.height == 0 and schema.width == 0
    if not (fixed_ok or variable_ok):
        raise fail(f"sample {sample} has a shape that does not fit its layout")
    if "conversion" in manifest and not isinstance(manifest["conversion"], dict):
        raise fail("'conversion' is not an object")

    names = set()
    for split in manifest["splits"]:
        name = split["name"]
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) or name in names:
            raise fail(f"split name {name!r} is invalid or repeated")
        names.add(name)
        stats_lengths = {len(split["channel_mean"]), len(split["channel_std"])}
        if stats_lengths != {schema.channels}:
            raise fail(f"split {name}: channel statistics do not match {schema.channels} channels")
        if len(split["class_counts"]) != len(manifest["classes"]):
            raise fail(f"split {name}: class counts do not match the classes")
        _check_rgb(fail, name, split, schema.channels)
    return schema


def _check_rgb(fail, name, split, channels):
    shapes = {"rgb_covariance": (3, 3), "rgb_eigenvalues": (3,), "rgb_eigenvectors": (3, 3)}
    for field, shape in shapes.items():
        if field not in split:
            continue
        if channels != 3:
            raise fail(f"split {name}: {field} for {channels} channels")
        try:
            found = np.asarray(split[field], dtype=np.float64).shape
        except (TypeError, ValueError):
            found = None
        if found != shape:
            raise fail(f"split {name}: {field} does not have shape {shape}")
    values = split.get("rgb_eigenvalues")
    if values is not None and not values[0] >= values[1] >= values[2]:
        raise fail(f"split {name}: rgb_eigenvalues {values} are not in descending order")
