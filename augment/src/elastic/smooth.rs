//! Gaussian smoothing of a displacement noise field: the exact separable convolution and the
//! coarse-grid approximation (exact on every `step`-th row, cubic in between).

/// Taps of the Gaussian kernel on each side of the centre, as scipy's `gaussian_filter`
/// truncates it: `floor(4 * sigma + 0.5)`.
pub(super) fn kernel_radius(sigma: f32) -> usize {
    (4.0 * f64::from(sigma) + 0.5) as usize
}

/// Returns the half kernel `w[d]` for `d = 0..=radius`, normalised so that the full kernel
/// `w[|d|]` for `d = -radius..=radius` sums to 1, as scipy's `gaussian_filter` builds it.
pub(super) fn half_kernel(sigma: f32) -> Vec<f32> {
    let radius = kernel_radius(sigma);
    let sigma = f64::from(sigma);
    let weights: Vec<f64> =
        (0..=radius).map(|d| (-0.5 * (d as f64 / sigma).powi(2)).exp()).collect();
    let total = 2.0 * weights.iter().sum::<f64>() - weights[0];
    weights.iter().map(|w| (w / total) as f32).collect()
}

/// Lanes of the register-blocked loops: output values summed at once in registers, so each
/// kernel tap costs one load and one multiply-add per lane and no store.
const LANES: usize = 64;

/// Smooths a `height` x `width` row-major field with the separable Gaussian `half` (see
/// [`half_kernel`]), zero outside the field, and multiplies the result by `scale`.
///
/// Both passes sum the kernel taps of a block of [`LANES`] outputs in registers, in the same
/// order for every output, so the compiler vectorises them. Taps that only ever read outside
/// the field are skipped.
#[cfg(test)]
pub(super) fn smooth_exact(
    field: &[f32],
    height: usize,
    width: usize,
    half: &[f32],
    scale: f32,
) -> Vec<f32> {
    let mut out = field.to_vec();
    smooth_exact_in_place(&mut out, height, width, half, scale);
    out
}

/// [`smooth_exact`] that overwrites `field` with the result, with one scratch field.
#[inline(always)]
pub(super) fn smooth_exact_in_place(
    field: &mut [f32],
    height: usize,
    width: usize,
    half: &[f32],
    scale: f32,
) {
    let mut columns = vec![0.0f32; height * width];
    let mut taps = Vec::with_capacity(2 * half.len());

    // Vertical pass: row y of `columns` is the weighted sum of the rows within reach.
    for (y, out) in columns.chunks_exact_mut(width).enumerate() {
        taps.clear();
        for_taps(y as i64, half, height, |source_y, weight| taps.push((source_y, weight)));
        sum_rows(&*field, width, &taps, out);
    }

    // Horizontal pass, one row at a time, with the scale folded into the weights.
    let weights: Vec<f32> = half.iter().map(|&h| scale * h).collect();
    let mut padded = Vec::new();
    for (row_out, row) in field.chunks_exact_mut(width).zip(columns.chunks_exact(width)) {
        smooth_row(row, row_out, &weights, &mut padded);
    }
}

/// Writes to `out` the sum of `weight * field row` over the `(row, weight)` pairs of `taps`,
/// in their order, starting from 0.
#[inline(always)]
fn sum_rows(field: &[f32], width: usize, taps: &[(usize, f32)], out: &mut [f32]) {
    let row = |y: usize| &field[y * width..(y + 1) * width];
    let blocks = width / LANES * LANES;
    for start in (0..blocks).step_by(LANES) {
        let mut acc = [0.0f32; LANES];
        for &(y, weight) in taps {
            let source: &[f32; LANES] = row(y)[start..start + LANES].try_into().unwrap();
            for (a, &s) in acc.iter_mut().zip(source) {
                *a += weight * s;
            }
        }
        out[start..start + LANES].copy_from_slice(&acc);
    }
    let tail = &mut out[blocks..];
    tail.fill(0.0);
    for &(y, weight) in taps {
        for (o, &s) in tail.iter_mut().zip(&row(y)[blocks..]) {
            *o += weight * s;
        }
    }
}

/// Writes to `out` the 1-D convolution of `row` with the kernel `weights` (the half kernel
/// times the scale), zero outside the row. Output `x` sums, from 0, for each offset in reach,
/// `weights[offset]` times `row[x + offset]` and then times `row[x - offset]` (offset 0 once).
///
/// The row is copied into `padded` with zeros on both sides, so every block of outputs reads
/// its taps without checks. A tap outside the row adds `+0`, which changes no sum.
#[inline(always)]
fn smooth_row(row: &[f32], out: &mut [f32], weights: &[f32], padded: &mut Vec<f32>) {
    let width = row.len();
    let reach = (weights.len() - 1).min(width - 1);
    padded.clear();
    padded.resize(reach, 0.0);
    padded.extend_from_slice(row);
    padded.resize(width + 2 * reach + LANES, 0.0);

    for (block, out) in out.chunks_mut(LANES).enumerate() {
        // `centre` is the block's first output in `padded`.
        let centre = reach + block * LANES;
        let tap =
            |start: usize| -> &[f32; LANES] { padded[start..start + LANES].try_into().unwrap() };
        let mut acc = [0.0f32; LANES];
        for (a, &s) in acc.iter_mut().zip(tap(centre)) {
            *a += weights[0] * s;
        }
        for (offset, &weight) in weights.iter().enumerate().take(reach + 1).skip(1) {
            for ((a, &r), &l) in acc.iter_mut().zip(tap(centre + offset)).zip(tap(centre - offset))
            {
                *a += weight * r;
                *a += weight * l;
            }
        }
        let len = out.len();
        out.copy_from_slice(&acc[..len]);
    }
}

/// Returns the coarse-grid row step for `sigma`: `max(1, floor(sigma / 2))` pixels.
pub(super) fn grid_step(sigma: f32) -> usize {
    ((sigma / 2.0) as usize).max(1)
}

/// Approximates [`smooth_exact`] by evaluating the exact convolution only on every `step`-th
/// row and interpolating between those rows with Catmull-Rom cubics. Columns stay exact.
///
/// The grid rows lie at `(i - 1) * step`, from one step above row 0 to two steps below the
/// last row, because the cubic reads two grid rows on each side. The convolution is defined
/// there too, with zero noise outside the field.
#[cfg(test)]
pub(super) fn smooth_coarse(
    field: &[f32],
    height: usize,
    width: usize,
    half: &[f32],
    step: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = field.to_vec();
    smooth_coarse_in_place(&mut out, height, width, half, step, scale);
    out
}

/// [`smooth_coarse`] that overwrites `field` with the result: the grid rows are computed from
/// the whole field before any row is written.
#[inline(always)]
pub(super) fn smooth_coarse_in_place(
    field: &mut [f32],
    height: usize,
    width: usize,
    half: &[f32],
    step: usize,
    scale: f32,
) {
    let grid_rows = (height - 1) / step + 4;

    // Exact vertical convolution at the grid rows, then exact horizontal convolution of them.
    let mut vertical = vec![0.0f32; width];
    let mut padded = Vec::new();
    let mut taps = Vec::with_capacity(2 * half.len());
    let mut grid = vec![0.0f32; grid_rows * width];
    for (i, out) in grid.chunks_exact_mut(width).enumerate() {
        let centre = (i as i64 - 1) * step as i64;
        taps.clear();
        for_taps(centre, half, height, |source_y, weight| taps.push((source_y, weight)));
        sum_rows(&*field, width, &taps, &mut vertical);
        smooth_row(&vertical, out, half, &mut padded);
    }

    // Cubic interpolation between grid rows, with the scale folded into the weights.
    let weights = catmull_rom_weights(step);
    for (y, row_out) in field.chunks_exact_mut(width).enumerate() {
        let (cell, w) = (y / step, weights[y % step].map(|w| scale * w));
        let source = |t: usize| &grid[(cell + t) * width..(cell + t + 1) * width];
        let (g0, g1, g2, g3) = (source(0), source(1), source(2), source(3));
        for ((((o, &a), &b), &c), &d) in row_out.iter_mut().zip(g0).zip(g1).zip(g2).zip(g3) {
            *o = 0.0 + w[0] * a + w[1] * b + w[2] * c + w[3] * d;
        }
    }
}

/// Calls `visit(index, weight)` for each index in `0..len` within the kernel's reach of
/// `centre` (which may lie outside `0..len`).
#[inline(always)]
fn for_taps(centre: i64, half: &[f32], len: usize, mut visit: impl FnMut(usize, f32)) {
    let radius = half.len() as i64 - 1;
    let first = (centre - radius).max(0);
    let last = (centre + radius).min(len as i64 - 1);
    for index in first..=last {
        visit(index as usize, half[(index - centre).unsigned_abs() as usize]);
    }
}

/// Returns, for each phase `p` in `0..step`, the Catmull-Rom weights of the grid points at
/// `-1, 0, 1, 2` steps for the fraction `t = p / step` between grid points 0 and 1.
fn catmull_rom_weights(step: usize) -> Vec<[f32; 4]> {
    (0..step)
        .map(|p| {
            let t = p as f64 / step as f64;
            let (t2, t3) = (t * t, t * t * t);
            [
                (-t3 + 2.0 * t2 - t) / 2.0,
                (3.0 * t3 - 5.0 * t2 + 2.0) / 2.0,
                (-3.0 * t3 + 4.0 * t2 + t) / 2.0,
                (t3 - t2) / 2.0,
            ]
            .map(|w| w as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2-D convolution written as a direct double sum, in f64.
    fn naive_smooth(field: &[f32], height: usize, width: usize, sigma: f32) -> Vec<f64> {
        let half = half_kernel(sigma);
        let radius = half.len() as i64 - 1;
        let mut out = vec![0.0; height * width];
        for y in 0..height as i64 {
            for x in 0..width as i64 {
                let mut sum = 0.0;
                for dy in -radius..=radius {
                    for dx in -radius..=radius {
                        let (sy, sx) = (y + dy, x + dx);
                        if (0..height as i64).contains(&sy) && (0..width as i64).contains(&sx) {
                            let w = f64::from(half[dy.unsigned_abs() as usize])
                                * f64::from(half[dx.unsigned_abs() as usize]);
                            sum += w * f64::from(field[(sy * width as i64 + sx) as usize]);
                        }
                    }
                }
                out[(y * width as i64 + x) as usize] = sum;
            }
        }
        out
    }

    fn test_field(height: usize, width: usize) -> Vec<f32> {
        (0..height * width).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect()
    }

    #[test]
    fn kernel_matches_scipy_rule() {
        let half = half_kernel(4.0);

        assert_eq!(half.len(), 17);
        assert_eq!(kernel_radius(0.3), 1);
        assert_eq!(kernel_radius(2.6), 10);
        let total: f32 = half[0] + 2.0 * half[1..].iter().sum::<f32>();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(half.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn exact_matches_double_sum() {
        for (height, width, sigma) in [(9, 13, 1.5), (5, 3, 4.0), (1, 6, 2.0), (7, 1, 0.7)] {
            let field = test_field(height, width);
            let half = half_kernel(sigma);

            let fast = smooth_exact(&field, height, width, &half, 2.0);

            let expected = naive_smooth(&field, height, width, sigma);
            for (i, (&f, &e)) in fast.iter().zip(&expected).enumerate() {
                assert!((f64::from(f) - 2.0 * e).abs() < 1e-5, "{height}x{width} value {i}");
            }
        }
    }

    #[test]
    fn coarse_exact_on_grid_rows() {
        let (height, width, sigma) = (23, 17, 6.0);
        let field = test_field(height, width);
        let half = half_kernel(sigma);
        let step = grid_step(sigma);

        let coarse = smooth_coarse(&field, height, width, &half, step, 1.0);

        let exact = smooth_exact(&field, height, width, &half, 1.0);
        assert_eq!(step, 3);
        for y in (0..height).step_by(step) {
            for x in 0..width {
                let i = y * width + x;
                assert!((coarse[i] - exact[i]).abs() < 1e-5, "grid row {y}, column {x}");
            }
        }
    }

    #[test]
    fn catmull_rom_partition_of_unity() {
        for step in 1..6 {
            for w in catmull_rom_weights(step) {
                assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
        }
        assert_eq!(catmull_rom_weights(2)[0], [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(catmull_rom_weights(2)[1], [-0.0625, 0.5625, 0.5625, -0.0625]);
    }

    #[test]
    fn grid_step_rule() {
        assert_eq!(grid_step(1.0), 1);
        assert_eq!(grid_step(3.9), 1);
        assert_eq!(grid_step(4.0), 2);
        assert_eq!(grid_step(9.0), 4);
    }
}
