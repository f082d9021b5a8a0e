//! Elastic distortion: coarse-grid accuracy against exact smoothing, axis handling on
//! non-square images, identity at alpha 0 and the size of the drawn displacements.

use expanse_augment::elastic::{remap, Elastic, ElasticField, Smoothing};
use expanse_augment::geometry::Fill;
use expanse_augment::sample::fill_uniform_symmetric;
use expanse_augment::{ImageBuf, ImageRef, SampleKey, Transform};

/// A non-square RGB image whose neighbouring values all differ.
fn test_image(height: usize, width: usize) -> ImageBuf {
    let data = (0..height * width * 3).map(|i| ((i * 7 + i / 97) % 256) as u8).collect();
    ImageBuf::new(data, height, width, 3).unwrap()
}

/// Uniform noise for a `height` x `width` field from a fixed key.
fn noise(height: usize, width: usize, index: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SampleKey::new(11, 0, index).rng(0);
    let (mut x, mut y) = (vec![0.0; height * width], vec![0.0; height * width]);
    fill_uniform_symmetric(&mut rng, &mut x);
    fill_uniform_symmetric(&mut rng, &mut y);
    (x, y)
}

/// RMS and maximum of `fast - exact`, both relative to the standard deviation of `exact`.
fn relative_error(fast: &[f32], exact: &[f32]) -> (f64, f64) {
    let n = exact.len() as f64;
    let mean = exact.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let variance = exact.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let differences = fast.iter().zip(exact).map(|(&f, &e)| f64::from(f) - f64::from(e));
    let (squares, max) = differences.fold((0.0, 0.0f64), |(s, m), d| (s + d * d, m.max(d.abs())));
    let std = variance.sqrt();
    ((squares / n).sqrt() / std, max / std)
}

#[test]
fn coarse_grid_accuracy() {
    // Bounds sit about 1.5 times above the values measured on these fixed keys.
    let cases = [(4.0, 0.004, 0.022), (6.0, 0.005, 0.025), (9.0, 0.005, 0.025), (2.0, 0.0, 0.0)];

    for (sigma, rms_bound, max_bound) in cases {
        for index in 0..3 {
            let (x, y) = noise(224, 224, index);
            let smooth = |smoothing| {
                ElasticField::from_noise(&x, &y, 224, 224, 34.0, sigma, smoothing).unwrap()
            };
            let (fast, exact) = (smooth(Smoothing::CoarseGrid), smooth(Smoothing::Exact));

            for (axis, f, e) in [("dx", &fast.dx, &exact.dx), ("dy", &fast.dy, &exact.dy)] {
                let (rms, max) = relative_error(f, e);
                println!("sigma {sigma} key {index} {axis}: RMS {rms:.5}, max {max:.5}");
                assert!(rms <= rms_bound, "sigma {sigma} {axis}: RMS {rms} above {rms_bound}");
                assert!(max <= max_bound, "sigma {sigma} {axis}: max {max} above {max_bound}");
            }
        }
    }
}

#[test]
fn alpha_zero_is_identity() {
    let image = test_image(37, 53);

    for smoothing in [Smoothing::Exact, Smoothing::CoarseGrid] {
        for fill in [Fill::Constant(9), Fill::Edge, Fill::Reflect] {
            let op = Elastic { smoothing, fill, ..Elastic::new(0.0, 4.0) };
            let out = op.transform(image.as_image_ref(), &mut SampleKey::new(1, 0, 0).rng(0));
            assert_eq!(out.unwrap(), image, "{smoothing:?} {fill:?}");
        }
    }
}

#[test]
fn dx_only_moves_columns() {
    // Rows of constant value: any horizontal resampling keeps them, any vertical mixes them.
    let (height, width) = (37, 53);
    let rows: Vec<u8> = (0..height).flat_map(|y| vec![(y * 6 + 20) as u8; width * 3]).collect();
    let image = ImageRef::new(&rows, height, width, 3).unwrap();
    let (x, _) = noise(height, width, 4);
    let zeros = vec![0.0; height * width];

    let field = ElasticField::from_noise(&x, &zeros, height, width, 34.0, 4.0, Smoothing::Exact);
    let field = field.unwrap();
    let out = remap(image, &field, Fill::Edge).unwrap();

    assert!(field.dy.iter().all(|&d| d == 0.0));
    assert!(field.dx.iter().any(|&d| d.abs() > 1.0), "the field moves columns by over 1 pixel");
    assert_eq!(out.data(), &rows[..]);
}

#[test]
fn dy_only_moves_rows() {
    // Columns of constant value, the transposed check.
    let (height, width) = (37, 53);
    let columns: Vec<u8> = (0..height * width).flat_map(|i| [(i % width * 4) as u8; 3]).collect();
    let image = ImageRef::new(&columns, height, width, 3).unwrap();
    let (_, y) = noise(height, width, 5);
    let zeros = vec![0.0; height * width];

    let field = ElasticField::from_noise(&zeros, &y, height, width, 34.0, 4.0, Smoothing::Exact);
    let out = remap(image, &field.unwrap(), Fill::Edge).unwrap();

    assert_eq!(out.data(), &columns[..]);
}

#[test]
fn shift_follows_field_sign() {
    // dx = +1 reads the pixel to the right; dy = +1 reads the pixel below.
    let image = test_image(5, 8);
    let right = remap(image.as_image_ref(), &ElasticField::constant(5, 8, 1.0, 0.0), Fill::Edge);
    let below = remap(image.as_image_ref(), &ElasticField::constant(5, 8, 0.0, 1.0), Fill::Edge);

    let (right, below) = (right.unwrap(), below.unwrap());
    let data = image.data();
    assert_eq!(&right.data()[..3], &data[3..6]);
    assert_eq!(&below.data()[..3], &data[8 * 3..8 * 3 + 3]);
}

#[test]
fn displacement_size_matches_theory() {
    // Uniform(-1, 1) noise has variance 1/3; a Gaussian of std sigma keeps the fraction
    // sum(w^2) of it per axis, so far from the border the field std is alpha * sqrt(s / 3).
    let (size, alpha, sigma) = (160, 34.0, 4.0);
    let field = ElasticField::draw(
        size,
        size,
        alpha,
        sigma,
        Smoothing::Exact,
        &mut SampleKey::new(3, 0, 0).rng(0),
    )
    .unwrap();

    let radius = (4.0 * sigma + 0.5) as i64;
    let weights: Vec<f64> =
        (-radius..=radius).map(|d| (-0.5 * (d as f64 / sigma as f64).powi(2)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let one_axis: f64 = weights.iter().map(|w| (w / total).powi(2)).sum();
    let expected = f64::from(alpha) * (one_axis * one_axis / 3.0).sqrt();

    let margin = radius as usize;
    let interior: Vec<f64> = (margin..size - margin)
        .flat_map(|y| (margin..size - margin).map(move |x| y * size + x))
        .flat_map(|i| [f64::from(field.dx[i]), f64::from(field.dy[i])])
        .collect();
    let found = (interior.iter().map(|v| v * v).sum::<f64>() / interior.len() as f64).sqrt();

    // One 160x160 field contains about 100 independent patches of the smoothed noise, so the
    // sample std scatters by several percent.
    assert!((found / expected - 1.0).abs() < 0.15, "std {found:.3} px, expected {expected:.3}");
}

#[test]
fn one_pixel_and_thin_images() {
    for (height, width, channels) in [(1, 1, 1), (1, 9, 3), (7, 1, 4)] {
        let data: Vec<u8> = (0..height * width * channels).map(|i| (i * 13) as u8).collect();
        let image = ImageRef::new(&data, height, width, channels).unwrap();

        for smoothing in [Smoothing::Exact, Smoothing::CoarseGrid] {
            let op = Elastic { smoothing, fill: Fill::Reflect, ..Elastic::simard() };
            let out = op.transform(image, &mut SampleKey::new(6, 0, 0).rng(0)).unwrap();
            assert_eq!((out.height(), out.width(), out.channels()), (height, width, channels));
        }
    }
}

#[test]
fn same_key_same_bytes() {
    let image = test_image(30, 41);
    let op = Elastic::simard();

    let first = op.transform(image.as_image_ref(), &mut SampleKey::new(7, 1, 2).rng(3)).unwrap();
    let second = op.transform(image.as_image_ref(), &mut SampleKey::new(7, 1, 2).rng(3)).unwrap();
    let other = op.transform(image.as_image_ref(), &mut SampleKey::new(7, 1, 3).rng(3)).unwrap();

    assert_eq!(first, second);
    assert_ne!(first, other);
}
