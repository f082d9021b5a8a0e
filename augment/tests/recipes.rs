//! Recipes: serde, named recipes, views, outputs, composition draws, batches and the fused path.

use expanse_augment::pipeline::{child_rng, MeanImage, Output, Recipe, Step, Views};
use expanse_augment::{
    CropFlipNormalize, Error, HorizontalFlip, ImageBuf, ImageRef, Normalize, SampleKey, Transform,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Builds a non-square image with smooth gradients, edges and texture.
fn photo(height: usize, width: usize, channels: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(height * width * channels);
    for y in 0..height {
        for x in 0..width {
            for k in 0..channels {
                let gradient = (x * 255 / width.max(1) + y * 97 / height.max(1)) as u32;
                let edge = if (x / 17 + y / 23) % 2 == 0 { 40 } else { 0 };
                let texture = (x as u32 * 31 + y as u32 * 17 + k as u32 * 73) % 29;
                data.push(((gradient + edge + texture + 50 * k as u32) % 256) as u8);
            }
        }
    }
    data
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// FNV-1a over the f32 bit patterns, to record an output in a test.
fn fnv1a(values: &[f32]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in values.iter().flat_map(|v| v.to_bits().to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn run_in_pool(threads: usize, job: impl FnOnce() + Send) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(job);
}

#[test]
fn named_all_resolve_and_round_trip() {
    for name in Recipe::NAMES {
        let recipe = Recipe::named(name).unwrap();

        let json = serde_json::to_string_pretty(&recipe).unwrap();
        let back: Recipe = serde_json::from_str(&json).unwrap();

        assert_eq!(recipe.name.as_deref(), Some(name));
        assert_eq!(back, recipe, "{json}");
    }
}

#[test]
fn named_unknown_lists_names() {
    let error = Recipe::named("resnet").unwrap_err();

    let message = error.to_string();
    assert!(matches!(error, Error::InvalidParameter { op: "recipe", .. }), "{message}");
    assert!(message.contains("\"resnet\""), "{message}");
    assert!(message.contains("eval-multiscale"), "{message}");
}

#[test]
fn serde_reads_hand_written_json() {
    let json = r#"{
        "steps": [
            {"op": "random_crop", "height": 32, "width": 32, "padding": 4, "pad_mode": "zero"},
            {"op": "maybe", "probability": 0.5,
             "step": {"op": "horizontal_flip", "probability": 1.0}},
            {"op": "one_of", "steps": [
                {"op": "horizontal_flip", "probability": 0.0},
                {"op": "sequence", "steps": []}], "weights": [1.0, 2.0]}
        ],
        "views": {"kind": "ten_crop", "size": 24},
        "output": {"kind": "normalize", "mean": [0.0], "std": [1.0]}
    }"#;

    let recipe: Recipe = serde_json::from_str(json).unwrap();

    assert_eq!(recipe.name, None);
    assert_eq!(recipe.steps.len(), 3);
    assert_eq!(recipe.views, Views::TenCrop { size: 24 });
    assert_eq!(recipe.output, Output::Normalize(Normalize::new(vec![0.0], vec![1.0])));
    assert_eq!(recipe.steps[1], Step::maybe(0.5, Step::HorizontalFlip(HorizontalFlip::new(1.0))));
}

#[test]
fn serde_rejects_unknown_op_and_field() {
    let op = r#"{"steps": [{"op": "blur", "sigma": 1.0}]}"#;
    let field = r#"{"steps": [{"op": "horizontal_flip", "probability": 0.5, "p": 1}]}"#;
    let top = r#"{"steps": [], "augment": true}"#;

    let op = serde_json::from_str::<Recipe>(op).unwrap_err().to_string();
    let field = serde_json::from_str::<Recipe>(field).unwrap_err().to_string();
    let top = serde_json::from_str::<Recipe>(top).unwrap_err().to_string();

    assert!(op.contains("unknown variant `blur`"), "{op}");
    assert!(field.contains("unknown field `p`"), "{field}");
    assert!(top.contains("unknown field `augment`"), "{top}");
}

#[test]
fn serde_defaults_views_and_output() {
    let recipe: Recipe = serde_json::from_str(r#"{"steps": []}"#).unwrap();

    assert_eq!(recipe.views, Views::Single);
    assert_eq!(recipe.output, Output::None);
}

#[test]
fn output_shape_of_named_recipes() {
    let shape = |name: &str| Recipe::named(name).unwrap().output_shape(375, 500, 3);

    assert_eq!(shape("resnet-imagenet"), Some((1, 3, 224, 224)));
    assert_eq!(shape("inception"), Some((1, 3, 224, 224)));
    assert_eq!(shape("eval-center"), Some((1, 3, 224, 224)));
    assert_eq!(shape("eval-10crop"), Some((10, 3, 224, 224)));
    assert_eq!(shape("eval-multiscale"), None);
    assert_eq!(Recipe::named("cifar").unwrap().output_shape(32, 32, 3), Some((1, 3, 32, 32)));
}

#[test]
fn output_shapes_multiscale() {
    let recipe = Recipe::named("eval-multiscale").unwrap();

    let shapes = recipe.output_shapes(375, 500, 3).unwrap();

    let sides: Vec<usize> = shapes.iter().map(|&(_, h, _)| h).collect();
    assert_eq!(sides, [224, 224, 256, 256, 384, 384, 480, 480, 640, 640]);
    assert!(shapes.iter().all(|&(c, _, _)| c == 3));
    assert!(shapes.iter().all(|&(_, h, w)| h == w));
    assert_eq!(recipe.output_len(375, 500, 3), recipe.output_len(500, 333, 3));
}

#[test]
fn output_shape_random_size_is_none() {
    let recipe: Recipe = serde_json::from_str(
        r#"{"steps": [{"op": "scale_jitter", "min_shorter_side": 8, "max_shorter_side": 12}]}"#,
    )
    .unwrap();

    assert_eq!(recipe.output_shape(20, 30, 3), None);
    assert_eq!(recipe.output_len(20, 30, 3), None);
}

#[test]
fn cifar_equals_crop_flip_normalize() {
    let recipe = Recipe::named("cifar").unwrap();
    let Output::Normalize(normalize) = &recipe.output else { panic!("cifar normalises") };
    let reference = CropFlipNormalize::cifar(4, normalize.mean.clone(), normalize.std.clone());
    let data = photo(32, 32, 3);
    let image = ImageRef::new(&data, 32, 32, 3).unwrap();
    let mut ours = vec![0.0f32; 3 * 32 * 32];
    let mut theirs = vec![1.0f32; 3 * 32 * 32];

    for index in 0..200 {
        let key = SampleKey::new(3, 1, index);
        recipe.apply(image, key, &mut ours).unwrap();
        reference.apply(image, key, &mut theirs).unwrap();

        assert_eq!(bits(&ours), bits(&theirs), "key {key:?}");
    }
}

#[test]
fn cifar_same_key_recorded_hash() {
    let recipe = Recipe::named("cifar").unwrap();
    let data = photo(32, 32, 3);
    let image = ImageRef::new(&data, 32, 32, 3).unwrap();
    let mut out = vec![0.0f32; 16 * 3 * 32 * 32];
    let images = vec![image; 16];
    let keys: Vec<SampleKey> = (0..16).map(|i| SampleKey::new(42, 7, i)).collect();

    recipe.apply_batch(&images, &keys, &mut out).unwrap();

    assert_eq!(fnv1a(&out), CIFAR_HASH, "hash {:#x}", fnv1a(&out));
}

const CIFAR_HASH: u64 = 0x7487_c417_85da_9796;

#[test]
fn ten_crop_torchvision_order() {
    let (height, width) = (7, 9);
    let data: Vec<u8> = (0..height * width).map(|i| i as u8).collect();
    let image = ImageRef::new(&data, height, width, 1).unwrap();
    let pixel = |y: usize, x: usize| data[y * width + x];

    let views = Views::TenCrop { size: 4 }.cut(image).unwrap();

    // Top-left pixel of each view: corners and centre of the image, then of its mirror.
    let corners: Vec<u8> = views.iter().map(|view| view.data()[0]).collect();
    let mirrored = |y: usize, x: usize| pixel(y, width - 1 - x);
    assert_eq!(
        corners,
        [
            pixel(0, 0),
            pixel(0, 5),
            pixel(3, 0),
            pixel(3, 5),
            pixel(1, 2),
            mirrored(0, 0),
            mirrored(0, 5),
            mirrored(3, 0),
            mirrored(3, 5),
            mirrored(1, 2),
        ]
    );
    assert!(views.iter().all(|view| (view.height(), view.width()) == (4, 4)));
    assert_eq!(views[6].data()[..4], [pixel(0, 3), pixel(0, 2), pixel(0, 1), pixel(0, 0)]);
}

#[test]
fn ten_crop_rejects_large_size() {
    let data = photo(5, 8, 3);
    let image = ImageRef::new(&data, 5, 8, 3).unwrap();

    let error = Views::TenCrop { size: 6 }.cut(image).unwrap_err();

    assert!(matches!(error, Error::InvalidParameter { op: "ten_crop", .. }), "{error}");
    assert!(Views::TenCrop { size: 5 }.cut(image).is_ok());
}

#[test]
fn multiscale_views_mirror_pairs() {
    let data = photo(30, 40, 3);
    let image = ImageRef::new(&data, 30, 40, 3).unwrap();
    let views = Views::MultiScale {
        shorter_sides: vec![10, 30],
        crop: None,
        mirror: true,
        filter: Default::default(),
    };

    let cut = views.cut(image).unwrap();

    let sizes: Vec<(usize, usize)> = cut.iter().map(|v| (v.height(), v.width())).collect();
    assert_eq!(sizes, [(10, 10), (10, 10), (30, 30), (30, 30)]);
    let mut unmirrored = cut[3].clone();
    expanse_augment::flip_horizontal(&mut unmirrored);
    assert_eq!(unmirrored, cut[2]);
    // At the input's own scale the view is the centre square, columns 5..35.
    assert_eq!(cut[2].data()[..3], data[5 * 3..6 * 3]);
}

#[test]
fn mean_image_output_subtracts() {
    let first = photo(4, 6, 3);
    let second: Vec<u8> = first.iter().map(|v| v / 2).collect();
    let images =
        [ImageRef::new(&first, 4, 6, 3).unwrap(), ImageRef::new(&second, 4, 6, 3).unwrap()];
    let mean = MeanImage::accumulate(&images).unwrap();
    let recipe =
        Recipe { name: None, steps: vec![], views: Views::Single, output: Output::MeanImage };
    let mut out = vec![0.0f32; 2 * 72];

    recipe
        .apply_batch_with_mean(&images, &[SampleKey::new(0, 0, 0); 2], mean.clone(), &mut out)
        .unwrap();

    let expected = |y: usize, x: usize, k: usize| {
        let i = (y * 6 + x) * 3 + k;
        f32::from(first[i]) - (f32::from(first[i]) + f32::from(second[i])) / 2.0
    };
    assert_eq!(out[0], expected(0, 0, 0));
    assert_eq!(out[24 + 6 + 1], expected(1, 1, 1));
    assert_eq!(out[72], -expected(0, 0, 0));
    assert!(recipe.apply(images[0], SampleKey::new(0, 0, 0), &mut out[..72]).is_err());
}

#[test]
fn mean_image_rejects_mixed_shapes() {
    let a = photo(4, 6, 3);
    let b = photo(6, 4, 3);
    let images = [ImageRef::new(&a, 4, 6, 3).unwrap(), ImageRef::new(&b, 6, 4, 3).unwrap()];

    let error = MeanImage::accumulate(&images).unwrap_err();

    assert!(matches!(error, Error::ShapeMismatch { index: 1, .. }), "{error}");
}

#[test]
fn child_rng_four_words_little_endian() {
    let mut parent = SampleKey::new(1, 2, 3).rng(4);
    let mut copy = parent.clone();

    let mut child = child_rng(&mut parent);

    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(8) {
        chunk.copy_from_slice(&copy.next_u64().to_le_bytes());
    }
    assert_eq!(child.next_u64(), ChaCha8Rng::from_seed(seed).next_u64());
    assert_eq!(parent.next_u64(), copy.next_u64());
}

/// Builds a 1-row ramp that a flip visibly changes.
fn row_image() -> ImageBuf {
    ImageBuf::new((0..8).collect(), 1, 8, 1).unwrap()
}

fn flipped(step: &Step, index: u64) -> bool {
    let image = row_image();
    let output = step.transform(image.as_image_ref(), &mut SampleKey::new(9, 0, index).rng(0));
    output.unwrap().data()[0] == 7
}

#[test]
fn maybe_rate_near_probability() {
    let step = Step::maybe(0.3, Step::HorizontalFlip(HorizontalFlip::new(1.0)));
    let trials = 10_000;

    let count = (0..trials).filter(|&index| flipped(&step, index)).count();

    // Binomial(10000, 0.3): standard deviation 46; the bound is 5 of them.
    assert!((2770..=3230).contains(&count), "{count} of {trials}");
}

#[test]
fn one_of_follows_weights() {
    let step = Step::OneOf {
        steps: vec![
            Step::HorizontalFlip(HorizontalFlip::new(1.0)),
            Step::HorizontalFlip(HorizontalFlip::new(0.0)),
            Step::HorizontalFlip(HorizontalFlip::new(1.0)),
        ],
        weights: Some(vec![1.0, 3.0, 0.0]),
    };
    let trials = 8_000;

    let count = (0..trials).filter(|&index| flipped(&step, index)).count();

    // Binomial(8000, 0.25): standard deviation 39; the bound is 5 of them.
    assert!((1805..=2195).contains(&count), "{count} of {trials}");
}

#[test]
fn one_of_uniform_without_weights() {
    let step = Step::OneOf {
        steps: vec![
            Step::HorizontalFlip(HorizontalFlip::new(1.0)),
            Step::HorizontalFlip(HorizontalFlip::new(0.0)),
        ],
        weights: None,
    };

    let count = (0..8_000).filter(|&index| flipped(&step, index)).count();

    assert!((3780..=4220).contains(&count), "{count} of 8000");
}

#[test]
fn composition_rejects_bad_parameters() {
    let image = row_image();
    let mut rng = SampleKey::new(0, 0, 0).rng(0);
    let flip = || Step::HorizontalFlip(HorizontalFlip::new(0.5));
    let cases = [
        (Step::maybe(1.5, flip()), "maybe"),
        (Step::maybe(f64::NAN, flip()), "maybe"),
        (Step::OneOf { steps: vec![], weights: None }, "one_of"),
        (Step::OneOf { steps: vec![flip()], weights: Some(vec![1.0, 1.0]) }, "one_of"),
        (Step::OneOf { steps: vec![flip()], weights: Some(vec![-1.0]) }, "one_of"),
        (Step::OneOf { steps: vec![flip(), flip()], weights: Some(vec![0.0, 0.0]) }, "one_of"),
    ];

    for (step, op) in cases {
        let error = step.transform(image.as_image_ref(), &mut rng).unwrap_err();

        assert!(
            matches!(error, Error::InvalidParameter { op: found, .. } if found == op),
            "{step:?}: {error}"
        );
    }
}

#[test]
fn sequence_children_independent() {
    // Changing the first child's draws must not move the second child's crop.
    let crop = || {
        serde_json::from_str::<Step>(
            r#"{"op": "random_crop", "height": 3, "width": 5, "padding": 2, "pad_mode": "zero"}"#,
        )
        .unwrap()
    };
    let with = |probability: f64| Step::Sequence {
        steps: vec![
            Step::maybe(probability, Step::HorizontalFlip(HorizontalFlip::new(0.5))),
            crop(),
        ],
    };
    let data = photo(6, 8, 1);
    let image = ImageRef::new(&data, 6, 8, 1).unwrap();

    for index in 0..50 {
        let key = SampleKey::new(5, 0, index);
        let never = with(0.0).transform(image, &mut key.rng(0)).unwrap();
        // The sequence seeds its first child, then its second, from its own generator.
        let mut rng = key.rng(0);
        let _first = child_rng(&mut rng);
        let mut second = child_rng(&mut rng);
        let expected = crop().transform(image, &mut second).unwrap();

        assert_eq!(never, expected, "key {key:?}");
    }
}

#[test]
fn serial_equals_parallel() {
    // Images of different shapes share one output shape.
    let shapes = [(375, 500), (500, 375), (300, 300), (260, 700)];
    let data: Vec<Vec<u8>> = (0..12).map(|i| photo(shapes[i % 4].0, shapes[i % 4].1, 3)).collect();
    let images: Vec<ImageRef<'_>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| ImageRef::new(d, shapes[i % 4].0, shapes[i % 4].1, 3).unwrap())
        .collect();
    let keys: Vec<SampleKey> = (0..12).map(|i| SampleKey::new(11, 2, 100 + i)).collect();

    for name in ["resnet-imagenet", "eval-10crop", "inception"] {
        let recipe = Recipe::named(name).unwrap();
        let len = 12 * recipe.output_len(375, 500, 3).unwrap();
        let mut serial = vec![0.0f32; len];
        recipe.apply_batch(&images, &keys, &mut serial).unwrap();

        for threads in [1, 2, 3] {
            let mut parallel = vec![f32::NAN; len];
            run_in_pool(threads, || recipe.par_apply_batch(&images, &keys, &mut parallel).unwrap());

            assert_eq!(bits(&parallel), bits(&serial), "{name}, {threads} threads");
        }
    }
}

#[test]
fn batch_rejects_before_writing() {
    let recipe = Recipe::named("eval-center").unwrap();
    let a = photo(300, 400, 3);
    let b = photo(300, 400, 1);
    let images = [ImageRef::new(&a, 300, 400, 3).unwrap(), ImageRef::new(&b, 300, 400, 1).unwrap()];
    let keys = [SampleKey::new(0, 0, 0); 2];
    let mut out = vec![7.0f32; 2 * 3 * 224 * 224];

    let channels = recipe.apply_batch(&images, &keys, &mut out).unwrap_err();
    let count = recipe.apply_batch(&images[..1], &keys, &mut out).unwrap_err();
    let length = recipe.apply_batch(&images[..1], &keys[..1], &mut out).unwrap_err();

    assert_eq!(channels, Error::TableChannels { expected: 3, found: 1 });
    assert_eq!(count, Error::KeyCount { images: 1, keys: 2 });
    assert!(matches!(length, Error::OutputLength { .. }), "{length}");
    assert!(out.iter().all(|&v| v == 7.0));
}

/// Applies `recipe` through its plan and step by step (`augment`, then normalise), and
/// returns the largest difference in 0..255 units and the share of values that differ.
fn fused_difference(recipe: &Recipe, image: ImageRef<'_>, key: SampleKey) -> (f32, f64) {
    let Output::Normalize(normalize) = &recipe.output else { panic!("a normalising recipe") };
    let mut fused = vec![0.0f32; recipe.output_len(image.height(), image.width(), 3).unwrap()];
    recipe.apply(image, key, &mut fused).unwrap();

    let views = recipe.augment(image, key).unwrap();
    let mut stepwise = vec![0.0f32; fused.len()];
    normalize.apply(views[0].as_image_ref(), &mut stepwise).unwrap();

    let mut largest = 0.0f32;
    let mut differing = 0;
    for (k, (a, b)) in fused.iter().zip(&stepwise).enumerate() {
        let channel = k / (fused.len() / 3);
        let difference = (a - b).abs() * normalize.std[channel];
        largest = largest.max(difference);
        differing += usize::from(difference > 1e-3);
    }
    (largest, differing as f64 / fused.len() as f64)
}

#[test]
fn fused_close_to_stepwise() {
    for name in ["resnet-imagenet", "eval-center"] {
        let recipe = Recipe::named(name).unwrap();
        assert!(recipe.plan(3, None).unwrap().is_fused(), "{name}");

        for (index, (height, width)) in
            [(375, 500), (500, 375), (256, 256), (333, 480)].into_iter().enumerate()
        {
            let data = photo(height, width, 3);
            let image = ImageRef::new(&data, height, width, 3).unwrap();
            let key = SampleKey::new(1, 0, index as u64);

            let (largest, share) = fused_difference(&recipe, image, key);

            assert!(largest <= 1.0 + 1e-3, "{name} {height}x{width}: difference {largest}");
            assert!(share < 0.01, "{name} {height}x{width}: {share} of values differ");
        }
    }
}

#[test]
fn fused_keeps_plain_bilinear() {
    let mut recipe = Recipe::named("resnet-imagenet").unwrap();
    let Step::ScaleJitter(jitter) = &mut recipe.steps[0] else { panic!("scale jitter first") };
    jitter.antialias = false;
    assert!(recipe.plan(3, None).unwrap().is_fused());

    for (index, (height, width)) in [(375, 500), (640, 480)].into_iter().enumerate() {
        let data = photo(height, width, 3);
        let image = ImageRef::new(&data, height, width, 3).unwrap();
        let key = SampleKey::new(2, 0, index as u64);

        let (largest, share) = fused_difference(&recipe, image, key);

        assert!(largest <= 1.0 + 1e-3, "{height}x{width}: difference {largest}");
        assert!(share < 0.01, "{height}x{width}: {share} of values differ");
    }
}

#[test]
fn readme_recipe_json_matches_named() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```json\n").expect("a json block in README.md") + "```json\n".len();
    let end = start + readme[start..].find("```").expect("the end of the json block");

    let parsed: Recipe = serde_json::from_str(&readme[start..end]).unwrap();

    assert_eq!(parsed, Recipe::named("resnet-imagenet").unwrap());
}
