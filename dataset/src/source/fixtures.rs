//! Test fixtures written to the official byte layouts: IDX files, CIFAR binary records and
//! CIFAR python pickles, with a pixel pattern in which layout mistakes show.

use std::io::Write;

/// Returns the pixel value of `channel` at (`row`, `column`) of image `record`.
///
/// The coefficients differ per coordinate, so reading planar data as interleaved, swapping rows
/// and columns, or reordering channels produces other values (the tests assert this).
pub(super) fn pixel_value(record: usize, channel: usize, row: usize, column: usize) -> u8 {
    ((channel * 97 + row * 31 + column * 7 + record * 13) % 256) as u8
}

/// Returns image `record` as CIFAR stores it: 1024 red bytes row by row, then green, then blue.
pub(super) fn planar_image(record: usize) -> Vec<u8> {
    let mut planar = Vec::with_capacity(3072);
    for channel in 0..3 {
        for row in 0..32 {
            for column in 0..32 {
                planar.push(pixel_value(record, channel, row, column));
            }
        }
    }
    planar
}

/// Returns image `record` in HWC order, computed from the pattern, not from [`planar_image`].
pub(super) fn hwc_image(record: usize) -> Vec<u8> {
    let mut hwc = Vec::with_capacity(3072);
    for row in 0..32 {
        for column in 0..32 {
            for channel in 0..3 {
                hwc.push(pixel_value(record, channel, row, column));
            }
        }
    }
    hwc
}

/// Returns an IDX file: the big-endian magic and sizes, then `data`.
pub(super) fn idx_file(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for size in dims {
        bytes.extend_from_slice(&size.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// Compresses `bytes` as one gzip member.
pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Returns CIFAR-10 binary records: per image its label byte, then the planar pixels.
pub(super) fn cifar10_records(images: &[(u8, usize)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &(label, record) in images {
        bytes.push(label);
        bytes.extend(planar_image(record));
    }
    bytes
}

/// Returns CIFAR-100 binary records: coarse label byte, fine label byte, planar pixels.
pub(super) fn cifar100_records(images: &[(u8, u8, usize)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &(coarse, fine, record) in images {
        bytes.push(coarse);
        bytes.push(fine);
        bytes.extend(planar_image(record));
    }
    bytes
}

/// How a pickle is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PickleStyle {
    /// Modeled on Python 2 `cPickle.dump(d, f, 2)` with numpy 1.x: byte-string keys, BINPUT
    /// after each object, GLOBAL, `numpy.core.multiarray`, data as BINSTRING.
    Python2,
    /// Modeled on Python 3 `pickle.dump(d, f, protocol=4)` with numpy 2.x: text keys, FRAME,
    /// MEMOIZE, STACK_GLOBAL, `numpy._core.multiarray`, data as BINBYTES, dtype flags as bools.
    Python3,
}

/// A value of a fixture dict.
pub(super) enum Item {
    /// A uint8 array of the given shape, C order.
    Array(Vec<usize>, Vec<u8>),
    Ints(Vec<i64>),
    Texts(Vec<String>),
    Text(String),
    Int(i64),
}

/// Returns a pickle of a dict with `entries` in the given style.
pub(super) fn pickle_dict(style: PickleStyle, entries: &[(&str, Item)]) -> Vec<u8> {
    let mut writer = PickleWriter { style, bytes: Vec::new(), memo_count: 0 };
    writer.bytes.extend_from_slice(match style {
        PickleStyle::Python2 => &[0x80, 2],
        // The reader only checks that a FRAME length fits in the input, so 0 does.
        PickleStyle::Python3 => &[0x80, 4, 0x95, 0, 0, 0, 0, 0, 0, 0, 0],
    });

    writer.bytes.push(b'}');
    writer.memoize();
    writer.bytes.push(b'(');
    for (key, item) in entries {
        writer.key(key);
        writer.item(item);
    }
    writer.bytes.push(b'u');
    writer.bytes.push(b'.');
    writer.bytes
}

struct PickleWriter {
    style: PickleStyle,
    bytes: Vec<u8>,
    memo_count: u32,
}

impl PickleWriter {
    fn memoize(&mut self) {
        match self.style {
            PickleStyle::Python2 => {
                self.memo_count += 1;
                if self.memo_count < 256 {
                    self.bytes.extend_from_slice(&[b'q', self.memo_count as u8]);
                } else {
                    self.bytes.push(b'r');
                    self.bytes.extend_from_slice(&self.memo_count.to_le_bytes());
                }
            }
            PickleStyle::Python3 => self.bytes.push(0x94),
        }
    }

    /// Writes a dict key as a Python 2 `str` (bytes) or a Python 3 `str` (text).
    fn key(&mut self, key: &str) {
        match self.style {
            PickleStyle::Python2 => self.byte_string(key.as_bytes()),
            PickleStyle::Python3 => self.text(key),
        }
    }

    /// Writes bytes as Python 2 writes `str` (SHORT_BINSTRING, BINSTRING) or Python 3 writes
    /// `bytes`
    /// (SHORT_BINBYTES, BINBYTES).
    fn byte_string(&mut self, value: &[u8]) {
        let (short, long) = match self.style {
            PickleStyle::Python2 => (b'U', b'T'),
            PickleStyle::Python3 => (b'C', b'B'),
        };
        if value.len() < 256 {
            self.bytes.extend_from_slice(&[short, value.len() as u8]);
        } else {
            self.bytes.push(long);
            self.bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        self.bytes.extend_from_slice(value);
        self.memoize();
    }

    fn text(&mut self, value: &str) {
        match self.style {
            PickleStyle::Python2 => self.byte_string(value.as_bytes()),
            PickleStyle::Python3 => {
                self.bytes.extend_from_slice(&[0x8c, value.len() as u8]);
                self.bytes.extend_from_slice(value.as_bytes());
                self.memoize();
            }
        }
    }

    fn int(&mut self, value: i64) {
        if let Ok(small) = u8::try_from(value) {
            self.bytes.extend_from_slice(&[b'K', small]);
        } else if let Ok(medium) = u16::try_from(value) {
            self.bytes.push(b'M');
            self.bytes.extend_from_slice(&medium.to_le_bytes());
        } else if let Ok(large) = i32::try_from(value) {
            self.bytes.push(b'J');
            self.bytes.extend_from_slice(&large.to_le_bytes());
        } else {
            self.bytes.extend_from_slice(&[0x8a, 8]);
            self.bytes.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        match self.style {
            PickleStyle::Python2 => {
                self.bytes.push(b'c');
                self.bytes.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            }
            PickleStyle::Python3 => {
                self.text(module);
                self.text(name);
                self.bytes.push(0x93);
            }
        }
        self.memoize();
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Array(shape, data) => self.array(shape, data),
            Item::Ints(values) => {
                self.bytes.push(b']');
                self.memoize();
                // cPickle writes APPENDS in batches of 1000 items.
                for batch in values.chunks(1000) {
                    self.bytes.push(b'(');
                    for &value in batch {
                        self.int(value);
                    }
                    self.bytes.push(b'e');
                }
            }
            Item::Texts(values) => {
                self.bytes.push(b']');
                self.memoize();
                if !values.is_empty() {
                    self.bytes.push(b'(');
                    for value in values {
                        self.text(value);
                    }
                    self.bytes.push(b'e');
                }
            }
            Item::Text(value) => self.text(value),
            Item::Int(value) => self.int(*value),
        }
    }

    /// Writes an array as numpy's `ndarray.__reduce__` pickles it:
    /// `_reconstruct(ndarray, (0,), b'b')`
    /// then BUILD with `(1, shape, dtype, is_fortran, data)`.
    fn array(&mut self, shape: &[usize], data: &[u8]) {
        let module = match self.style {
            PickleStyle::Python2 => "numpy.core.multiarray",
            PickleStyle::Python3 => "numpy._core.multiarray",
        };
        self.global(module, "_reconstruct");
        self.global("numpy", "ndarray");
        self.int(0);
        self.bytes.push(0x85);
        self.byte_string(b"b");
        self.bytes.push(0x87);
        self.bytes.push(b'R');
        self.memoize();

        self.bytes.push(b'(');
        self.int(1);
        for &size in shape {
            self.int(size as i64);
        }
        self.bytes.push(match shape.len() {
            1 => 0x85,
            2 => 0x86,
            _ => 0x87,
        });
        self.dtype_u1();
        self.bytes.push(0x89);
        self.byte_string(data);
        self.bytes.push(b't');
        self.bytes.push(b'b');
    }

    /// Writes `numpy.dtype('u1', 0, 1)` and then BUILD with
    /// `(3, '|', None, None, None, -1, -1, 0)`.
    fn dtype_u1(&mut self) {
        self.global("numpy", "dtype");
        self.text("u1");
        match self.style {
            PickleStyle::Python2 => {
                self.int(0);
                self.int(1);
            }
            PickleStyle::Python3 => self.bytes.extend_from_slice(&[0x89, 0x88]),
        }
        self.bytes.push(0x87);
        self.bytes.push(b'R');
        self.memoize();

        self.bytes.push(b'(');
        self.int(3);
        self.text("|");
        self.bytes.extend_from_slice(b"NNN");
        self.int(-1);
        self.int(-1);
        self.int(0);
        self.bytes.push(b't');
        self.bytes.push(b'b');
    }
}
