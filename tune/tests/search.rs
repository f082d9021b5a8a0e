//! End-to-end searches on test functions with known minima, and resumption from a trial log.

use expanse_tune::{propose, Point, Space, Strategy, Trial, TrialLog};

/// Trials per search. A search that never gets within tolerance counts as `BUDGET + 1`.
const BUDGET: usize = 40;
/// Seeds per strategy in a comparison.
const SEEDS: u64 = 20;

/// Candidates per Bayesian proposal, fewer than the default 2000 to keep the test fast.
const CANDIDATES: usize = 500;

fn space(specs: &[&str]) -> Space {
    Space::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn float(point: &Point, name: &str) -> f64 {
    point[name].as_f64().unwrap()
}

/// Returns `(x - 0.3)^2 + 0.1 sin(10 x)` on [0, 1], a bowl with ripples. Besides the global
/// minimum near 0.442 it has a local minimum at the boundary x = 0.
fn rippled_bowl(point: &Point) -> f64 {
    let x = float(point, "x");
    (x - 0.3).powi(2) + 0.1 * (10.0 * x).sin()
}

/// Returns the Branin function on x1 in [-5, 10], x2 in [0, 15], which has three global minima
/// of 0.397887.
fn branin(point: &Point) -> f64 {
    let (x1, x2) = (float(point, "x1"), float(point, "x2"));
    let pi = std::f64::consts::PI;
    let b = 5.1 / (4.0 * pi * pi);
    let c = 5.0 / pi;
    let t = 1.0 / (8.0 * pi);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// Runs one search and returns the 1-based number of the first trial within `tolerance` of
/// `minimum`, or `BUDGET + 1` when none is.
fn trials_to_find(
    space: &Space,
    strategy: &Strategy,
    seed: u64,
    f: fn(&Point) -> f64,
    minimum: f64,
    tolerance: f64,
) -> usize {
    let mut history: Vec<Trial> = Vec::new();
    for index in 0..BUDGET {
        let point = propose(space, strategy, seed, &history).unwrap().unwrap();
        let score = f(&point);
        if score - minimum <= tolerance {
            return index + 1;
        }
        history.push(Trial {
            index,
            point,
            score: Some(score),
            fold_scores: Vec::new(),
            figures: Default::default(),
            note: String::new(),
        });
    }
    BUDGET + 1
}

/// Returns the mean number of trials to find the minimum over `SEEDS` seeds and the number of
/// seeds that missed it, for Bayes and then for random search.
fn compare(
    space: &Space,
    f: fn(&Point) -> f64,
    minimum: f64,
    tolerance: f64,
) -> ((f64, usize), (f64, usize)) {
    let bayes = Strategy::Bayes { initial: 0, candidates: CANDIDATES };
    let summary = |strategy: &Strategy| {
        let counts: Vec<usize> = (0..SEEDS)
            .map(|seed| trials_to_find(space, strategy, seed, f, minimum, tolerance))
            .collect();
        let mean = counts.iter().sum::<usize>() as f64 / SEEDS as f64;
        let misses = counts.iter().filter(|&&c| c > BUDGET).count();
        (mean, misses)
    };
    (summary(&bayes), summary(&Strategy::Random))
}

/// Returns the minimum of `rippled_bowl`, found by a scan of 1,000,001 points.
fn rippled_bowl_minimum() -> f64 {
    let space = space(&["x=lin:0..1"]);
    (0..=1_000_000)
        .map(|i| rippled_bowl(&space.decode(&[i as f64 / 1e6])))
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn bayes_beats_random_1d() {
    let minimum = rippled_bowl_minimum();
    // 2.6% of [0, 1] lies within 0.001 of the minimum, so random search needs about 38 trials.
    let ((bayes, bayes_misses), (random, random_misses)) =
        compare(&space(&["x=lin:0..1"]), rippled_bowl, minimum, 1e-3);
    println!(
        "1-D rippled bowl, minimum {minimum:.6}, tolerance 0.001, {SEEDS} seeds, budget \
         {BUDGET}: mean trials Bayes {bayes:.2} ({bayes_misses} misses), random {random:.2} \
         ({random_misses} misses)"
    );
    assert!(bayes < random, "Bayes {bayes}, random {random}");
}

#[test]
fn bayes_beats_random_branin() {
    // 0.19% of the domain lies within 0.1 of the minimum, so random search mostly misses.
    let space = space(&["x1=lin:-5..10", "x2=lin:0..15"]);
    let ((bayes, bayes_misses), (random, random_misses)) = compare(&space, branin, 0.397887, 0.1);
    println!(
        "2-D Branin, minimum 0.397887, tolerance 0.1, {SEEDS} seeds, budget {BUDGET}: mean \
         trials Bayes {bayes:.2} ({bayes_misses} misses), random {random:.2} ({random_misses} \
         misses)"
    );
    assert!(bayes < random, "Bayes {bayes}, random {random}");
}

/// Scores a point by Branin, except that every fourth trial fails, to check that failures keep
/// their place when a search resumes.
fn scored_trial(index: usize, point: Point) -> Trial {
    let score = if index % 4 == 3 { None } else { Some(branin(&point)) };
    Trial {
        index,
        score,
        fold_scores: vec![score.unwrap_or(f64::NAN)],
        figures: [("x1".to_string(), float(&point, "x1"))].into(),
        note: if score.is_none() { "diverged".into() } else { String::new() },
        point,
    }
}

/// Runs `count` trials of a search, appending each to `log` and reloading the history from it
/// before every proposal, as a resumed search does.
fn run_logged(space: &Space, strategy: &Strategy, seed: u64, log: &TrialLog, count: usize) {
    for _ in 0..count {
        let history = log.load().unwrap();
        let point = propose(space, strategy, seed, &history).unwrap().unwrap();
        let trial = scored_trial(history.len(), point);
        log.append(&trial).unwrap();
    }
}

#[test]
fn resumed_search_matches_uninterrupted() {
    let space = space(&["x1=lin:-5..10", "x2=lin:0..15", "m=choice:a,b", "n=logint:16..512"]);
    let strategy = Strategy::Bayes { initial: 4, candidates: 200 };
    let dir = tempfile::tempdir().unwrap();

    let whole = TrialLog::open(&dir.path().join("whole.jsonl")).unwrap();
    run_logged(&space, &strategy, 11, &whole, 14);

    // The interrupted run stops after 9 trials. A new TrialLog continues it, as a restarted
    // process would.
    let path = dir.path().join("resumed.jsonl");
    run_logged(&space, &strategy, 11, &TrialLog::open(&path).unwrap(), 9);
    run_logged(&space, &strategy, 11, &TrialLog::open(&path).unwrap(), 5);

    let whole = whole.load().unwrap();
    let resumed = TrialLog::open(&path).unwrap().load().unwrap();
    assert_eq!(whole.len(), 14);
    assert_eq!(resumed.len(), 14);
    for (a, b) in whole.iter().zip(&resumed) {
        assert_eq!(a.point, b.point, "trial {}", a.index);
    }

    // A history that never went through the log gives the same points.
    let mut memory: Vec<Trial> = Vec::new();
    for logged in &whole {
        let point = propose(&space, &strategy, 11, &memory).unwrap().unwrap();
        assert_eq!(point, logged.point, "trial {}", logged.index);
        memory.push(scored_trial(memory.len(), point));
    }
}
