//! Statistical tests of the geometric ops' draws, with fixed keys so that every run gets the
//! same values. Each bound sits about 5 standard deviations from the expected value.

use expanse_augment::geometry::{Affine, RandomResizedCrop, ScaleJitter};
use expanse_augment::{HorizontalFlip, ImageBuf, SampleKey, Transform, VerticalFlip};

/// Chi-square statistic of `counts` against a uniform expectation.
fn chi_square(counts: &[u32]) -> f64 {
    let expected = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / counts.len() as f64;
    counts.iter().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum()
}

#[test]
fn flip_rate_near_half() {
    // A 1 x 2 image shows whether the transform flipped it.
    let image = ImageBuf::new(vec![1, 2], 1, 2, 1).unwrap();
    let vertical_image = ImageBuf::new(vec![1, 2], 2, 1, 1).unwrap();
    let trials = 10_000u64;
    let (mut horizontal, mut vertical) = (0, 0);

    for index in 0..trials {
        let key = SampleKey::new(17, 0, index);
        let h = HorizontalFlip::new(0.5).transform(image.as_image_ref(), &mut key.rng(0)).unwrap();
        let v = VerticalFlip::new(0.5)
            .transform(vertical_image.as_image_ref(), &mut key.rng(1))
            .unwrap();
        horizontal += u32::from(h.data() == [2, 1]);
        vertical += u32::from(v.data() == [2, 1]);
    }

    // Binomial(10000, 0.5): mean 5000, standard deviation 50.
    assert!((4750..=5250).contains(&horizontal), "{horizontal} horizontal flips");
    assert!((4750..=5250).contains(&vertical), "{vertical} vertical flips");
}

#[test]
fn scale_jitter_uniform_over_range() {
    let jitter = ScaleJitter::new(256, 480);
    let per_value = 100;
    let mut counts = vec![0u32; 225];

    for index in 0..225 * per_value {
        let shorter = jitter.draw_shorter_side(&mut SampleKey::new(5, 0, index).rng(0)).unwrap();
        counts[shorter - 256] += 1;
    }

    // 224 degrees of freedom: mean 224, standard deviation sqrt(448) = 21.2.
    let statistic = chi_square(&counts);
    assert!(counts.iter().all(|&c| c > 0), "a value in 256..=480 was never drawn");
    assert!(statistic < 224.0 + 5.0 * 21.2, "chi-square {statistic}");
}

#[test]
fn scale_jitter_ends_reachable() {
    let jitter = ScaleJitter::new(256, 257);
    let mut seen = [0u32; 2];

    for index in 0..2000 {
        let shorter = jitter.draw_shorter_side(&mut SampleKey::new(6, 0, index).rng(0)).unwrap();
        seen[shorter - 256] += 1;
    }

    // Binomial(2000, 0.5): mean 1000, standard deviation 22.4.
    assert!((888..=1112).contains(&seen[0]), "{seen:?}");
}

#[test]
fn rotation_angle_uniform() {
    let affine = Affine::rotation(15.0);
    let mut counts = [0u32; 30];

    for index in 0..30_000 {
        let params = affine.draw(375, 500, &mut SampleKey::new(7, 0, index).rng(0));
        assert!((-15.0..=15.0).contains(&params.angle), "{params:?}");
        counts[((params.angle + 15.0) as usize).min(29)] += 1;
    }

    // 29 degrees of freedom: mean 29, standard deviation 7.6.
    let statistic = chi_square(&counts);
    assert!(statistic < 29.0 + 5.0 * 7.6, "chi-square {statistic}, counts {counts:?}");
}

#[test]
fn random_resized_crop_ratio_symmetric() {
    // The log aspect ratio is drawn uniformly in [ln 3/4, ln 4/3], symmetric about 0, and on a
    // square image the rejection of windows that do not fit is symmetric too.
    let op = RandomResizedCrop::new(224, 224);
    let draws = 20_000;
    let mut log_ratios = Vec::with_capacity(draws);
    let mut fallbacks = 0;

    for index in 0..draws as u64 {
        let window = op.draw_window(400, 400, &mut SampleKey::new(8, 0, index).rng(0));
        log_ratios.push((window.width as f64 / window.height as f64).ln());
        let area = (window.height * window.width) as f64 / (400.0 * 400.0);
        assert!(area >= 0.07, "area fraction {area}");
        fallbacks += u32::from(window.height == 400 && window.width == 400);
    }

    // The log ratio has standard deviation 0.576 / sqrt(12) = 0.166, so its mean over 20000
    // draws has standard deviation 0.0012. Rounding to whole pixels adds a little spread.
    let mean = log_ratios.iter().sum::<f64>() / draws as f64;
    assert!(mean.abs() < 0.01, "mean log ratio {mean}");
    assert!(fallbacks < 200, "{fallbacks} windows were the whole image");
}
