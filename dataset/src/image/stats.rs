//! Exact per-channel RGB sums, and the mean, standard deviation, covariance and principal
//! components derived from them.
//!
//! [`RgbSums`] keeps integer sums of every channel value and of every product of two channels
//! over all pixels added, so sums from many images (and many threads) merge without rounding,
//! in any order, to the same totals. [`RgbSums::finish`] turns them into [`RgbStats`]: population
//! statistics in 0..=255 units, and the eigen decomposition of the covariance matrix that
//! PCA lighting noise (AlexNet-style colour augmentation) uses.

use serde::{Deserialize, Serialize};

/// Products are stored in this order: R·R, G·G, B·B, R·G, R·B, G·B.
const PRODUCT_PAIRS: [(usize, usize); 6] = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)];

/// Pixels per vector step: 16 pixels are 48 bytes, so lane `l` always contains channel `l % 3`.
const LANE_PIXELS: usize = 16;
const LANES: usize = LANE_PIXELS * 3;

/// Vector steps summed in `u32` lanes before they are flushed into `u64` totals. A lane gains at
/// most 255 · 255 = 65025 per step, and 65536 steps of that stay below 2^32.
const STEPS_PER_FLUSH: usize = 65536;

/// Exact integer sums over RGB pixels: the pixel count, the sum of each channel and the sum of
/// each product of two channels (values 0..=255).
///
/// Serialises as JSON with the `u128` sums written as decimal strings, so that a resume journal
/// stores them exactly whatever reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SumsRepr", into = "SumsRepr")]
pub struct RgbSums {
    pixels: u64,
    sums: [u128; 3],
    products: [u128; 6],
}

/// Population statistics of RGB pixels, in 0..=255 units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RgbStats {
    /// Mean of R, G and B.
    pub mean: [f64; 3],
    /// Population standard deviation of R, G and B (divided by the pixel count, not count − 1).
    pub std: [f64; 3],
    /// Population covariance matrix; row and column order R, G, B.
    pub covariance: [[f64; 3]; 3],
    /// Eigenvalues of `covariance`, in descending order. They are clamped at 0, because the
    /// matrix is positive semi-definite and rounding can push a zero eigenvalue slightly below.
    pub eigenvalues: [f64; 3],
    /// Row `k` is the unit eigenvector of `eigenvalues[k]`, signed so that its component with the
    /// largest magnitude is positive (the first such component on a tie).
    pub eigenvectors: [[f64; 3]; 3],
}

impl RgbSums {
    /// Creates empty sums.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pixels added so far.
    pub fn pixels(&self) -> u64 {
        self.pixels
    }

    /// Adds interleaved RGB8 pixels (`R, G, B, R, G, B, …`).
    ///
    /// # Panics
    ///
    /// Panics if `rgb.len()` is not a multiple of 3.
    pub fn add_pixels(&mut self, rgb: &[u8]) {
        assert!(
            rgb.len().is_multiple_of(3),
            "rgb buffer of {} bytes is not whole RGB pixels",
            rgb.len()
        );

        let mut sums = [0u64; 3];
        let mut products = [0u64; 6];

        // The vector part needs 2 bytes beyond each step for the neighbour products, so the last
        // step is left to the scalar tail.
        let vector_bytes = (rgb.len().saturating_sub(2) / LANES) * LANES;
        let mut start = 0;
        while start < vector_bytes {
            let end = (start + STEPS_PER_FLUSH * LANES).min(vector_bytes);
            add_lanes(&rgb[start..end + 2], &mut sums, &mut products);
            start = end;
        }

        for pixel in rgb[vector_bytes..].chunks_exact(3) {
            let (r, g, b) = (u64::from(pixel[0]), u64::from(pixel[1]), u64::from(pixel[2]));
            sums[0] += r;
            sums[1] += g;
            sums[2] += b;
            products[0] += r * r;
            products[1] += g * g;
            products[2] += b * b;
            products[3] += r * g;
            products[4] += r * b;
            products[5] += g * b;
        }

        self.pixels += (rgb.len() / 3) as u64;
        for (total, part) in self.sums.iter_mut().zip(sums) {
            *total += u128::from(part);
        }
        for (total, part) in self.products.iter_mut().zip(products) {
            *total += u128::from(part);
        }
    }

    /// Adds the pixels of `other` to these sums.
    pub fn merge(&mut self, other: &RgbSums) {
        self.pixels += other.pixels;
        for (total, part) in self.sums.iter_mut().zip(other.sums) {
            *total += part;
        }
        for (total, part) in self.products.iter_mut().zip(other.products) {
            *total += part;
        }
    }

    /// Computes the statistics.
    ///
    /// Each covariance entry is `(n·Σxy − Σx·Σy) / n²`, with the numerator computed exactly in
    /// integers, so the only rounding is the final conversion and division in `f64`. With no
    /// pixels added (check [`RgbSums::pixels`]) the statistics are undefined, and this returns
    /// zero mean, spread and eigenvalues with the identity rows as eigenvectors.
    pub fn finish(&self) -> RgbStats {
        if self.pixels == 0 {
            return RgbStats {
                mean: [0.0; 3],
                std: [0.0; 3],
                covariance: [[0.0; 3]; 3],
                eigenvalues: [0.0; 3],
                eigenvectors: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            };
        }
        let n = u128::from(self.pixels);
        let n_squared = (n * n) as f64;

        let mut covariance = [[0.0; 3]; 3];
        for (&(i, j), &product) in PRODUCT_PAIRS.iter().zip(&self.products) {
            // Both terms stay below 2^127 for fewer than 2^55 pixels, far above any data set.
            let numerator = (n * product) as i128 - (self.sums[i] * self.sums[j]) as i128;
            let value = numerator as f64 / n_squared;
            covariance[i][j] = value;
            covariance[j][i] = value;
        }

        let mean = self.sums.map(|sum| sum as f64 / n as f64);
        let std = [0, 1, 2].map(|c| covariance[c][c].max(0.0).sqrt());
        let (eigenvalues, eigenvectors) = symmetric_eigen(covariance);
        RgbStats { mean, std, covariance, eigenvalues, eigenvectors }
    }
}

/// Sums the whole 48-byte steps in `rgb` (all but its last 2 bytes) into `sums` and `products`.
///
/// The loop works on the flat byte stream, so every operation is lane-wise and vectorises.
/// Lane `l` of a step contains channel `l % 3`, and per lane it sums `x[l]`, `x[l]²`,
/// `x[l]·x[l+1]` and `x[l]·x[l+2]`. These give the channel sums and squares, R·G and G·B (lanes
/// 0 and 1 mod 3 of the neighbour product) and R·B (lanes 0 mod 3 of the next-but-one product).
/// The other lanes pair bytes of different pixels and are discarded. The caller passes the 2
/// bytes after the last step for them, and at most `STEPS_PER_FLUSH` steps, so the `u32` lanes
/// cannot overflow.
fn add_lanes(rgb: &[u8], sums: &mut [u64; 3], products: &mut [u64; 6]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the line above checked that this CPU supports AVX2.
        unsafe { add_lanes_avx2(rgb, sums, products) };
        return;
    }
    add_lanes_portable(rgb, sums, products);
}

/// [`add_lanes_portable`] compiled for AVX2, about twice as fast as the baseline x86-64 (SSE2)
/// build. The sums are exact integers, so both give the same result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_lanes_avx2(rgb: &[u8], sums: &mut [u64; 3], products: &mut [u64; 6]) {
    add_lanes_portable(rgb, sums, products);
}

#[inline(always)]
fn add_lanes_portable(rgb: &[u8], sums: &mut [u64; 3], products: &mut [u64; 6]) {
    let steps = (rgb.len() - 2) / LANES;
    debug_assert!(steps <= STEPS_PER_FLUSH);

    // The adds cannot overflow (see STEPS_PER_FLUSH). They wrap rather than add with overflow
    // checks so that builds with checks enabled still vectorise.
    let mut value = [0u32; LANES];
    let mut square = [0u32; LANES];
    let mut next = [0u32; LANES];
    let mut next_but_one = [0u32; LANES];
    for step in 0..steps {
        let base = step * LANES;
        let x: &[u8; LANES] = rgb[base..base + LANES].try_into().expect("step is LANES bytes");
        let x1: &[u8; LANES] =
            rgb[base + 1..base + 1 + LANES].try_into().expect("step is LANES bytes");
        let x2: &[u8; LANES] =
            rgb[base + 2..base + 2 + LANES].try_into().expect("step is LANES bytes");
        for l in 0..LANES {
            // Products of two bytes fit in u16, whose multiplies are cheaper than u32 ones.
            let v = u16::from(x[l]);
            value[l] = value[l].wrapping_add(u32::from(v));
            square[l] = square[l].wrapping_add(u32::from(v * v));
            next[l] = next[l].wrapping_add(u32::from(v * u16::from(x1[l])));
            next_but_one[l] = next_but_one[l].wrapping_add(u32::from(v * u16::from(x2[l])));
        }
    }

    for l in 0..LANES {
        let channel = l % 3;
        sums[channel] += u64::from(value[l]);
        products[channel] += u64::from(square[l]);
        match channel {
            0 => {
                products[3] += u64::from(next[l]);
                products[4] += u64::from(next_but_one[l]);
            }
            1 => products[5] += u64::from(next[l]),
            _ => {}
        }
    }
}

/// Eigen decomposition of a symmetric 3×3 matrix by the cyclic Jacobi method.
///
/// Returns the eigenvalues in descending order (clamped at 0) and the unit eigenvectors as rows,
/// each signed so that its largest-magnitude component is positive. The sweep order is fixed, so
/// the result depends only on the input.
fn symmetric_eigen(matrix: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = matrix;
    // Columns of `v` accumulate the rotations, so they end as the eigenvectors.
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

    let scale = a.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max);
    for _sweep in 0..64 {
        let off_diagonal = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off_diagonal <= f64::EPSILON * f64::EPSILON * scale {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            jacobi_rotate(&mut a, &mut v, p, q);
        }
    }

    let mut order = [0, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));

    let eigenvalues = order.map(|k| a[k][k].max(0.0));
    let eigenvectors = order.map(|k| {
        let mut vector = [v[0][k], v[1][k], v[2][k]];
        let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut largest = 0;
        for c in 1..3 {
            if vector[c].abs() > vector[largest].abs() {
                largest = c;
            }
        }
        let sign = if vector[largest] < 0.0 { -1.0 } else { 1.0 };
        for x in &mut vector {
            *x *= sign / norm;
        }
        vector
    });
    (eigenvalues, eigenvectors)
}

/// Applies the plane rotation in (p, q) that zeroes `a[p][q]`, to `a` (both sides) and to the
/// columns of `v`.
fn jacobi_rotate(a: &mut [[f64; 3]; 3], v: &mut [[f64; 3]; 3], p: usize, q: usize) {
    let apq = a[p][q];
    if apq == 0.0 {
        return;
    }

    // t = tan(angle) is the smaller root of t² + 2θt − 1 = 0, which keeps the rotation below 45°.
    let theta = (a[q][q] - a[p][p]) / (2.0 * apq);
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;

    a[p][p] -= t * apq;
    a[q][q] += t * apq;
    a[p][q] = 0.0;
    a[q][p] = 0.0;
    // The one remaining row and column.
    let k = 3 - p - q;
    let akp = a[k][p];
    let akq = a[k][q];
    a[k][p] = c * akp - s * akq;
    a[p][k] = a[k][p];
    a[k][q] = s * akp + c * akq;
    a[q][k] = a[k][q];
    for row in v.iter_mut() {
        let vp = row[p];
        let vq = row[q];
        row[p] = c * vp - s * vq;
        row[q] = s * vp + c * vq;
    }
}

/// The serialised form of [`RgbSums`]: `u128` values as decimal strings.
#[derive(Serialize, Deserialize)]
struct SumsRepr {
    pixels: u64,
    sums: [String; 3],
    products: [String; 6],
}

impl From<RgbSums> for SumsRepr {
    fn from(sums: RgbSums) -> Self {
        SumsRepr {
            pixels: sums.pixels,
            sums: sums.sums.map(|x| x.to_string()),
            products: sums.products.map(|x| x.to_string()),
        }
    }
}

impl TryFrom<SumsRepr> for RgbSums {
    type Error = String;

    /// Parses the strings and rejects sums that no set of `pixels` RGB8 pixels can produce.
    fn try_from(repr: SumsRepr) -> Result<Self, String> {
        let parse =
            |text: &String| text.parse::<u128>().map_err(|e| format!("invalid sum {text:?}: {e}"));
        let mut sums = [0u128; 3];
        for (slot, text) in sums.iter_mut().zip(&repr.sums) {
            *slot = parse(text)?;
        }
        let mut products = [0u128; 6];
        for (slot, text) in products.iter_mut().zip(&repr.products) {
            *slot = parse(text)?;
        }

        let n = u128::from(repr.pixels);
        if let Some(sum) = sums.iter().find(|&&sum| sum > n * 255) {
            return Err(format!("channel sum {sum} exceeds 255 × {n} pixels"));
        }
        if let Some(product) = products.iter().find(|&&product| product > n * 255 * 255) {
            return Err(format!("product sum {product} exceeds 65025 × {n} pixels"));
        }
        Ok(RgbSums { pixels: repr.pixels, sums, products })
    }
}

#[cfg(test)]
// Index loops read like the matrix formulas they check.
#[allow(clippy::needless_range_loop)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random_pixels(pixels: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Correlated channels, so the covariance has distinct eigenvalues.
        let mut rgb = Vec::with_capacity(pixels * 3);
        for _ in 0..pixels {
            let base: u8 = rng.random();
            let g = base / 2 + rng.random_range(0..128u8);
            let b = base / 4 + rng.random_range(0..64u8);
            rgb.extend([base, g, b]);
        }
        rgb
    }

    /// Sums pixel by pixel with no lanes.
    fn naive_sums(rgb: &[u8]) -> RgbSums {
        let mut sums = RgbSums::new();
        for pixel in rgb.chunks_exact(3) {
            let v = [pixel[0], pixel[1], pixel[2]].map(u128::from);
            for (total, value) in sums.sums.iter_mut().zip(v) {
                *total += value;
            }
            for (slot, &(i, j)) in PRODUCT_PAIRS.iter().enumerate() {
                sums.products[slot] += v[i] * v[j];
            }
        }
        sums.pixels = (rgb.len() / 3) as u64;
        sums
    }

    /// Two-pass mean and population covariance in f64.
    fn direct_stats(rgb: &[u8]) -> ([f64; 3], [[f64; 3]; 3]) {
        let n = (rgb.len() / 3) as f64;
        let mut mean = [0.0; 3];
        for pixel in rgb.chunks_exact(3) {
            for c in 0..3 {
                mean[c] += f64::from(pixel[c]) / n;
            }
        }
        let mut covariance = [[0.0; 3]; 3];
        for pixel in rgb.chunks_exact(3) {
            for i in 0..3 {
                for j in 0..3 {
                    covariance[i][j] +=
                        (f64::from(pixel[i]) - mean[i]) * (f64::from(pixel[j]) - mean[j]) / n;
                }
            }
        }
        (mean, covariance)
    }

    #[test]
    fn lanes_match_naive_sums() {
        // Lengths around the 16-pixel step and the 2-byte overhang of the last step.
        for pixels in [0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 1000, 4099] {
            let rgb = random_pixels(pixels, pixels as u64);
            let mut sums = RgbSums::new();
            sums.add_pixels(&rgb);
            assert_eq!(sums, naive_sums(&rgb), "{pixels} pixels");
        }
    }

    #[test]
    fn lanes_do_not_overflow() {
        // More than one flush of white pixels: every lane reaches its largest total.
        let pixels = STEPS_PER_FLUSH * LANE_PIXELS + 37;
        let rgb = vec![255u8; pixels * 3];
        let mut sums = RgbSums::new();
        sums.add_pixels(&rgb);
        let n = pixels as u128;
        assert_eq!(sums.sums, [n * 255; 3]);
        assert_eq!(sums.products, [n * 65025; 6]);
    }

    #[test]
    #[should_panic(expected = "not whole RGB pixels")]
    fn partial_pixel_panics() {
        RgbSums::new().add_pixels(&[1, 2, 3, 4]);
    }

    #[test]
    fn statistics_match_direct_computation() {
        let rgb = random_pixels(20_011, 3);
        let stats = sums_of(&rgb).finish();
        let (mean, covariance) = direct_stats(&rgb);
        for i in 0..3 {
            assert!((stats.mean[i] - mean[i]).abs() < 1e-9, "mean {i}");
            assert!((stats.std[i] - covariance[i][i].sqrt()).abs() < 1e-9, "std {i}");
            for j in 0..3 {
                let difference = (stats.covariance[i][j] - covariance[i][j]).abs();
                assert!(difference < 1e-8, "covariance {i},{j}: {difference}");
            }
        }
    }

    fn sums_of(rgb: &[u8]) -> RgbSums {
        let mut sums = RgbSums::new();
        sums.add_pixels(rgb);
        sums
    }

    #[test]
    fn empty_sums_give_zero_statistics() {
        let stats = RgbSums::new().finish();
        assert_eq!(stats.mean, [0.0; 3]);
        assert_eq!(stats.std, [0.0; 3]);
        assert_eq!(stats.eigenvalues, [0.0; 3]);
        assert_eq!(stats.eigenvectors, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    }

    #[test]
    fn flat_image_has_zero_spread() {
        let stats = sums_of(&[10, 20, 30].repeat(100)).finish();
        assert_eq!(stats.mean, [10.0, 20.0, 30.0]);
        assert_eq!(stats.std, [0.0; 3]);
        assert_eq!(stats.eigenvalues, [0.0; 3]);
    }

    #[test]
    fn merge_order_does_not_matter() {
        let parts: Vec<Vec<u8>> =
            (0..5).map(|seed| random_pixels(100 + 37 * seed as usize, seed)).collect();
        let mut forward = RgbSums::new();
        for part in &parts {
            forward.merge(&sums_of(part));
        }
        let mut backward = RgbSums::new();
        for part in parts.iter().rev() {
            backward.merge(&sums_of(part));
        }
        let whole = sums_of(&parts.concat());
        assert_eq!(forward, whole);
        assert_eq!(backward, whole);
        assert_eq!(forward.finish(), whole.finish());
    }

    fn assert_eigen(matrix: [[f64; 3]; 3]) {
        let (values, vectors) = symmetric_eigen(matrix);
        let scale = matrix.iter().flatten().map(|x| x.abs()).fold(1.0, f64::max);
        for k in 0..3 {
            let v = vectors[k];
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| matrix[i][j] * v[j]).sum();
                let difference = (av - values[k] * v[i]).abs();
                assert!(difference < 1e-9 * scale, "A v != λ v for {k}, row {i}: {difference}");
            }
            for l in 0..3 {
                let dot: f64 = (0..3).map(|i| vectors[k][i] * vectors[l][i]).sum();
                let expected = if k == l { 1.0 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-12, "v{k}·v{l} = {dot}");
            }
            let largest =
                v.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            assert!(largest > 0.0, "vector {k} {v:?} has a negative largest component");
        }
        assert!(values[0] >= values[1], "not descending: {values:?}");
        assert!(values[1] >= values[2], "not descending: {values:?}");
    }

    #[test]
    fn eigen_decomposition_holds() {
        let covariance = sums_of(&random_pixels(5000, 11)).finish().covariance;
        assert_eigen(covariance);
        assert_eigen([[4.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eigen([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]]);
        assert_eigen([[5.0, 5.0, 5.0], [5.0, 5.0, 5.0], [5.0, 5.0, 5.0]]);
        assert_eigen([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]]);
        assert_eigen([[1e4, 1e-9, 2.0], [1e-9, 1e-6, 0.0], [2.0, 0.0, 5e3]]);
    }

    #[test]
    fn eigen_of_known_matrix() {
        // Eigenvalues of the tridiagonal [2 1 0; 1 2 1; 0 1 2] are 2 + √2, 2, 2 − √2.
        let (values, vectors) =
            symmetric_eigen([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]]);
        let root = 2f64.sqrt();
        let expected = [2.0 + root, 2.0, 2.0 - root];
        for k in 0..3 {
            assert!((values[k] - expected[k]).abs() < 1e-12, "eigenvalue {k}: {}", values[k]);
        }
        let first = [0.5, root / 2.0, 0.5];
        for i in 0..3 {
            assert!((vectors[0][i] - first[i]).abs() < 1e-12, "first eigenvector {:?}", vectors[0]);
        }
    }

    #[test]
    fn sums_round_trip_through_json() {
        let sums = sums_of(&random_pixels(999, 5));
        let text = serde_json::to_string(&sums).unwrap();
        assert!(text.contains(&format!("\"{}\"", sums.sums[0])), "{text}");
        let back: RgbSums = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sums);
    }

    #[test]
    fn impossible_sums_are_rejected() {
        let text = r#"{"pixels":2,"sums":["511","0","0"],"products":["0","0","0","0","0","0"]}"#;
        let error = serde_json::from_str::<RgbSums>(text).unwrap_err();
        assert!(error.to_string().contains("channel sum 511 exceeds 255 × 2 pixels"), "{error}");
        let text = r#"{"pixels":1,"sums":["1","2","x"],"products":["0","0","0","0","0","0"]}"#;
        assert!(serde_json::from_str::<RgbSums>(text).is_err());
    }
}
