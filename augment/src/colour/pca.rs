//! AlexNet "fancy PCA" lighting: a random shift of every pixel along the RGB principal axes.

use std::fmt;

use rand_chacha::rand_core::RngCore;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::invalid;
use crate::error::{Error, Result};
use crate::image::{ImageBuf, ImageRef};
use crate::op::{OpRng, Transform};
use crate::sample::standard_normal;

/// The principal axes of a dataset's RGB pixel distribution, in the layout of AlexNet and
/// fb.resnet.torch.
///
/// `values[k]` is eigenvalue `k` (descending) of the 3x3 covariance of (R, G, B) pixel values
/// measured in `[0, 1]` units, so a variance in `[0, 1]` units squared. `vectors[c][k]` is
/// component `c` (R, G, B) of the unit eigenvector `k`: the eigenvectors are the columns.
///
/// Serde: either the name of a preset (`"imagenet"`, see [`Eigen::PRESETS`]) or an object
/// `{"values": [..3], "vectors": [[..3], ..3]}`. A value equal to a preset serialises as its
/// name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eigen {
    /// Eigenvalues, descending: variances along each axis in `[0, 1]` units squared.
    pub values: [f32; 3],
    /// `vectors[c][k]`: component `c` (R, G, B) of eigenvector `k`.
    pub vectors: [[f32; 3]; 3],
}

impl Eigen {
    /// The ImageNet axes published with fb.resnet.torch (`datasets/imagenet.lua`) and used by
    /// its `Lighting` transform, computed there from a random subset of ImageNet training
    /// images.
    pub const IMAGENET: Eigen = Eigen {
        values: [0.2175, 0.0188, 0.0045],
        vectors: [
            [-0.5675, 0.7192, 0.4009],
            [-0.5808, -0.0045, -0.8140],
            [-0.5836, -0.6948, 0.4203],
        ],
    };

    /// Names accepted by [`Eigen::preset`] and by serde.
    pub const PRESETS: &'static [&'static str] = &["imagenet"];

    /// Returns the preset called `name`, or `None` for a name not in [`Eigen::PRESETS`].
    pub fn preset(name: &str) -> Option<Eigen> {
        match name {
            "imagenet" => Some(Eigen::IMAGENET),
            _ => None,
        }
    }

    /// Converts the PCA stored in a shard manifest to this layout.
    ///
    /// `eigenvalues` are the manifest's `rgb_eigenvalues`: variances of the RGB covariance in
    /// 0..255 units squared, descending. `eigenvectors_rows` is its `rgb_eigenvectors`, where
    /// row `k` is eigenvector `k`. The result has `values[k] = eigenvalues[k] / 255^2` and
    /// `vectors[c][k] = eigenvectors_rows[k][c]`. An eigenvector's sign does not matter,
    /// because the weight drawn for it is symmetric about 0.
    ///
    /// The published values are variances, not standard deviations: AlexNet's formula scales
    /// each eigenvector by its eigenvalue. The COCO constants that CornerNet's code ships in
    /// the same layout confirm the unit. Their eigenvalues (0.2142, 0.0182, 0.0034) sum to
    /// 0.2358, which is the sum of the squared channel standard deviations shipped with them
    /// (0.2886, 0.2741, 0.2781), the trace of the covariance. The ImageNet values split the variance
    /// 90 / 8 / 2 percent between the axes, as natural photos do, whereas read as standard
    /// deviations they would put 99.2 percent on the first axis.
    ///
    /// Eigenvalues down to `-1e-9` times the largest are rounding noise of the solver on a
    /// nearly grey dataset and become 0.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for a non-finite value, a clearly negative eigenvalue, or an
    /// eigenvector whose length differs from 1 by more than 1e-3.
    pub fn from_covariance(
        eigenvalues: [f64; 3],
        eigenvectors_rows: [[f64; 3]; 3],
    ) -> Result<Eigen> {
        let largest = eigenvalues.iter().fold(0.0f64, |max, &v| max.max(v));
        for &value in &eigenvalues {
            if !value.is_finite() || value < -1e-9 * largest {
                return Err(invalid(
                    "pca_lighting",
                    "eigenvalues",
                    eigenvalues,
                    "finite variances at least 0, in 0..255 units squared",
                ));
            }
        }
        for row in &eigenvectors_rows {
            let length = row.iter().map(|c| c * c).sum::<f64>().sqrt();
            if !length.is_finite() || (length - 1.0).abs() > 1e-3 {
                return Err(invalid(
                    "pca_lighting",
                    "eigenvectors",
                    eigenvectors_rows,
                    "three finite unit vectors, one per row",
                ));
            }
        }

        let values = eigenvalues.map(|v| (v.max(0.0) / (255.0 * 255.0)) as f32);
        let vectors =
            std::array::from_fn(|c| std::array::from_fn(|k| eigenvectors_rows[k][c] as f32));
        Ok(Eigen { values, vectors })
    }

    /// Checks that every value and component is finite and every eigenvalue at least 0.
    fn validate(&self) -> Result<()> {
        let finite = self.vectors.iter().flatten().all(|v| v.is_finite());
        if !finite || !self.values.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return Err(invalid(
                "pca_lighting",
                "eigen",
                self,
                "finite eigenvalues at least 0 and finite eigenvectors",
            ));
        }
        Ok(())
    }
}

/// The explicit form of [`Eigen`] in serde.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EigenFields {
    values: [f32; 3],
    vectors: [[f32; 3]; 3],
}

impl Serialize for Eigen {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if *self == Eigen::IMAGENET {
            return serializer.serialize_str("imagenet");
        }
        EigenFields { values: self.values, vectors: self.vectors }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Eigen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(EigenVisitor)
    }
}

/// Reads a preset name or the explicit fields.
struct EigenVisitor;

impl<'de> Visitor<'de> for EigenVisitor {
    type Value = Eigen;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a preset name (\"imagenet\") or an object with values and vectors")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> std::result::Result<Eigen, E> {
        Eigen::preset(name).ok_or_else(|| E::unknown_variant(name, Eigen::PRESETS))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Eigen, A::Error> {
        let fields = EigenFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Eigen { values: fields.values, vectors: fields.vectors })
    }
}

/// AlexNet PCA lighting on u8 HWC RGB images: adds one random colour offset to every pixel.
///
/// Draws `alpha_k = sigma * z_k` for `k = 0, 1, 2` in that order, each `z_k` one
/// [`standard_normal`] draw (two `next_u64` words), so six words per image. The offset of
/// channel `c` in 0..255 units is [`pca_offset`]: `255 * sum_k vectors[c][k] * alpha_k *
/// values[k]`. Each value becomes `clamp(round(v + offset_c), 0, 255)`, as
/// [`add_channel_offsets`] computes it.
///
/// The image must have 3 channels (R, G, B).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcaLighting {
    /// Standard deviation of each weight `alpha_k`, dimensionless. AlexNet used 0.1.
    #[serde(default = "default_sigma")]
    pub sigma: f32,
    /// The principal axes. Serde: `"imagenet"` or explicit values, see [`Eigen`].
    #[serde(default = "default_eigen")]
    pub eigen: Eigen,
}

fn default_sigma() -> f32 {
    0.1
}

fn default_eigen() -> Eigen {
    Eigen::IMAGENET
}

impl Default for PcaLighting {
    /// Sigma 0.1 with the ImageNet axes, the AlexNet and fb.resnet.torch setting.
    fn default() -> Self {
        Self { sigma: default_sigma(), eigen: default_eigen() }
    }
}

impl PcaLighting {
    /// Creates PCA lighting with weight standard deviation `sigma` along the axes `eigen`.
    pub fn new(sigma: f32, eigen: Eigen) -> Self {
        Self { sigma, eigen }
    }

    /// Checks that `sigma` is finite and at least 0 and the axes are finite.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] otherwise.
    pub fn validate(&self) -> Result<()> {
        if !(self.sigma.is_finite() && self.sigma >= 0.0) {
            return Err(invalid("pca_lighting", "sigma", self.sigma, "a finite value at least 0"));
        }
        self.eigen.validate()
    }

    /// Draws the three weights `alpha_k = sigma * z_k`, in order `k = 0, 1, 2`.
    ///
    /// # Errors
    ///
    /// The errors of [`PcaLighting::validate`], before any draw.
    pub fn draw_alphas<R: RngCore + ?Sized>(&self, rng: &mut R) -> Result<[f32; 3]> {
        self.validate()?;
        Ok(std::array::from_fn(|_| (f64::from(self.sigma) * standard_normal(rng)) as f32))
    }

    /// Draws the weights and returns the per-channel offsets in 0..255 units, for callers that
    /// add them elsewhere (to f32 pixels, for example). Same draws as
    /// [`PcaLighting::draw_alphas`].
    ///
    /// # Errors
    ///
    /// The errors of [`PcaLighting::validate`], before any draw.
    pub fn draw_offsets<R: RngCore + ?Sized>(&self, rng: &mut R) -> Result<[f32; 3]> {
        let alphas = self.draw_alphas(rng)?;
        Ok(pca_offset(&self.eigen, alphas))
    }
}

impl Transform for PcaLighting {
    fn name(&self) -> &'static str {
        "pca_lighting"
    }

    fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        Some((height, width))
    }

    fn transform(&self, image: ImageRef<'_>, rng: &mut OpRng) -> Result<ImageBuf> {
        let mut out = image.to_buf();
        self.transform_in_place(&mut out, rng)?;
        Ok(out)
    }

    fn transform_in_place(&self, image: &mut ImageBuf, rng: &mut OpRng) -> Result<()> {
        check_rgb(image.channels())?;
        let offsets = self.draw_offsets(rng)?;
        add_channel_offsets(image, offsets)
    }
}

/// Returns the RGB offset, in 0..255 units, of the weights `alphas`:
/// `255 * sum_k eigen.vectors[c][k] * alphas[k] * eigen.values[k]` for each channel `c`,
/// summed in f32 over `k = 0, 1, 2` in order.
pub fn pca_offset(eigen: &Eigen, alphas: [f32; 3]) -> [f32; 3] {
    std::array::from_fn(|c| {
        let terms = eigen.vectors[c].iter().zip(&alphas).zip(&eigen.values);
        let mut sum = 0.0f32;
        for ((component, alpha), value) in terms {
            sum += component * alpha * value;
        }
        255.0 * sum
    })
}

/// Adds `offsets[c]` (0..255 units) to channel `c` of every pixel of a u8 HWC RGB image:
/// `clamp(round(v + offsets[c]), 0, 255)`, halves rounded up.
///
/// Computed exactly as `clamp(v + floor(offsets[c] + 0.5), 0, 255)`: for an integer `v`,
/// `floor(v + o + 0.5) = v + floor(o + 0.5)`, so each channel gets one integer shift, applied
/// as a saturating add or subtract that the compiler turns into SIMD.
///
/// # Errors
///
/// [`Error::UnsupportedChannels`] unless the image has 3 channels, and
/// [`Error::InvalidParameter`] for a non-finite offset. The image is unchanged on error.
pub fn add_channel_offsets(image: &mut ImageBuf, offsets: [f32; 3]) -> Result<()> {
    check_rgb(image.channels())?;
    if !offsets.iter().all(|o| o.is_finite()) {
        return Err(invalid("pca_lighting", "offsets", offsets, "finite values"));
    }

    // 16 pixels = 48 bytes: a whole number of pixels and of 16-byte vectors.
    const LANES: usize = 48;
    let shifts = offsets.map(|o| (o + 0.5).floor().clamp(-255.0, 255.0) as i16);
    let add: [u8; LANES] = std::array::from_fn(|i| shifts[i % 3].max(0) as u8);
    let sub: [u8; LANES] = std::array::from_fn(|i| (-shifts[i % 3]).max(0) as u8);

    let mut chunks = image.data_mut().chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            chunk[i] = chunk[i].saturating_add(add[i]).saturating_sub(sub[i]);
        }
    }
    // The remainder is a whole number of pixels, so it starts at channel 0 like the pattern.
    for (i, value) in chunks.into_remainder().iter_mut().enumerate() {
        *value = value.saturating_add(add[i]).saturating_sub(sub[i]);
    }
    Ok(())
}

/// Checks that an image has the 3 channels PCA lighting works on.
fn check_rgb(channels: usize) -> Result<()> {
    if channels != 3 {
        return Err(Error::UnsupportedChannels {
            op: "pca_lighting",
            expected: "3 channels (RGB)",
            found: channels,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SampleKey;

    fn image(data: Vec<u8>, height: usize, width: usize) -> ImageBuf {
        ImageBuf::new(data, height, width, 3).unwrap()
    }

    /// The offset formula written with f64 and a matrix product, apart from `pca_offset`.
    fn naive_offset(eigen: &Eigen, alphas: [f32; 3]) -> [f64; 3] {
        std::array::from_fn(|c| {
            (0..3)
                .map(|k| {
                    255.0
                        * f64::from(eigen.vectors[c][k])
                        * f64::from(alphas[k])
                        * f64::from(eigen.values[k])
                })
                .sum()
        })
    }

    #[test]
    fn offset_matches_formula() {
        let alphas = [0.13, -0.07, 0.21];

        let found = pca_offset(&Eigen::IMAGENET, alphas);

        let expected = naive_offset(&Eigen::IMAGENET, alphas);
        for c in 0..3 {
            assert!((f64::from(found[c]) - expected[c]).abs() < 1e-4, "{found:?} {expected:?}");
        }
        // First axis only: every channel moves by 255 * alpha * value * component.
        let first = pca_offset(&Eigen::IMAGENET, [1.0, 0.0, 0.0]);
        assert!((first[0] - 255.0 * -0.5675 * 0.2175).abs() < 1e-4);
    }

    #[test]
    fn offsets_round_and_saturate() {
        // 17 pixels: one full 48-byte chunk and one pixel of remainder.
        let mut data = Vec::new();
        for i in 0..17u8 {
            data.extend_from_slice(&[i * 15, 250 - i, 3 + i]);
        }
        let offsets = [2.5, 7.6, -4.5];
        let mut out = image(data.clone(), 1, 17);

        add_channel_offsets(&mut out, offsets).unwrap();

        for (i, (&before, &after)) in data.iter().zip(out.data()).enumerate() {
            let exact = f64::from(before) + f64::from(offsets[i % 3]);
            let expected = (exact + 0.5).floor().clamp(0.0, 255.0) as u8;
            assert_eq!(after, expected, "byte {i}: {before} + {}", offsets[i % 3]);
        }
    }

    #[test]
    fn offsets_beyond_range_clamp() {
        let mut out = image(vec![0, 128, 255, 7, 8, 9], 2, 1);

        add_channel_offsets(&mut out, [1000.0, -1000.0, 0.4]).unwrap();

        assert_eq!(out.data(), &[255, 0, 255, 255, 0, 9]);
    }

    #[test]
    fn offsets_reject_bad_input() {
        let mut grey = ImageBuf::new(vec![5; 4], 2, 2, 1).unwrap();
        let mut rgb = image(vec![5; 3], 1, 1);

        let channels = add_channel_offsets(&mut grey, [1.0; 3]).unwrap_err();
        let nan = add_channel_offsets(&mut rgb, [f32::NAN, 0.0, 0.0]).unwrap_err();

        assert!(matches!(channels, Error::UnsupportedChannels { found: 1, .. }));
        assert!(matches!(nan, Error::InvalidParameter { parameter: "offsets", .. }));
        assert_eq!(rgb.data(), &[5, 5, 5]);
    }

    #[test]
    fn lighting_draws_six_words() {
        let lighting = PcaLighting::default();
        let mut rng = SampleKey::new(1, 0, 0).rng(0);
        let mut copy = rng.clone();
        let mut out = image(vec![100; 3 * 4], 2, 2);

        lighting.transform_in_place(&mut out, &mut rng).unwrap();

        let alphas = std::array::from_fn(|_| (0.1 * standard_normal(&mut copy)) as f32);
        let offsets = pca_offset(&Eigen::IMAGENET, alphas);
        let expected: Vec<u8> =
            (0..12).map(|i| (100.0 + f64::from(offsets[i % 3]) + 0.5).floor() as u8).collect();
        assert_eq!(out.data(), &expected[..]);
        assert_eq!(rng.next_u64(), copy.next_u64());
    }

    #[test]
    fn lighting_transform_matches_in_place() {
        let lighting = PcaLighting::new(0.5, Eigen::IMAGENET);
        let data: Vec<u8> = (0..5 * 7 * 3).map(|i| (i * 37 % 256) as u8).collect();
        let source = ImageRef::new(&data, 5, 7, 3).unwrap();
        let mut in_place = image(data.clone(), 5, 7);

        let copied = lighting.transform(source, &mut SampleKey::new(2, 0, 0).rng(3)).unwrap();
        lighting.transform_in_place(&mut in_place, &mut SampleKey::new(2, 0, 0).rng(3)).unwrap();

        assert_eq!(copied, in_place);
        assert_ne!(copied.data(), &data[..]);
    }

    #[test]
    fn lighting_rejects_bad_sigma() {
        let mut rng = SampleKey::new(0, 0, 0).rng(0);
        let mut out = image(vec![1, 2, 3], 1, 1);

        for sigma in [-0.1, f32::NAN, f32::INFINITY] {
            let error = PcaLighting::new(sigma, Eigen::IMAGENET)
                .transform_in_place(&mut out, &mut rng)
                .unwrap_err();
            assert!(matches!(error, Error::InvalidParameter { parameter: "sigma", .. }));
        }
        assert_eq!(out.data(), &[1, 2, 3]);
    }

    #[test]
    fn from_covariance_converts_units() {
        let rows = [[0.6, 0.6, 0.5], [0.7, -0.1, -0.7], [-0.38, 0.79, -0.48]];
        let rows = rows.map(|r: [f64; 3]| {
            let n = r.iter().map(|c| c * c).sum::<f64>().sqrt();
            r.map(|c| c / n)
        });

        let eigen = Eigen::from_covariance([14144.0, 1224.0, -1e-8], rows).unwrap();

        assert!((eigen.values[0] - 14144.0 / 65025.0).abs() < 1e-7);
        assert!((eigen.values[1] - 1224.0 / 65025.0).abs() < 1e-7);
        assert_eq!(eigen.values[2], 0.0);
        for (c, k) in [(0, 1), (2, 0), (1, 2)] {
            assert_eq!(eigen.vectors[c][k], rows[k][c] as f32, "component {c} of vector {k}");
        }
    }

    #[test]
    fn from_covariance_of_imagenet_form() {
        // The ImageNet axes, written as a manifest would store them.
        let values = Eigen::IMAGENET.values.map(|v| f64::from(v) * 65025.0);
        let rows = std::array::from_fn(|k| {
            std::array::from_fn(|c| f64::from(Eigen::IMAGENET.vectors[c][k]))
        });

        let eigen = Eigen::from_covariance(values, rows).unwrap();

        for k in 0..3 {
            assert!((eigen.values[k] - Eigen::IMAGENET.values[k]).abs() < 1e-7);
        }
        assert_eq!(eigen.vectors, Eigen::IMAGENET.vectors);
    }

    #[test]
    fn from_covariance_rejects_bad_input() {
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

        let negative = Eigen::from_covariance([10.0, -1.0, 0.0], identity).unwrap_err();
        let nan = Eigen::from_covariance([f64::NAN, 1.0, 0.0], identity).unwrap_err();
        let scaled = Eigen::from_covariance(
            [3.0, 2.0, 1.0],
            [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        );

        assert!(matches!(negative, Error::InvalidParameter { parameter: "eigenvalues", .. }));
        assert!(matches!(nan, Error::InvalidParameter { parameter: "eigenvalues", .. }));
        assert!(matches!(scaled, Err(Error::InvalidParameter { parameter: "eigenvectors", .. })));
    }

    #[test]
    fn serde_preset_and_values() {
        let preset: PcaLighting =
            serde_json::from_str(r#"{"sigma": 0.2, "eigen": "imagenet"}"#).unwrap();
        let defaults: PcaLighting = serde_json::from_str("{}").unwrap();
        let custom = PcaLighting::new(0.1, Eigen { values: [1.0, 0.5, 0.25], ..Eigen::IMAGENET });

        let json = serde_json::to_string(&custom).unwrap();

        assert_eq!(preset, PcaLighting::new(0.2, Eigen::IMAGENET));
        assert_eq!(defaults, PcaLighting::default());
        assert_eq!(serde_json::to_string(&preset).unwrap(), r#"{"sigma":0.2,"eigen":"imagenet"}"#);
        assert!(json.contains(r#""values":[1.0,0.5,0.25]"#), "{json}");
        assert_eq!(serde_json::from_str::<PcaLighting>(&json).unwrap(), custom);
    }

    #[test]
    fn serde_rejects_unknown() {
        let name = serde_json::from_str::<PcaLighting>(r#"{"eigen": "coco"}"#).unwrap_err();
        let field = serde_json::from_str::<Eigen>(
            r#"{"values": [1, 1, 1], "vectors": [[1,0,0],[0,1,0],[0,0,1]], "x": 1}"#,
        )
        .unwrap_err();
        let top = serde_json::from_str::<PcaLighting>(r#"{"sigma": 0.1, "alpha": 1}"#).unwrap_err();

        assert!(name.to_string().contains("unknown variant `coco`"), "{name}");
        assert!(field.to_string().contains("unknown field `x`"), "{field}");
        assert!(top.to_string().contains("unknown field `alpha`"), "{top}");
    }
}
