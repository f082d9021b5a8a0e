//! Statistics of the pixel ops over many fixed keys: PCA lighting variance along each axis,
//! Gaussian noise moments, erasing and cutout rates, colour jitter factor ranges and orders.

use expanse_augment::colour::{Adjustment, ColorJitter, Eigen, PcaLighting};
use expanse_augment::erase::{Cutout, RandomErasing};
use expanse_augment::noise::GaussianNoise;
use expanse_augment::{ImageBuf, SampleKey, Transform};

/// Sample variance of `values` about their mean.
fn variance(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
}

#[test]
fn pca_offsets_along_eigenvectors() {
    let lighting = PcaLighting::default();
    let eigen = Eigen::IMAGENET;
    let draws = 4000;
    let mut projections = vec![Vec::new(); 3];

    for index in 0..draws {
        let offsets = lighting.draw_offsets(&mut SampleKey::new(1, 0, index).rng(0)).unwrap();
        for (k, projection) in projections.iter_mut().enumerate() {
            let dot: f64 = (0..3).map(|c| f64::from(offsets[c] * eigen.vectors[c][k])).sum();
            projection.push(dot);
        }
    }

    // The published eigenvectors are orthonormal to 1e-3, so the projection on axis k is
    // 255 * alpha_k * value_k, variance (255 * sigma * value_k)^2. A sample variance over 4000
    // draws has a relative standard error of 2.2 percent.
    for (k, projection) in projections.iter().enumerate() {
        let expected = (255.0 * 0.1 * f64::from(eigen.values[k])).powi(2);
        let found = variance(projection);
        assert!((found / expected - 1.0).abs() < 0.1, "axis {k}: {found} vs {expected}");
    }
    let cross: f64 = projections[0].iter().zip(&projections[1]).map(|(a, b)| a * b).sum();
    let scale = (variance(&projections[0]) * variance(&projections[1])).sqrt() * draws as f64;
    assert!((cross / scale).abs() < 0.06, "axes 0 and 1 correlate: {}", cross / scale);
}

#[test]
fn pca_image_shift_matches_offsets() {
    // On a mid-grey image nothing clamps, so the per-image shift is the rounded offset.
    let lighting = PcaLighting::default();
    let mut first_axis = Vec::new();

    for index in 0..2000 {
        let mut image = ImageBuf::new(vec![128; 4 * 5 * 3], 4, 5, 3).unwrap();
        lighting.transform_in_place(&mut image, &mut SampleKey::new(2, 0, index).rng(0)).unwrap();
        let shift = image.data()[..3].iter().map(|&v| f64::from(v) - 128.0);
        let dot: f64 =
            shift.zip(0..3).map(|(s, c)| s * f64::from(Eigen::IMAGENET.vectors[c][0])).sum();
        assert!(image.data().chunks(3).all(|p| p == &image.data()[..3]), "one shift per image");
        first_axis.push(dot);
    }

    // Rounding adds variance up to 3 / 12 on top of (255 * 0.1 * 0.2175)^2 = 30.8.
    let found = variance(&first_axis);
    assert!((27.0..36.0).contains(&found), "first-axis variance {found}");
}

/// Mean and standard deviation of `out - 128` over all values.
fn noise_moments(out: &ImageBuf) -> (f64, f64) {
    let values: Vec<f64> = out.data().iter().map(|&v| f64::from(v) - 128.0).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (mean, variance(&values).sqrt())
}

#[test]
fn noise_mean_and_std() {
    // 20 is far enough from 128 that clamping is negligible (6.4 standard deviations).
    let noise = GaussianNoise::new(20.0);
    let image = ImageBuf::new(vec![128; 300 * 400 * 3], 300, 400, 3).unwrap();

    let out = noise.transform(image.as_image_ref(), &mut SampleKey::new(3, 0, 0).rng(0)).unwrap();
    let (mean, std) = noise_moments(&out);

    // 360,000 values: standard error of the mean 0.033, of the std 0.024. Rounding adds 1/12
    // to the variance: sqrt(400 + 1/12) = 20.002.
    assert!(mean.abs() < 0.15, "mean {mean}");
    assert!((std - 20.0).abs() < 0.12, "std {std}");
}

#[test]
fn noise_tail_shares() {
    let noise = GaussianNoise::new(10.0);
    let image = ImageBuf::new(vec![128; 500 * 400], 500, 400, 1).unwrap();

    let out = noise.transform(image.as_image_ref(), &mut SampleKey::new(4, 0, 0).rng(0)).unwrap();

    // |round(10 z)| >= 21 means |10 z| >= 20.5: probability 0.0404 for a normal.
    let beyond = out.data().iter().filter(|&&v| (i32::from(v) - 128).abs() >= 21).count();
    let share = beyond as f64 / out.data().len() as f64;
    assert!((share - 0.0404).abs() < 0.002, "share beyond 2.05 sigma {share}");
}

#[test]
fn noise_shared_across_channels() {
    let noise = GaussianNoise { std: 15.0, per_channel: false };
    let image = ImageBuf::new(vec![128; 100 * 120 * 3], 100, 120, 3).unwrap();

    let out = noise.transform(image.as_image_ref(), &mut SampleKey::new(5, 0, 0).rng(0)).unwrap();
    let (mean, std) = noise_moments(&out);

    assert!(out.data().chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(mean.abs() < 0.3, "mean {mean}");
    assert!((std - 15.0).abs() < 0.3, "std {std}");
}

#[test]
fn erasing_rate_and_area() {
    let erasing = RandomErasing { probability: 0.3, ..RandomErasing::default() };
    let draws = 6000;
    let mut erased = 0;
    let mut area = 0.0;

    for index in 0..draws {
        let mut rng = SampleKey::new(6, 0, index).rng(0);
        if let Some(window) = erasing.draw_window(100, 100, &mut rng).unwrap() {
            erased += 1;
            area += (window.height * window.width) as f64 / 10_000.0;
        }
    }

    // Binomial(6000, 0.3): standard deviation 35 draws. The area fraction is uniform in
    // [0.02, 0.33) before rounding the sides, mean 0.175.
    let rate = f64::from(erased) / draws as f64;
    let mean_area = area / f64::from(erased);
    assert!((rate - 0.3).abs() < 0.02, "rate {rate}");
    assert!((mean_area - 0.175).abs() < 0.01, "mean area {mean_area}");
}

#[test]
fn cutout_rate() {
    let cutout = Cutout::new(8, 0.6);
    let draws = 5000;
    let mut hits = 0;

    for index in 0..draws {
        let mut rng = SampleKey::new(7, 0, index).rng(0);
        if cutout.draw_window(32, 32, &mut rng).unwrap().is_some() {
            hits += 1;
        }
    }

    // Binomial(5000, 0.6): standard deviation 35 draws.
    let rate = f64::from(hits) / draws as f64;
    assert!((rate - 0.6).abs() < 0.025, "rate {rate}");
}

#[test]
fn jitter_factors_cover_ranges() {
    let jitter = ColorJitter::new(0.4, 0.3, 1.5);
    let ranges = [(0.6, 1.4), (0.7, 1.3), (0.0, 2.5)];
    let mut factors = vec![Vec::new(); 3];
    let mut orders = std::collections::HashMap::new();

    for index in 0..6000 {
        let steps = jitter.draw(&mut SampleKey::new(8, 0, index).rng(0)).unwrap();
        let order: Vec<Adjustment> = steps.iter().map(|s| s.adjustment).collect();
        *orders.entry(order).or_insert(0u32) += 1;
        for step in steps {
            factors[step.adjustment as usize].push(f64::from(step.factor));
        }
    }

    for (k, values) in factors.iter().enumerate() {
        let (low, high) = ranges[k];
        let min = values.iter().cloned().fold(f64::MAX, f64::min);
        let max = values.iter().cloned().fold(f64::MIN, f64::max);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert_eq!(values.len(), 6000, "change {k} drawn every time");
        assert!(min >= low, "change {k} min {min}");
        assert!(min < low + 0.01 * (high - low), "change {k} min {min}");
        assert!(max < high, "change {k} max {max}");
        assert!(max > high - 0.01 * (high - low), "change {k} max {max}");
        // Uniform mean (low + high) / 2; standard error (high - low) / sqrt(12 * 6000).
        assert!((mean - (low + high) / 2.0).abs() < 0.015 * (high - low), "change {k} mean {mean}");
    }
    // Each of the 6 orders: binomial(6000, 1/6), mean 1000, standard deviation 29.
    assert_eq!(orders.len(), 6, "{orders:?}");
    assert!(orders.values().all(|&n| (880..=1120).contains(&n)), "{orders:?}");
}
