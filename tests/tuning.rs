//! The learning-rate search on real Fashion-MNIST images and a small ResNet.
//!
//! Needs Debian's `dataset-fashion-mnist` (installed by `scripts/test.sh`).

mod common;

use expanse::trainer::lr_find;

use common::{config, subset_shards};

#[test]
fn halving_finds_rate_between_known_ends() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset_shards(dir.path(), 2048, 100);
    let config = config(data, 1, 64);
    let steps = 24;

    // The known ends: a rate of 64 blows the loss up, and 0.05 trains.
    let diverging = lr_find::probe(&config, 64.0, steps).unwrap();
    assert!(!diverging.stable, "lr 64: {}", diverging.reason);
    let converging = lr_find::probe(&config, 0.05, steps).unwrap();
    assert!(converging.stable, "lr 0.05: {}", converging.reason);

    let mut seen = Vec::new();
    let halving = lr_find::halving(&config, 16.0, 0.05, steps, &mut |probe| {
        seen.push((probe.lr, probe.stable));
    })
    .unwrap();
    let found = halving.largest_stable.expect("a stable rate");
    assert!((0.05..64.0).contains(&found), "found {found}");
    // Every rate above the one found was tried and judged unstable.
    let above: Vec<f64> = seen.iter().filter(|(_, stable)| !stable).map(|(lr, _)| *lr).collect();
    assert_eq!(above.len(), seen.len() - 1, "{seen:?}");
    assert!(above.iter().all(|&lr| lr > found), "{seen:?}");
    assert_eq!(halving.recommended, Some(found / 2.0));
}
