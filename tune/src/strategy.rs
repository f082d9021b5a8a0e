//! Proposal strategies: grid, random and Bayesian optimisation.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gp::{expected_improvement, GaussianProcess};
use crate::space::{Param, Point, Space, Value};
use crate::trials::Trial;
use crate::{Error, Result};

/// Points per axis of `grid` without a count.
pub const DEFAULT_GRID_POINTS: usize = 3;

/// Random candidates per Bayesian proposal of `bayes` without a count.
pub const DEFAULT_CANDIDATES: usize = 2000;

/// Method that [`propose`] uses to pick the next point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// Every point of [`Space::grid`] once, in order.
    Grid {
        /// Values per parameter (choices always give all their values).
        points_per_axis: usize,
    },
    /// Independent uniform draws in the unit cube (log-uniform for log ranges).
    Random,
    /// Random draws first, then the maximum of expected improvement under a Gaussian process.
    Bayes {
        /// Random trials before the first model-based one. 0 means `max(3, 2 * dims)`.
        initial: usize,
        /// Uniform random candidates scored per proposal. A quarter as many again are local
        /// perturbations of the best point so far.
        candidates: usize,
    },
}

impl Strategy {
    /// Returns the number of random trials a Bayesian search starts with in a space of `dims`
    /// parameters (0 for the other strategies).
    pub fn initial_trials(&self, dims: usize) -> usize {
        match self {
            Strategy::Bayes { initial: 0, .. } => (2 * dims).max(3),
            Strategy::Bayes { initial, .. } => *initial,
            _ => 0,
        }
    }
}

impl FromStr for Strategy {
    type Err = Error;

    /// Parses `grid` (3 points per axis), `grid:N`, `random`, `bayes` (`max(3, 2 * dims)` random
    /// trials first, 2000 candidates), `bayes:N` (N random trials first) or `bayes:N:C`
    /// (and C candidates).
    fn from_str(text: &str) -> Result<Strategy> {
        let invalid = |reason: String| Error::Strategy { text: text.to_string(), reason };
        let count = |part: &str, what: &str| -> Result<usize> {
            part.trim().parse::<usize>().map_err(|_| {
                invalid(format!("{what} must be a non-negative integer, got {:?}", part.trim()))
            })
        };

        let parts: Vec<&str> = text.trim().split(':').collect();
        match parts.as_slice() {
            ["grid"] => Ok(Strategy::Grid { points_per_axis: DEFAULT_GRID_POINTS }),
            ["grid", points] => {
                let points_per_axis = count(points, "points per axis")?;
                if points_per_axis == 0 {
                    return Err(invalid("points per axis must be at least 1".into()));
                }
                Ok(Strategy::Grid { points_per_axis })
            }
            ["random"] => Ok(Strategy::Random),
            ["bayes"] => Ok(Strategy::Bayes { initial: 0, candidates: DEFAULT_CANDIDATES }),
            ["bayes", initial] => Ok(Strategy::Bayes {
                initial: count(initial, "initial random trials")?,
                candidates: DEFAULT_CANDIDATES,
            }),
            ["bayes", initial, candidates] => {
                let initial = count(initial, "initial random trials")?;
                let candidates = count(candidates, "candidates")?;
                if candidates == 0 {
                    return Err(invalid("candidates must be at least 1".into()));
                }
                Ok(Strategy::Bayes { initial, candidates })
            }
            _ => Err(invalid(
                "expected grid, grid:N, random, bayes, bayes:INITIAL or bayes:INITIAL:CANDIDATES"
                    .into(),
            )),
        }
    }
}

impl fmt::Display for Strategy {
    /// Writes the text that [`Strategy::from_str`] reads back as the same strategy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Grid { points_per_axis } => write!(f, "grid:{points_per_axis}"),
            Strategy::Random => f.write_str("random"),
            Strategy::Bayes { initial: 0, candidates: DEFAULT_CANDIDATES } => f.write_str("bayes"),
            Strategy::Bayes { initial, candidates: DEFAULT_CANDIDATES } => {
                write!(f, "bayes:{initial}")
            }
            Strategy::Bayes { initial, candidates } => write!(f, "bayes:{initial}:{candidates}"),
        }
    }
}

/// Returns the next point to try, or None when a grid is exhausted.
///
/// `history` is every earlier trial of this search in order, failed ones included. The next
/// trial's index is `history.len()`, and the result depends only on the arguments:
///
/// - Grid returns the first point of [`Space::grid`] that no trial has tried yet.
/// - Random samples the space with a ChaCha8 generator seeded by `seed` on stream `index`.
/// - Bayes samples like Random for the first [`Strategy::initial_trials`] trials. After that it
///   fits a [`GaussianProcess`] to the trials with a finite score and returns the untried
///   candidate with the highest expected improvement (margin `xi` = 1% of the standard
///   deviation of the scores). The candidates are uniform draws plus perturbations of the best
///   point, all drawn from the trial's generator. Trials that failed (score None or not finite)
///   are not observations, but they count for the index and are not proposed again. With
///   fewer than 2 observations Bayes keeps sampling randomly.
///
/// # Errors
///
/// [`Error::Trial`] when a Bayesian search meets a trial whose point does not fit `space`, and
/// [`Error::Gp`] when the process cannot be fitted.
pub fn propose(
    space: &Space,
    strategy: &Strategy,
    seed: u64,
    history: &[Trial],
) -> Result<Option<Point>> {
    let index = history.len();
    match strategy {
        Strategy::Grid { points_per_axis } => {
            let mut grid = space.grid(*points_per_axis).into_iter();
            Ok(grid.find(|p| !history.iter().any(|t| same_point(&t.point, p))))
        }
        Strategy::Random => Ok(Some(space.sample(&mut trial_rng(seed, index)))),
        Strategy::Bayes { candidates, .. } => {
            let mut rng = trial_rng(seed, index);
            if index < strategy.initial_trials(space.dims()) {
                return Ok(Some(space.sample(&mut rng)));
            }
            propose_bayes(space, *candidates, &mut rng, history)
        }
    }
}

/// Returns the generator of trial `index`, stream `index` of a ChaCha8 generator keyed by
/// `seed`, so that a trial's draws do not depend on how many numbers earlier trials drew.
fn trial_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

fn propose_bayes(
    space: &Space,
    candidates: usize,
    rng: &mut ChaCha8Rng,
    history: &[Trial],
) -> Result<Option<Point>> {
    let mut tried = Vec::with_capacity(history.len());
    let mut x = Vec::new();
    let mut y = Vec::new();
    for trial in history {
        let unit = space
            .encode(&trial.point)
            .map_err(|e| Error::Trial { index: trial.index, reason: e.to_string() })?;
        if let Some(score) = trial.score.filter(|s| s.is_finite()) {
            x.push(unit.clone());
            y.push(score);
        }
        tried.push(unit);
    }
    if x.len() < 2 {
        return Ok(Some(space.sample(rng)));
    }

    let gp = GaussianProcess::fit(&x, &y)?;
    let (best_index, best) = y
        .iter()
        .copied()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("x.len() >= 2 was checked above");
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64).sqrt();
    let xi = 0.01 * sd;

    // Score each candidate at the point that will actually be tried, so integer and choice
    // coordinates are snapped to the encoding of the value they decode to.
    let pool = candidate_pool(space.dims(), candidates, &x[best_index], rng);
    let mut scored: Vec<(f64, f64, Vec<f64>)> = pool
        .into_iter()
        .map(|u| {
            let u = snap(space, &u);
            let (m, s) = gp.predict(&u);
            (expected_improvement(m, s, best, xi), s, u)
        })
        .collect();

    // Highest EI first. When EI underflows to 0 everywhere, the most uncertain point leads.
    // The sort is stable, so equal keys keep the candidate order and the result is deterministic.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let chosen = scored.iter().find(|(_, _, u)| !tried.contains(u)).unwrap_or(&scored[0]);
    Ok(Some(space.decode(&chosen.2)))
}

/// Draws `candidates` uniform points in the unit cube, then a quarter as many perturbations of
/// `best` with uniform offsets of half-width 0.01, 0.05 and 0.15 in turn, clamped to the cube.
fn candidate_pool(
    dims: usize,
    candidates: usize,
    best: &[f64],
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<f64>> {
    const HALF_WIDTHS: [f64; 3] = [0.01, 0.05, 0.15];

    let local = candidates.div_ceil(4);
    let mut pool = Vec::with_capacity(candidates + local);
    for _ in 0..candidates {
        pool.push((0..dims).map(|_| rng.random::<f64>()).collect());
    }
    for j in 0..local {
        let half_width = HALF_WIDTHS[j % HALF_WIDTHS.len()];
        let point = best
            .iter()
            .map(|&b| (b + half_width * (2.0 * rng.random::<f64>() - 1.0)).clamp(0.0, 1.0))
            .collect();
        pool.push(point);
    }
    pool
}

/// Moves integer and choice coordinates to the encoding of the value they decode to.
fn snap(space: &Space, u: &[f64]) -> Vec<f64> {
    space
        .params
        .iter()
        .zip(u)
        .map(|(param, &ui)| match param {
            Param::Float { .. } => ui,
            Param::Int { .. } | Param::Choice { .. } => param.to_unit(&param.from_unit(ui)),
        })
        .collect()
}

/// Returns whether two points have the same keys and values. Numbers match within a relative
/// tolerance of 1e-12, so that a point that went through a lossy text format still matches.
fn same_point(a: &Point, b: &Point) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(specs: &[&str]) -> Space {
        Space::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn trial(index: usize, point: Point, score: Option<f64>) -> Trial {
        Trial {
            index,
            point,
            score,
            fold_scores: Vec::new(),
            figures: Default::default(),
            note: String::new(),
        }
    }

    #[test]
    fn strategy_parse_and_display() {
        let cases = [
            ("grid", Strategy::Grid { points_per_axis: 3 }),
            ("grid:5", Strategy::Grid { points_per_axis: 5 }),
            ("random", Strategy::Random),
            ("bayes", Strategy::Bayes { initial: 0, candidates: 2000 }),
            ("bayes:5", Strategy::Bayes { initial: 5, candidates: 2000 }),
            ("bayes:5:300", Strategy::Bayes { initial: 5, candidates: 300 }),
        ];
        for (text, expected) in cases {
            let parsed: Strategy = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string().parse::<Strategy>().unwrap(), expected, "{text}");
        }
        for (text, expected) in [
            ("grid:0", "at least 1"),
            ("grid:x", "\"x\""),
            ("bayes:-1", "\"-1\""),
            ("bayes:3:0", "candidates must be at least 1"),
            ("annealing", "expected grid"),
        ] {
            let message = text.parse::<Strategy>().unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message:?} lacks {expected:?}");
            assert!(message.contains(&format!("{text:?}")), "{text}: {message:?}");
        }
    }

    #[test]
    fn initial_trials_default() {
        let bayes = Strategy::Bayes { initial: 0, candidates: 10 };
        assert_eq!(bayes.initial_trials(1), 3);
        assert_eq!(bayes.initial_trials(4), 8);
        assert_eq!(Strategy::Bayes { initial: 2, candidates: 10 }.initial_trials(4), 2);
    }

    #[test]
    fn grid_skips_tried_and_ends() {
        let space = space(&["a=lin:0..1", "m=choice:p,q"]);
        let strategy = Strategy::Grid { points_per_axis: 2 };
        let mut history = Vec::new();
        let mut seen = Vec::new();
        while let Some(point) = propose(&space, &strategy, 0, &history).unwrap() {
            assert!(!seen.contains(&point), "{point:?} proposed twice");
            seen.push(point.clone());
            history.push(trial(history.len(), point, None));
        }
        assert_eq!(seen, space.grid(2));

        // The tolerance is relative, so 1e-300 differs from the grid value 0 and the grid
        // point is still untried.
        let mut tiny = space.grid(2)[0].clone();
        tiny.insert("a".into(), Value::Float(1e-300));
        let first = propose(&space, &strategy, 0, &[trial(0, tiny, Some(1.0))]).unwrap();
        assert_eq!(first, Some(space.grid(2)[0].clone()));
        assert!(same_value(&Value::Float(0.1 + 0.2), &Value::Float(0.3)));

        // A tried point that went through a lossy float format still counts as tried.
        let mut lossy = space.grid(2)[2].clone();
        lossy.insert("a".into(), Value::Float(1.0 - 1e-15));
        let history: Vec<Trial> = space.grid(2)[..2]
            .iter()
            .cloned()
            .chain([lossy])
            .enumerate()
            .map(|(i, point)| trial(i, point, Some(1.0)))
            .collect();
        let next = propose(&space, &strategy, 0, &history).unwrap();
        assert_eq!(next, Some(space.grid(2)[3].clone()));
    }

    #[test]
    fn propose_is_deterministic() {
        let space = space(&["lr=log:0.001..1", "b=logint:16..512", "m=choice:x,y,z"]);
        for strategy in [Strategy::Random, Strategy::Bayes { initial: 3, candidates: 200 }] {
            let mut history = Vec::new();
            for i in 0..8 {
                let a = propose(&space, &strategy, 42, &history).unwrap().unwrap();
                let b = propose(&space, &strategy, 42, &history).unwrap().unwrap();
                assert_eq!(a, b, "{strategy}: trial {i}");
                let other = propose(&space, &strategy, 43, &history).unwrap().unwrap();
                assert_ne!(a, other, "{strategy}: trial {i} ignores the seed");
                let score = a["lr"].as_f64().unwrap().ln().abs();
                history.push(trial(i, a, Some(score)));
            }
        }
    }

    #[test]
    fn bayes_skips_failed_trials() {
        // Both trials failed, so Bayes has fewer than 2 observations and falls back to random
        // sampling of the trial's own stream.
        let space = space(&["x=lin:0..1"]);
        let strategy = Strategy::Bayes { initial: 1, candidates: 50 };
        let history = vec![
            trial(0, space.decode(&[0.5]), None),
            trial(1, space.decode(&[0.7]), Some(f64::NAN)),
        ];
        let bayes = propose(&space, &strategy, 9, &history).unwrap();
        let random = propose(&space, &Strategy::Random, 9, &history).unwrap();
        assert_eq!(bayes, random);
    }

    #[test]
    fn bayes_does_not_repeat_discrete_points() {
        let space = space(&["m=choice:a,b,c", "n=int:0..1"]);
        let strategy = Strategy::Bayes { initial: 2, candidates: 100 };
        let mut history = Vec::new();
        for i in 0..6 {
            let point = propose(&space, &strategy, 3, &history).unwrap().unwrap();
            if i >= 2 {
                assert!(!history.iter().any(|t: &Trial| t.point == point), "trial {i}: {point:?}");
            }
            let score = space.encode(&point).unwrap().iter().sum::<f64>();
            history.push(trial(i, point, Some(score)));
        }
    }

    #[test]
    fn bayes_rejects_foreign_points() {
        let space = space(&["x=lin:0..1"]);
        let mut foreign = Point::new();
        foreign.insert("y".into(), Value::Float(0.5));
        let history: Vec<Trial> =
            (0..4).map(|i| trial(i, foreign.clone(), Some(i as f64))).collect();
        let strategy = Strategy::Bayes { initial: 1, candidates: 10 };
        let message = propose(&space, &strategy, 0, &history).unwrap_err().to_string();
        assert!(message.starts_with("trial 0: point {\"y\":0.5}"), "{message}");
    }
}
