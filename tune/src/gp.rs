//! A small Gaussian process regressor on the unit cube and the expected-improvement criterion.
//!
//! Sizes are those of a hyperparameter search (tens of points, a handful of dimensions), so the
//! linear algebra is a plain dense Cholesky factorisation, `O(n^3)` per fit.

use crate::{Error, Result};

/// Length scales tried by [`GaussianProcess::fit`], in unit-cube distance.
const LENGTH_SCALES: [f64; 8] = [0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 2.0];

/// Observation noise variances tried by [`GaussianProcess::fit`], relative to the variance of
/// the scores (the fit works on scores normalised to variance 1).
const NOISE_VARIANCES: [f64; 4] = [1e-6, 1e-4, 1e-2, 1e-1];

/// Jitter added to the diagonal, in steps, when a Cholesky factorisation fails.
const JITTERS: [f64; 4] = [0.0, 1e-8, 1e-6, 1e-4];

/// A Gaussian process fitted to scores at points of the unit cube (lower scores are better).
///
/// The model is a zero-mean process with a Matern 5/2 kernel of unit variance on normalised
/// scores, one length scale for all axes, and Gaussian observation noise. See the crate
/// documentation for the formulas.
#[derive(Clone, Debug)]
pub struct GaussianProcess {
    /// Observed points, each of length `dims`.
    x: Vec<Vec<f64>>,
    /// `K^-1 y` for the normalised scores `y`.
    alpha: Vec<f64>,
    /// Lower Cholesky factor of `K`, row-major `n * n`.
    cholesky: Vec<f64>,
    length_scale: f64,
    noise_variance: f64,
    log_marginal_likelihood: f64,
    /// Mean of the observed scores. Scores are normalised as `(score - score_mean) / score_scale`.
    score_mean: f64,
    score_scale: f64,
}

impl GaussianProcess {
    /// Fits the process to points `x` in the unit cube and their scores `y`.
    ///
    /// Scores are normalised to mean 0 and standard deviation 1 (scale 1 when they are all
    /// equal). Every pair of length scale and noise variance from a fixed grid is fitted and
    /// the pair with the highest log marginal likelihood is kept.
    ///
    /// # Errors
    ///
    /// [`Error::Gp`] when `x` is empty, `x` and `y` differ in length, the points differ in
    /// dimension or have none, a value is not finite, or no factorisation succeeds.
    pub fn fit(x: &[Vec<f64>], y: &[f64]) -> Result<GaussianProcess> {
        check_data(x, y)?;

        let n = y.len();
        let score_mean = y.iter().sum::<f64>() / n as f64;
        let variance = y.iter().map(|v| (v - score_mean).powi(2)).sum::<f64>() / n as f64;
        let score_scale = if variance.sqrt() > 1e-12 { variance.sqrt() } else { 1.0 };
        let normalised: Vec<f64> = y.iter().map(|v| (v - score_mean) / score_scale).collect();

        let mut best: Option<GaussianProcess> = None;
        for &length_scale in &LENGTH_SCALES {
            let kernel = kernel_matrix(x, length_scale);
            for &noise_variance in &NOISE_VARIANCES {
                let Some((cholesky, alpha, log_marginal_likelihood)) =
                    fit_one(&kernel, n, noise_variance, &normalised)
                else {
                    continue;
                };
                // Strictly greater keeps the first (shortest, least noisy) pair on ties.
                let better = best
                    .as_ref()
                    .is_none_or(|b| log_marginal_likelihood > b.log_marginal_likelihood);
                if better {
                    best = Some(GaussianProcess {
                        x: x.to_vec(),
                        alpha,
                        cholesky,
                        length_scale,
                        noise_variance,
                        log_marginal_likelihood,
                        score_mean,
                        score_scale,
                    });
                }
            }
        }
        best.ok_or_else(|| {
            Error::Gp(format!(
                "the kernel matrix of {n} points is not positive definite for any length scale \
                 in {LENGTH_SCALES:?}, even with jitter up to {:e}",
                JITTERS[JITTERS.len() - 1]
            ))
        })
    }

    /// Predicts the score at `x`: the posterior mean and standard deviation, in score units.
    ///
    /// The standard deviation is that of the underlying function, without observation noise,
    /// so it shrinks towards 0 at observed points.
    ///
    /// # Panics
    ///
    /// When `x` has a different dimension from the fitted points.
    pub fn predict(&self, x: &[f64]) -> (f64, f64) {
        let n = self.x.len();
        assert_eq!(
            x.len(),
            self.x[0].len(),
            "predict: point has {} coordinates, the process was fitted in {}",
            x.len(),
            self.x[0].len()
        );

        let k_star: Vec<f64> = self.x.iter().map(|xi| matern52(xi, x, self.length_scale)).collect();
        let mean: f64 = k_star.iter().zip(&self.alpha).map(|(k, a)| k * a).sum();

        // v = L^-1 k*, and the posterior variance is k(x, x) - v.v with k(x, x) = 1.
        let v = forward_substitute(&self.cholesky, n, &k_star);
        let variance = (1.0 - v.iter().map(|vi| vi * vi).sum::<f64>()).max(0.0);

        (self.score_mean + self.score_scale * mean, self.score_scale * variance.sqrt())
    }

    /// Returns the chosen length scale, in unit-cube distance.
    pub fn length_scale(&self) -> f64 {
        self.length_scale
    }

    /// Returns the chosen noise variance, relative to the variance of the scores.
    pub fn noise_variance(&self) -> f64 {
        self.noise_variance
    }

    /// Returns the log marginal likelihood of the normalised scores under the chosen model.
    pub fn log_marginal_likelihood(&self) -> f64 {
        self.log_marginal_likelihood
    }
}

/// Returns the expected improvement below `best` of a score predicted as normal with `mean` and
/// `sd`, less a margin `xi >= 0` that favours exploration. With `sd == 0` it is
/// `max(best - mean - xi, 0)`.
pub fn expected_improvement(mean: f64, sd: f64, best: f64, xi: f64) -> f64 {
    let improvement = best - mean - xi;
    if sd <= 0.0 || sd.is_nan() {
        return improvement.max(0.0);
    }
    let z = improvement / sd;
    // Far in the lower tail the two terms cancel, and rounding may leave a tiny negative value.
    (improvement * normal_cdf(z) + sd * normal_pdf(z)).max(0.0)
}

/// Returns the standard normal cumulative distribution function `Phi(z) = erfc(-z / sqrt 2) / 2`.
/// It uses the Chebyshev fit of `erfc` from Numerical Recipes, with a relative error below 1.2e-7
/// for all `z`.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Returns the standard normal density `phi(z) = exp(-z^2 / 2) / sqrt(2 pi)`.
pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Returns the complementary error function by the Chebyshev fit `erfcc` of Numerical Recipes.
/// Its stated fractional error is below 1.2e-7 everywhere, tails included, and
/// `normal_cdf_reference_values` checks it down to `Phi(-10)`.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

fn check_data(x: &[Vec<f64>], y: &[f64]) -> Result<()> {
    if x.is_empty() {
        return Err(Error::Gp("no observations to fit".into()));
    }
    if x.len() != y.len() {
        return Err(Error::Gp(format!(
            "{} points but {} scores, expected one score per point",
            x.len(),
            y.len()
        )));
    }
    let dims = x[0].len();
    if dims == 0 {
        return Err(Error::Gp("points have no coordinates".into()));
    }
    for (i, (xi, yi)) in x.iter().zip(y).enumerate() {
        if xi.len() != dims {
            return Err(Error::Gp(format!(
                "point {i} has {} coordinates, point 0 has {dims}",
                xi.len()
            )));
        }
        if let Some(bad) = xi.iter().find(|v| !v.is_finite()) {
            return Err(Error::Gp(format!(
                "point {i} has a coordinate {bad}, expected a finite number"
            )));
        }
        if !yi.is_finite() {
            return Err(Error::Gp(format!("score {i} is {yi}, expected a finite number")));
        }
    }
    Ok(())
}

/// Returns the Matern 5/2 kernel of unit variance, `(1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)`
/// with `r = |a - b| / length_scale`.
fn matern52(a: &[f64], b: &[f64], length_scale: f64) -> f64 {
    let squared: f64 = a.iter().zip(b).map(|(ai, bi)| (ai - bi) * (ai - bi)).sum();
    let r = squared.sqrt() / length_scale;
    let s = 5f64.sqrt() * r;
    (1.0 + s + s * s / 3.0) * (-s).exp()
}

fn kernel_matrix(x: &[Vec<f64>], length_scale: f64) -> Vec<f64> {
    let n = x.len();
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = matern52(&x[i], &x[j], length_scale);
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
    }
    k
}

/// Factors `kernel + noise I` (adding jitter when needed) and returns the factor, `alpha` and
/// the log marginal likelihood, or None when no factorisation succeeds.
fn fit_one(kernel: &[f64], n: usize, noise: f64, y: &[f64]) -> Option<(Vec<f64>, Vec<f64>, f64)> {
    for jitter in JITTERS {
        let mut k = kernel.to_vec();
        for i in 0..n {
            k[i * n + i] += noise + jitter;
        }
        let Some(l) = cholesky(&k, n) else { continue };

        // alpha = K^-1 y = L^-T (L^-1 y).
        let w = forward_substitute(&l, n, y);
        let alpha = backward_substitute_transposed(&l, n, &w);

        // log p(y) = -y.alpha / 2 - sum(ln L_ii) - n ln(2 pi) / 2, since ln det K = 2 sum ln L_ii.
        let data_fit: f64 = y.iter().zip(&alpha).map(|(a, b)| a * b).sum();
        let log_det_half: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
        let lml =
            -0.5 * data_fit - log_det_half - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        return Some((l, alpha, lml));
    }
    None
}

/// Returns the lower Cholesky factor of a symmetric `n * n` row-major matrix, or None when the
/// matrix is not positive definite in floating point.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - dot;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - dot) / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves `L v = b` for lower triangular `L`.
fn forward_substitute(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut v = vec![0.0; n];
    for i in 0..n {
        let dot: f64 = (0..i).map(|k| l[i * n + k] * v[k]).sum();
        v[i] = (b[i] - dot) / l[i * n + i];
    }
    v
}

/// Solves `L^T v = b` for lower triangular `L`.
fn backward_substitute_transposed(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut v = vec![0.0; n];
    for i in (0..n).rev() {
        let dot: f64 = (i + 1..n).map(|k| l[k * n + i] * v[k]).sum();
        v[i] = (b[i] - dot) / l[i * n + i];
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_d(points: &[f64]) -> Vec<Vec<f64>> {
        points.iter().map(|&p| vec![p]).collect()
    }

    #[test]
    fn gp_interpolates_observations() {
        let xs = [0.05f64, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95];
        let ys: Vec<f64> = xs.iter().map(|&x| (6.0 * x).sin() + 2.0).collect();
        let gp = GaussianProcess::fit(&one_d(&xs), &ys).unwrap();
        println!(
            "length scale {}, noise variance {}, log marginal likelihood {:.3}",
            gp.length_scale(),
            gp.noise_variance(),
            gp.log_marginal_likelihood()
        );
        for (&x, &y) in xs.iter().zip(&ys) {
            let (mean, sd) = gp.predict(&[x]);
            assert!((mean - y).abs() < 1e-2, "at {x}: mean {mean}, observed {y}");
            assert!(sd < 0.05, "at {x}: sd {sd}");
        }
        // Between observations of a smooth function, the mean stays close.
        let (mean, _) = gp.predict(&[0.425]);
        let truth = (6.0f64 * 0.425).sin() + 2.0;
        assert!((mean - truth).abs() < 0.05, "mean {mean}, truth {truth}");
    }

    #[test]
    fn gp_uncertain_far_from_data() {
        // A smooth rise over [0, 0.3]. The scores have mean 1.15 and standard deviation 0.112.
        let xs = [0.0, 0.1, 0.2, 0.3];
        let ys = [1.0, 1.1, 1.2, 1.3];
        let gp = GaussianProcess::fit(&one_d(&xs), &ys).unwrap();
        let (_, sd_near) = gp.predict(&[0.1]);
        let (mean_far, sd_far) = gp.predict(&[1.0]);
        println!("sd at an observation {sd_near:.4}, sd far away {sd_far:.4}");
        assert!(sd_near < 0.2 * sd_far, "near {sd_near}, far {sd_far}");
        assert!(sd_far > 0.05, "far {sd_far}");
        // Far from the data the prior takes over, so the mean reverts towards the mean score.
        assert!((mean_far - 1.15).abs() < 0.1, "mean far away {mean_far}");
    }

    #[test]
    fn gp_accepts_duplicates_and_constants() {
        let x = vec![vec![0.5, 0.5], vec![0.5, 0.5], vec![0.1, 0.9]];
        let gp = GaussianProcess::fit(&x, &[2.0, 2.0, 2.0]).unwrap();
        let (mean, sd) = gp.predict(&[0.3, 0.3]);
        assert!((mean - 2.0).abs() < 1e-9, "{mean}");
        assert!(sd.is_finite(), "{sd}");
    }

    #[test]
    fn gp_rejects_bad_data() {
        // Points, scores and the expected message.
        type Case = (Vec<Vec<f64>>, Vec<f64>, &'static str);
        let cases: [Case; 5] = [
            (vec![], vec![], "no observations"),
            (vec![vec![0.1]], vec![1.0, 2.0], "1 points but 2 scores"),
            (vec![vec![0.1], vec![0.1, 0.2]], vec![1.0, 2.0], "point 1 has 2 coordinates"),
            (vec![vec![0.1], vec![f64::NAN]], vec![1.0, 2.0], "point 1 has a coordinate NaN"),
            (vec![vec![0.1], vec![0.2]], vec![1.0, f64::INFINITY], "score 1 is inf"),
        ];
        for (x, y, expected) in cases {
            let message = GaussianProcess::fit(&x, &y).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn normal_cdf_reference_values() {
        // Reference values of Phi = 0.5 * erfc(-z / sqrt 2) from Python's math.erfc.
        let cases = [
            (0.0, 0.5),
            (1.0, 0.8413447460685429),
            (-1.0, 0.15865525393145707),
            (-3.0, 0.0013498980316300957),
            (-6.0, 9.865876450377012e-10),
            (-10.0, 7.619853024160593e-24),
        ];
        for (z, expected) in cases {
            let got = normal_cdf(z);
            let relative = (got - expected).abs() / expected;
            assert!(relative < 2e-7, "Phi({z}) = {got}, expected {expected}");
        }
        assert!((normal_pdf(0.0) - 0.3989422804014327).abs() < 1e-15);
    }

    #[test]
    fn ei_zero_without_uncertainty() {
        assert_eq!(expected_improvement(1.0, 0.0, 1.0, 0.0), 0.0);
        assert_eq!(expected_improvement(2.0, 0.0, 1.0, 0.0), 0.0);
        assert!((expected_improvement(0.25, 0.0, 1.0, 0.0) - 0.75).abs() < 1e-15);
        assert!((expected_improvement(0.25, 0.0, 1.0, 0.25) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn ei_increases_with_sd() {
        for mean in [0.8, 1.0, 1.5] {
            let mut previous = expected_improvement(mean, 0.0, 1.0, 0.0);
            for sd in [0.05, 0.1, 0.5, 1.0, 2.0] {
                let ei = expected_improvement(mean, sd, 1.0, 0.0);
                assert!(ei > previous, "mean {mean}, sd {sd}: {ei} <= {previous}");
                previous = ei;
            }
        }
        // At mean == best the closed form is sd * phi(0).
        let ei = expected_improvement(1.0, 0.3, 1.0, 0.0);
        assert!((ei - 0.3 * normal_pdf(0.0)).abs() < 1e-7, "{ei}");
    }
}
