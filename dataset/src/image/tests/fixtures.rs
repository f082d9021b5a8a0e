//! Image files built in memory for the conversion tests, and an allocation probe.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;

use crate::image::{ConvertOptions, Converted, Exif, RgbSums, SkipReason, Store};

/// Options for raw storage without a size cap, so the payload is the decoded pixels.
pub fn raw() -> ConvertOptions {
    ConvertOptions { store: Store::Raw, ..ConvertOptions::default() }
}

/// Options of `store` with `max_side`.
pub fn options(store: Store, max_side: Option<u32>) -> ConvertOptions {
    ConvertOptions { store, max_side, ..ConvertOptions::default() }
}

/// Options of `store` with the EXIF orientation ignored.
pub fn ignoring_exif(store: Store) -> ConvertOptions {
    ConvertOptions { store, exif: Exif::Ignore, ..ConvertOptions::default() }
}

/// Converts and panics with the skip reason on failure.
pub fn convert(bytes: &[u8], opts: &ConvertOptions) -> Converted {
    match crate::image::convert_image(bytes, opts) {
        Ok(converted) => converted,
        Err(reason) => panic!("conversion failed: {reason}"),
    }
}

/// Converts and returns the skip reason, panicking if the file converted.
pub fn skip(bytes: &[u8], opts: &ConvertOptions) -> SkipReason {
    match crate::image::convert_image(bytes, opts) {
        Ok(converted) => panic!("converted to {}x{}", converted.width, converted.height),
        Err(reason) => reason,
    }
}

/// Builds a smooth RGB8 image in which every pixel differs (for sides up to 256): red grows to the
/// right, green downwards, blue along the diagonal.
pub fn pattern(width: u32, height: u32) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            rgb.push((x * 251 / width) as u8);
            rgb.push((y * 251 / height) as u8);
            rgb.push((64 + (x + y) * 127 / (width + height)) as u8);
        }
    }
    rgb
}

/// Builds an image whose quadrants have one colour each: top left, top right, bottom left, bottom
/// right. Every colour has the same number of bytes (channels).
pub fn quadrants(width: u32, height: u32, colours: [&[u8]; 4]) -> Vec<u8> {
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let index = usize::from(y >= height / 2) * 2 + usize::from(x >= width / 2);
            pixels.extend_from_slice(colours[index]);
        }
    }
    pixels
}

/// Returns the RGB8 pixel at (x, y).
pub fn pixel_at(rgb: &[u8], width: u32, x: u32, y: u32) -> [u8; 3] {
    let at = ((y * width + x) * 3) as usize;
    [rgb[at], rgb[at + 1], rgb[at + 2]]
}

/// Asserts that each channel of `actual` is within `tolerance` of `expected`.
pub fn assert_near(actual: [u8; 3], expected: [u8; 3], tolerance: u8, case: &str) {
    for c in 0..3 {
        assert!(
            actual[c].abs_diff(expected[c]) <= tolerance,
            "{case}: found {actual:?}, expected {expected:?} ± {tolerance}"
        );
    }
}

/// Mean absolute difference between two equally long byte buffers.
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let total: u64 = a.iter().zip(b).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    total as f64 / a.len() as f64
}

/// Decodes a JPEG or other payload with the `image` crate and checks it has 3 channels.
pub fn decode_rgb(bytes: &[u8]) -> (Vec<u8>, u32, u32) {
    let image = image::load_from_memory(bytes).expect("payload decodes");
    assert_eq!(image.color(), image::ColorType::Rgb8, "payload colour type");
    let rgb = image.to_rgb8();
    let (width, height) = rgb.dimensions();
    (rgb.into_raw(), width, height)
}

/// Sums over `rgb`.
pub fn sums_of(rgb: &[u8]) -> RgbSums {
    let mut sums = RgbSums::new();
    sums.add_pixels(rgb);
    sums
}

/// How a test JPEG is written.
#[derive(Clone, Copy)]
pub struct JpegSpec {
    pub colour: jpeg_encoder::ColorType,
    pub quality: u8,
    pub progressive: bool,
    pub restart_interval: Option<u16>,
    /// EXIF orientation tag value (1-8) written in an APP1 segment.
    pub orientation: Option<u16>,
}

impl Default for JpegSpec {
    fn default() -> Self {
        JpegSpec {
            colour: jpeg_encoder::ColorType::Rgb,
            quality: 95,
            progressive: false,
            restart_interval: None,
            orientation: None,
        }
    }
}

/// Encodes `data`, laid out as `spec.colour` specifies, with jpeg-encoder.
pub fn jpeg(data: &[u8], width: u32, height: u32, spec: JpegSpec) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, spec.quality);
    encoder.set_progressive(spec.progressive);
    if let Some(interval) = spec.restart_interval {
        encoder.set_restart_interval(interval);
    }
    if let Some(orientation) = spec.orientation {
        encoder.add_exif_metadata(&exif_orientation(orientation)).unwrap();
    }
    encoder.encode(data, width as u16, height as u16, spec.colour).unwrap();
    bytes
}

/// Encodes a baseline RGB JPEG at quality 95.
pub fn rgb_jpeg(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    jpeg(rgb, width, height, JpegSpec::default())
}

/// Builds a little-endian TIFF block (the body of an EXIF APP1 segment) with one IFD entry: the
/// orientation tag 0x0112, type SHORT, count 1.
pub fn exif_orientation(value: u16) -> Vec<u8> {
    let mut tiff = b"II\x2a\x00".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(0x0112u16.to_le_bytes());
    tiff.extend(3u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(value.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes());
    tiff
}

/// Encodes `data` as a PNG of `colour` and `depth` (16-bit samples big-endian, as PNG stores
/// them).
pub fn png(
    data: &[u8],
    width: u32,
    height: u32,
    colour: png::ColorType,
    depth: png::BitDepth,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(colour);
    encoder.set_depth(depth);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
    bytes
}

/// Encodes RGB8 pixels as a PNG with an eXIf chunk that contains orientation tag `orientation`.
pub fn png_with_orientation(rgb: &[u8], width: u32, height: u32, orientation: u16) -> Vec<u8> {
    let mut info = png::Info::with_size(width, height);
    info.color_type = png::ColorType::Rgb;
    info.bit_depth = png::BitDepth::Eight;
    info.exif_metadata = Some(exif_orientation(orientation).into());
    let mut bytes = Vec::new();
    let encoder = png::Encoder::with_info(&mut bytes, info).unwrap();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(rgb).unwrap();
    writer.finish().unwrap();
    bytes
}

/// Encodes 8-bit palette indices as a PNG, with an optional tRNS chunk of alpha per entry.
pub fn png_indexed(
    indices: &[u8],
    width: u32,
    height: u32,
    palette: &[u8],
    alpha: Option<&[u8]>,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(palette.to_vec());
    if let Some(alpha) = alpha {
        encoder.set_trns(alpha.to_vec());
    }
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(indices).unwrap();
    writer.finish().unwrap();
    bytes
}

/// Encodes RGB8 pixels in another format through the `image` crate.
pub fn encode_with_image(
    rgb: &[u8],
    width: u32,
    height: u32,
    format: image::ImageFormat,
) -> Vec<u8> {
    let buffer = image::RgbImage::from_raw(width, height, rgb.to_vec()).unwrap();
    let mut bytes = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(buffer).write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// Rewrites the width and height in a PNG's IHDR chunk and its CRC.
pub fn png_with_size(bytes: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut patched = bytes.to_vec();
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
    assert_eq!(&patched[12..16], b"IHDR");
    patched[16..20].copy_from_slice(&width.to_be_bytes());
    patched[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&patched[12..29]);
    patched[29..33].copy_from_slice(&crc.to_be_bytes());
    patched
}

/// Rewrites the height and width in a JPEG's first start-of-frame segment.
pub fn jpeg_with_size(bytes: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut patched = bytes.to_vec();
    let sof = patched
        .windows(2)
        .position(|pair| pair[0] == 0xFF && matches!(pair[1], 0xC0..=0xC2))
        .expect("a start-of-frame marker");
    // Marker (2), length (2), precision (1), then height and width.
    patched[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    patched[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    patched
}

/// Finds the byte offset of a JPEG's first start-of-scan marker.
pub fn first_scan(bytes: &[u8]) -> usize {
    bytes.windows(2).position(|pair| pair == [0xFF, 0xDA]).expect("a start-of-scan marker")
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

thread_local! {
    static PROBING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, recording the largest request made on a thread while that thread runs
/// [`largest_allocation`].
struct ProbingAllocator;

impl ProbingAllocator {
    fn record(size: usize) {
        // `try_with` because allocations also happen while thread-locals are torn down.
        let probing = PROBING.try_with(Cell::get).unwrap_or(false);
        if probing {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    }
}

// SAFETY: every call forwards to `System` with the same arguments; recording only touches
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for ProbingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(new_size);
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System` underneath.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ProbingAllocator = ProbingAllocator;

/// Runs `work` and returns its result with the largest single allocation it requested on this
/// thread, in bytes.
pub fn largest_allocation<T>(work: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    PROBING.with(|probing| probing.set(true));
    let result = work();
    PROBING.with(|probing| probing.set(false));
    (result, LARGEST.with(Cell::get))
}
