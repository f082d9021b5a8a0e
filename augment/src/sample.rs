//! Sampling from the generator an op is given: uniform reals, normals, shuffles and noise bits.
//!
//! Every function here is written out in this crate instead of taken from `rand`, so a drawn
//! value depends only on the ChaCha8 stream and the formula documented here, never on the
//! sampling code of a `rand` release. Each function states how many generator words it uses.

use rand_chacha::rand_core::RngCore;

use crate::key::uniform_inclusive;

/// 2^-53, the spacing of the values [`unit_f64`] returns.
const UNIT_STEP: f64 = 1.0 / (1u64 << 53) as f64;

/// Draws a uniform value from `[0, 1)`: the top 53 bits of one `next_u64`, times 2^-53.
///
/// The same formula as [`bernoulli`](crate::bernoulli) compares against its probability.
pub fn unit_f64<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * UNIT_STEP
}

/// Draws a uniform value from `[low, high)` as `low + unit * (high - low)` with one
/// [`unit_f64`] draw. Returns `low` when `high == low`.
pub fn uniform_f64<R: RngCore + ?Sized>(rng: &mut R, low: f64, high: f64) -> f64 {
    low + unit_f64(rng) * (high - low)
}

/// Draws a standard normal value with the Box-Muller transform:
/// `sqrt(-2 ln(1 - u1)) * cos(2 pi u2)`, where `u1` and `u2` are two [`unit_f64`] draws in that
/// order. `1 - u1` lies in `(0, 1]`, so the logarithm is finite. Uses two `next_u64` words per
/// value and discards the sine half of the pair, so each value costs the same draws.
pub fn standard_normal<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    let u1 = unit_f64(rng);
    let u2 = unit_f64(rng);
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Shuffles `items` in place with the Fisher-Yates algorithm: for `i` from `len - 1` down to 1,
/// swaps item `i` with item `uniform_inclusive(rng, i)`. Uses `len - 1` draws of
/// [`uniform_inclusive`], so every one of the `len!` orders is equally likely.
pub fn shuffle<T, R: RngCore + ?Sized>(rng: &mut R, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = uniform_inclusive(rng, i as u64) as usize;
        items.swap(i, j);
    }
}

/// Fills `out` with 16-bit random values: the generator's `fill_bytes` output read two bytes
/// at a time, little-endian, one value per element in order.
///
/// The bytes are requested in blocks whose length is a multiple of 8, so the stream position
/// after the call is the same as after `ceil(out.len() / 4)` calls of `next_u64`, and bytes
/// left over in the last block are discarded.
pub fn fill_u16<R: RngCore + ?Sized>(rng: &mut R, out: &mut [u16]) {
    const BLOCK_VALUES: usize = 1024;
    let mut bytes = [0u8; 2 * BLOCK_VALUES];

    for chunk in out.chunks_mut(BLOCK_VALUES) {
        // Round the request up to whole 64-bit words so that the stream position does not
        // depend on how the generator splits a word between calls.
        let len = (2 * chunk.len()).div_ceil(8) * 8;
        rng.fill_bytes(&mut bytes[..len]);
        for (value, pair) in chunk.iter_mut().zip(bytes.chunks_exact(2)) {
            *value = u16::from_le_bytes([pair[0], pair[1]]);
        }
    }
}

/// Fills `out` with uniform values from `(-1, 1)`, 65,536 evenly spaced levels:
/// `(b + 0.5) / 32768 - 1` for each 16-bit value `b` of [`fill_u16`], in order.
///
/// The levels are symmetric about 0 and have mean exactly 0. Their variance is
/// `(1 - 2^-32) / 3`, against `1 / 3` for the continuous uniform distribution.
pub fn fill_uniform_symmetric<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    const BLOCK_VALUES: usize = 1024;
    let mut bits = [0u16; BLOCK_VALUES];

    for chunk in out.chunks_mut(BLOCK_VALUES) {
        fill_u16(rng, &mut bits[..chunk.len()]);
        for (value, &b) in chunk.iter_mut().zip(&bits) {
            *value = (f32::from(b) + 0.5) * (1.0 / 32768.0) - 1.0;
        }
    }
}

/// Coefficients of AS 241 for `|p - 0.5| <= 0.425`, lowest power first: numerator `A`,
/// denominator `B`, in `r = 0.180625 - (p - 0.5)^2`.
#[allow(clippy::excessive_precision)] // AS 241's published digits.
const CENTRAL_A: [f64; 8] = [
    3.3871328727963666080e0,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
];
#[allow(clippy::excessive_precision)] // AS 241's published digits.
const CENTRAL_B: [f64; 8] = [
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
];

/// Coefficients of AS 241 for the tails up to `sqrt(-ln(tail)) <= 5`, lowest power first, in
/// `r = sqrt(-ln(tail)) - 1.6`.
#[allow(clippy::excessive_precision)] // AS 241's published digits.
const TAIL_C: [f64; 8] = [
    1.42343711074968357734e0,
    4.63033784615654529590e0,
    5.76949722146069140550e0,
    3.64784832476320460504e0,
    1.27045825245236838258e0,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
];
#[allow(clippy::excessive_precision)] // AS 241's published digits.
const TAIL_D: [f64; 8] = [
    1.0,
    2.05319162663775882187e0,
    1.67638483018380384940e0,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
];

/// Evaluates the polynomial with `coefficients` (lowest power first) at `x` by Horner's rule.
fn polynomial(coefficients: &[f64; 8], x: f64) -> f64 {
    coefficients.iter().rev().fold(0.0, |sum, &c| sum * x + c)
}

/// Returns the standard normal quantile of `p` (the `z` with `P(Z <= z) = p`) by Wichura's
/// algorithm AS 241 (PPND16, Applied Statistics 37(3), 1988), relative error about 1e-16.
///
/// Only the two branches that cover `p` in `[exp(-25), 1 - exp(-25)]` (about `|z| <= 7`) are
/// written, and `p` is clamped to that range. Callers here stay within `|z| < 5`.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    let tail_limit = (-25.0f64).exp();
    let p = p.clamp(tail_limit, 1.0 - tail_limit);
    let q = p - 0.5;

    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * polynomial(&CENTRAL_A, r) / polynomial(&CENTRAL_B, r);
    }

    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt() - 1.6;
    let z = polynomial(&TAIL_C, r) / polynomial(&TAIL_D, r);
    if q < 0.0 {
        -z
    } else {
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SampleKey;

    #[test]
    fn unit_f64_bounds_and_formula() {
        let mut rng = SampleKey::new(1, 0, 0).rng(0);
        let mut copy = rng.clone();

        for _ in 0..1000 {
            let value = unit_f64(&mut rng);
            let expected = (copy.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0;
            assert_eq!(value, expected);
            assert!((0.0..1.0).contains(&value));
        }
    }

    #[test]
    fn uniform_f64_range() {
        let mut rng = SampleKey::new(2, 0, 0).rng(0);

        for _ in 0..1000 {
            let value = uniform_f64(&mut rng, -3.0, 5.0);
            assert!((-3.0..5.0).contains(&value), "{value}");
        }
        assert_eq!(uniform_f64(&mut rng, 2.5, 2.5), 2.5);
    }

    #[test]
    fn normal_moments() {
        let mut rng = SampleKey::new(3, 0, 0).rng(0);
        let n = 200_000;
        let values: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();

        let mean = values.iter().sum::<f64>() / n as f64;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        let beyond_two = values.iter().filter(|v| v.abs() > 2.0).count() as f64 / n as f64;

        // Standard errors: mean 0.0022, variance 0.0032, tail share 0.0005.
        assert!(mean.abs() < 0.012, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.016, "variance {variance}");
        assert!((beyond_two - 0.0455).abs() < 0.003, "share beyond 2 sigma {beyond_two}");
    }

    #[test]
    fn normal_uses_two_words() {
        let mut rng = SampleKey::new(4, 0, 0).rng(0);
        let mut copy = rng.clone();

        standard_normal(&mut rng);
        copy.next_u64();
        copy.next_u64();

        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn shuffle_covers_all_orders() {
        let mut counts = std::collections::HashMap::new();

        for index in 0..6000 {
            let mut rng = SampleKey::new(5, 0, index).rng(0);
            let mut items = [0u8, 1, 2];
            shuffle(&mut rng, &mut items);
            *counts.entry(items).or_insert(0u32) += 1;
        }

        // Each of the 6 orders: binomial(6000, 1/6), mean 1000, standard deviation 29.
        assert_eq!(counts.len(), 6, "{counts:?}");
        assert!(counts.values().all(|&c| (850..=1150).contains(&c)), "{counts:?}");
    }

    #[test]
    fn shuffle_short_slices() {
        let mut rng = SampleKey::new(6, 0, 0).rng(0);
        let mut copy = rng.clone();
        let mut empty: [u8; 0] = [];
        let mut one = [9u8];

        shuffle(&mut rng, &mut empty);
        shuffle(&mut rng, &mut one);

        assert_eq!(one, [9]);
        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn fill_u16_matches_words() {
        let mut rng = SampleKey::new(7, 0, 0).rng(0);
        let mut copy = rng.clone();
        let mut values = [0u16; 2500];

        fill_u16(&mut rng, &mut values);

        // 2500 values = 625 words of four little-endian 16-bit values each.
        for chunk in values.chunks(4) {
            let word = copy.next_u64();
            for (i, &value) in chunk.iter().enumerate() {
                assert_eq!(value, (word >> (16 * i)) as u16);
            }
        }
        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn fill_u16_odd_length_position() {
        let mut rng = SampleKey::new(8, 0, 0).rng(0);
        let mut copy = rng.clone();
        let mut values = [0u16; 5];

        fill_u16(&mut rng, &mut values);
        copy.next_u64();
        copy.next_u64();

        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn uniform_symmetric_levels() {
        let mut rng = SampleKey::new(9, 0, 0).rng(0);
        let mut values = vec![0f32; 100_000];

        fill_uniform_symmetric(&mut rng, &mut values);

        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
        let variance =
            values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(values.iter().all(|v| v.abs() < 1.0));
        // Standard errors: mean 0.0018, variance 0.0009.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((variance - 1.0 / 3.0).abs() < 0.005, "variance {variance}");
    }

    #[test]
    fn quantile_known_values() {
        let cases = [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.025, -1.959_963_984_540_054),
            (0.841_344_746_068_542_9, 1.0),
            (1e-6, -4.753_424_308_822_899),
            (0.999_999, 4.753_424_308_822_899),
        ];

        for (p, z) in cases {
            let found = normal_quantile(p);
            assert!((found - z).abs() < 1e-9, "quantile({p}) = {found}, expected {z}");
        }
    }
}
