"""Write the golden reference outputs that augment/tests/golden.rs compares against.

Builds a few fixed, seeded test images (gradients, hard edges, texture and pixel noise, on
non-square RGB and grey shapes) and runs them through Pillow, OpenCV, torchvision and scipy
with fixed parameters. Each array is written as raw little-endian bytes under data/ (u8 HWC
images, f32 fields and tensors). index.json lists every case: the op, its parameters, the
reference library call, the output file and shape, and the tolerance with the reason for it.

Run from any directory, with the versions recorded in index.json:

    /tmp/pyref/bin/python augment/tests/golden/make_golden.py

Rerunning with the same library versions rewrites byte-identical files. The Rust tests read
only the files, so `cargo test` needs no Python.
"""

import json
import math
from pathlib import Path

import albumentations
import cv2
import numpy as np
import PIL
import scipy
import torch
import torchvision
import torchvision.transforms.v2.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2.functional import _color as torchvision_color
from torchvision.transforms.v2.functional._geometry import _get_inverse_affine_matrix

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

INPUTS = {}
CASES = []


# ----------------------------------------------------------------------------------------------
# Files and the index


def write_array(name, array):
    """Write `array` as raw little-endian bytes to data/NAME.u8 or data/NAME.f32."""
    if array.dtype == np.uint8:
        suffix = "u8"
    elif array.dtype == np.float32:
        suffix = "f32"
    else:
        raise TypeError(f"{name}: unsupported dtype {array.dtype}")
    path = DATA / f"{name}.{suffix}"
    path.write_bytes(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return {"file": f"data/{path.name}", "dtype": suffix, "shape": list(array.shape)}


def add_case(name, op, input_name, params, reference, output, max_abs, mean_abs, reason, **extra):
    """Record one case: `output` is the reference array, compared with the stated tolerance."""
    case = {
        "name": name,
        "op": op,
        "input": input_name,
        "params": params,
        "reference": reference,
        "output": None if output is None else write_array(name, output),
        "tolerance": {"max_abs": max_abs, "mean_abs": mean_abs, "reason": reason},
    }
    for key, value in extra.items():
        case[key] = write_array(f"{name}.{key}", value) if isinstance(value, np.ndarray) else value
    CASES.append(case)


# ----------------------------------------------------------------------------------------------
# Inputs


def make_image(height, width, channels, seed):
    """Build a u8 HWC image with gradients, hard edges, texture and pixel noise.

    Every channel gets a different gradient direction, so a swap of x and y, of channels or of
    a flip direction changes the output. A saturated block and a black bar exercise clamping.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    planes = []
    for k in range(channels):
        angle = 2.1 * k + 0.4
        gradient = 40 + 150 * (0.5 + 0.5 * (math.cos(angle) * u + math.sin(angle) * v))
        texture = 25 * np.sin(2 * math.pi * (u * (3 + k) + v * (2 + 2 * k)))
        smooth_noise = gaussian_filter(rng.normal(0, 1, (height, width)), 1.5) * 60
        planes.append(gradient + texture + smooth_noise + rng.normal(0, 6, (height, width)))
    image = np.stack(planes, axis=-1)

    disc = (x - 0.62 * width) ** 2 + (y - 0.4 * height) ** 2 < (0.22 * min(height, width)) ** 2
    image[disc] = image[disc] * 0.3 + np.array([230, 60, 140][:channels]) * 0.7
    image[int(0.7 * height):int(0.85 * height), int(0.1 * width):int(0.35 * width)] = 255
    image[:, int(0.45 * width):int(0.45 * width) + 2] = 0
    return np.clip(np.floor(image + 0.5), 0, 255).astype(np.uint8)


def add_input(name, image):
    INPUTS[name] = write_array(f"input.{name}", image)
    return image


# ----------------------------------------------------------------------------------------------
# Conversions and rounding


def to_tensor(image):
    """u8 HWC numpy -> u8 CHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def to_hwc(tensor):
    """u8 CHW tensor -> u8 HWC numpy."""
    return np.ascontiguousarray(tensor.permute(1, 2, 0).numpy())


def to_pil(image):
    return Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)


def from_pil(pil, channels):
    array = np.asarray(pil)
    return array[..., None] if channels == 1 else array


def round_u8(values):
    """Round half away from zero and clamp to 0..=255: the crate's rule for values back to u8."""
    return np.clip(np.floor(np.asarray(values, np.float64) + 0.5), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Resize, crops and flips


PIL_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos3": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def pil_resize_vertical_first(image, height, width, filter_name):
    """Pillow's convolution resize run as two single-axis resizes, rows (vertical) first.

    One Pillow call resizes horizontally first and stores the intermediate as u8 (rounded and
    clamped), but fast_image_resize 6 runs the vertical pass first. With negative kernel lobes
    (bicubic, Lanczos) the clamp at an overshoot then lands in a different place, so the two
    orders differ by up to about 20 levels next to saturated edges. With the non-negative
    kernels they differ by 1 in about a fifth of the values. Running Pillow in the same order
    compares the kernels alone.
    """
    resample = PIL_FILTERS[filter_name]
    tall = to_pil(image).resize((image.shape[1], height), resample)
    return from_pil(tall.resize((width, height), resample), image.shape[2])


def resize_cases(images):
    # Pillow's convolution resize (antialiased when shrinking), in fast_image_resize's pass order.
    for input_name, height, width, filter_name in [
        ("rgb_37x53", 20, 29, "bilinear"),
        ("rgb_37x53", 45, 60, "bilinear"),
        ("grey_29x41", 15, 20, "bilinear"),
        ("rgb_64x48", 40, 30, "bicubic"),
        ("grey_29x41", 40, 50, "bicubic"),
        ("rgb_64x48", 27, 21, "lanczos3"),
        ("rgb_37x53", 45, 60, "lanczos3"),
        ("rgb_64x48", 25, 19, "area"),
        ("grey_29x41", 11, 17, "area"),
        ("rgb_1x1", 3, 5, "bilinear"),
    ]:
        image = images[input_name]
        name = PIL_FILTERS[filter_name].name
        add_case(
            f"resize.{filter_name}.{input_name}.{height}x{width}", "resize", input_name,
            {"height": height, "width": width, "filter": filter_name},
            f"PIL.Image.resize(({image.shape[1]}, {height}), {name}) then "
            f"resize(({width}, {height}), {name}): the vertical pass first",
            pil_resize_vertical_first(image, height, width, filter_name), 1, 0.02,
            "Same separable kernels (support scaled by the shrink factor, weights normalised "
            "per output pixel) and the same pass order; fixed-point details may move a "
            "rounding by 1.",
        )

    # A single Pillow call and torchvision's antialiased uint8 kernel resize horizontally first.
    # For the bilinear kernel that changes only the rounding of the u8 intermediate.
    image = images["rgb_37x53"]
    for height, width in [(20, 29), (45, 60)]:
        pil = to_pil(image).resize((width, height), Image.Resampling.BILINEAR)
        add_case(
            f"resize.bilinear.pil.rgb_37x53.{height}x{width}", "resize", "rgb_37x53",
            {"height": height, "width": width, "filter": "bilinear"},
            f"PIL.Image.resize(({width}, {height}), BILINEAR), horizontal pass first",
            from_pil(pil, 3), 1, 0.3,
            "The other pass order rounds a different u8 intermediate, so about a fifth of the "
            "values differ by 1 (the bilinear kernel has no negative lobe, so nothing clamps).",
        )
    tv = F.resize(to_tensor(image), [20, 29], InterpolationMode.BILINEAR, antialias=True)
    add_case(
        "resize.bilinear.torchvision.rgb_37x53.20x29", "resize", "rgb_37x53",
        {"height": 20, "width": 29, "filter": "bilinear"},
        "torchvision F.resize([20, 29], BILINEAR, antialias=True) on a uint8 tensor, horizontal "
        "pass first",
        to_hwc(tv), 1, 0.3,
        "Pillow's weights in the other pass order: about a fifth of the values differ by 1.",
    )

    # Area averaging at integer factors: cv2 INTER_AREA takes the exact block mean, rounded once.
    for input_name, height, width in [("rgb_64x48", 32, 24), ("rgb_64x48", 16, 12)]:
        image = images[input_name]
        area = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        add_case(
            f"resize.area.cv2.{input_name}.{height}x{width}", "resize", input_name,
            {"height": height, "width": width, "filter": "area"},
            f"cv2.resize(({width}, {height}), INTER_AREA)",
            area.reshape(height, width, image.shape[2]), 1, 0.4,
            "Both take the block mean, but fast_image_resize rounds the vertical pass to u8 "
            "before the horizontal one, so at a factor of 2 about a third of the values come "
            "out 1 higher than the mean rounded once.",
        )
    # At fractional factors cv2 INTER_AREA weighs partly covered source pixels by coverage,
    # where the box kernel counts a pixel fully when its centre lies in the footprint. The two
    # differ by up to 42 levels on these inputs, so cv2 is no reference there.

    # Nearest neighbour with the pixel-centre rule: source = floor((x + 0.5) * in / out).
    for input_name, height, width in [("rgb_37x53", 20, 29), ("grey_29x41", 40, 50)]:
        image = images[input_name]
        nearest = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        add_case(
            f"resize.nearest.{input_name}.{height}x{width}", "resize", input_name,
            {"height": height, "width": width, "filter": "nearest"},
            f"cv2.resize(({width}, {height}), INTER_NEAREST_EXACT), equal to Pillow NEAREST "
            "and torchvision nearest-exact; cv2 INTER_NEAREST uses floor(x * in / out) instead",
            nearest.reshape(height, width, image.shape[2]), 0, 0.0,
            "Nearest neighbour copies bytes: any difference is a different source pixel.",
        )


def shorter_side_cases(images):
    sizes = []
    for height, width, shorter in [(375, 500, 256), (500, 375, 224), (333, 500, 256),
                                   (480, 640, 480), (37, 53, 24), (1, 7, 3), (100, 100, 50),
                                   (500, 333, 480), (64, 48, 30)]:
        canvas = torch.zeros(1, height, width, dtype=torch.uint8)
        out_height, out_width = F.resize(canvas, shorter, antialias=True).shape[-2:]
        sizes.append([height, width, shorter, out_height, out_width])
    add_case(
        "shorter_side_size.torchvision", "shorter_side_size", None, {"sizes": sizes},
        "torchvision F.resize(image, int) output shape; each row of sizes is [height, width, "
        "shorter, output height, output width]",
        None, 0, 0.0,
        "Sizes are integers: the longer side is floor(shorter * longer / short side).",
    )

    for input_name, shorter in [("rgb_37x53", 24), ("rgb_64x48", 30)]:
        image = images[input_name]
        tv = F.resize(to_tensor(image), shorter, InterpolationMode.BILINEAR, antialias=True)
        add_case(
            f"resize_shorter_side.{input_name}.{shorter}", "resize_shorter_side", input_name,
            {"shorter": shorter, "filter": "bilinear"},
            f"torchvision F.resize({shorter}, BILINEAR, antialias=True) on a uint8 tensor",
            to_hwc(tv), 1, 0.3,
            "torchvision resizes horizontally first, the crate vertically first: about a fifth "
            "of the values differ by 1.",
        )


def center_crop_cases(images):
    for input_name, height, width in [
        ("rgb_37x53", 20, 30),  # (37 - 20) / 2 = 8.5 rounds to 8, (53 - 30) / 2 = 11.5 to 12
        ("rgb_64x48", 31, 20),  # 16.5 rounds to 16 (half to even), 14 exact
        ("rgb_37x53", 22, 22),  # 7.5 rounds to 8, 15.5 to 16: both differ from floor
        ("grey_29x41", 29, 41),  # full size: identity
        ("rgb_37x53", 41, 57),  # larger by 4 on both sides: 2 zero rows/columns each side
        ("rgb_37x53", 40, 56),  # larger by 3: torchvision puts 1 before and 2 after
        ("rgb_64x48", 50, 52),  # smaller in height, larger in width
        ("rgb_1x1", 3, 2),
    ]:
        image = images[input_name]
        tv = F.center_crop(to_tensor(image), [height, width])
        image_height, image_width = image.shape[:2]
        top = round((image_height - height) / 2) if height <= image_height else -((height - image_height) // 2)
        left = round((image_width - width) / 2) if width <= image_width else -((width - image_width) // 2)
        add_case(
            f"center_crop.{input_name}.{height}x{width}", "center_crop", input_name,
            {"height": height, "width": width}, f"torchvision F.center_crop([{height}, {width}])",
            to_hwc(tv), 0, 0.0,
            "A crop copies bytes. torchvision puts the window at round((H - h) / 2) with "
            "Python's half-to-even round; where that differs from floor((H - h) / 2) the test "
            "checks the documented floor rule instead and reports the shift.",
            torchvision_top=top, torchvision_left=left,
        )


def flip_cases(images):
    for input_name in ["rgb_37x53", "grey_29x41", "rgb_1x1"]:
        image = images[input_name]
        shape = image.shape
        add_case(
            f"flip_horizontal.{input_name}", "flip_horizontal", input_name, {},
            "cv2.flip(image, 1)", cv2.flip(image, 1).reshape(shape), 0, 0.0,
            "A flip copies bytes.",
        )
        add_case(
            f"flip_vertical.{input_name}", "flip_vertical", input_name, {},
            "cv2.flip(image, 0)", cv2.flip(image, 0).reshape(shape), 0, 0.0,
            "A flip copies bytes.",
        )


def resized_crop_cases(images):
    image = images["rgb_64x48"]
    for (top, left, height, width), (out_height, out_width) in [
        ((5, 7, 40, 30), (24, 24)),
        ((5, 7, 40, 30), (50, 37)),
        ((0, 0, 64, 48), (32, 24)),
    ]:
        tv = F.resized_crop(to_tensor(image), top, left, height, width, [out_height, out_width],
                            InterpolationMode.BILINEAR, antialias=True)
        add_case(
            f"resized_crop.rgb_64x48.{top}_{left}_{height}x{width}.{out_height}x{out_width}",
            "resized_crop", "rgb_64x48",
            {"top": top, "left": left, "height": height, "width": width,
             "out_height": out_height, "out_width": out_width, "filter": "bilinear"},
            "torchvision F.resized_crop(..., BILINEAR, antialias=True) on a uint8 tensor",
            to_hwc(tv), 1, 0.3,
            "Crop, then the bilinear convolution resize; torchvision resizes horizontally "
            "first, the crate vertically first, so about a fifth of the values differ by 1.",
        )


def ten_crop_cases(images):
    for input_name, size in [("rgb_64x48", 32), ("rgb_37x53", 22)]:
        image = images[input_name]
        crops = F.ten_crop(to_tensor(image), [size, size])
        stacked = np.stack([to_hwc(crop) for crop in crops])
        add_case(
            f"ten_crop.{input_name}.{size}", "ten_crop", input_name, {"size": size},
            f"torchvision F.ten_crop([{size}, {size}]): five_crop of the image, then five_crop "
            "of its horizontal mirror",
            stacked, 0, 0.0,
            "Crops and flips copy bytes. Views 5..9 are crops of the mirrored image, so view 5 "
            "is the mirror of the top-right crop, not of the top-left one.",
        )


# ----------------------------------------------------------------------------------------------
# Affine warp and elastic remap


def inverse_pixel_matrix(matrix, height, width):
    """Turn torchvision's centred inverse matrix into one on pixel indices.

    torchvision maps output (x - cx, y - cy) to input (x' - cx, y' - cy) with
    cx = (width - 1) / 2, cy = (height - 1) / 2 (its grid samples pixel centres, and
    grid_sample with align_corners=False maps them back to indices).
    """
    a, b, c, d, e, f = matrix
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return np.array([a, b, c + cx - a * cx - b * cy, d, e, f + cy - d * cx - e * cy])


def sample_bilinear(image, xs, ys, mode, cval=0.0):
    """Sample every channel of `image` at (xs, ys) with scipy's order-1 spline, in float64."""
    planes = [map_coordinates(image[..., k].astype(np.float64), [ys, xs], order=1, mode=mode,
                              cval=cval, prefilter=False)
              for k in range(image.shape[2])]
    return np.stack(planes, axis=-1)


def interior_mask(xs, ys, height, width, margin=0.01):
    """1 where all four bilinear taps lie inside the image with `margin` pixels to spare."""
    inside = (xs >= margin) & (xs <= width - 1 - margin) & (ys >= margin) & (ys <= height - 1 - margin)
    return inside.astype(np.uint8)


def affine_cases(images):
    for input_name, params, interpolation in [
        ("rgb_37x53", {"angle": 30.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": 0.0}, "bilinear"),
        ("rgb_64x48", {"angle": -17.5, "translate": [3.5, -2.25], "scale": 1.15, "shear": 10.0}, "bilinear"),
        ("grey_29x41", {"angle": 12.0, "translate": [-1.0, 2.0], "scale": 0.8, "shear": -6.0}, "bilinear"),
        ("rgb_37x53", {"angle": 23.0, "translate": [0.0, 0.0], "scale": 0.9, "shear": 0.0}, "nearest"),
    ]:
        image = images[input_name]
        height, width = image.shape[:2]
        tv_mode = InterpolationMode.BILINEAR if interpolation == "bilinear" else InterpolationMode.NEAREST
        tv = F.affine(to_tensor(image), angle=params["angle"], translate=params["translate"],
                      scale=params["scale"], shear=[params["shear"], 0.0], interpolation=tv_mode,
                      fill=None)
        centred = _get_inverse_affine_matrix([0.0, 0.0], params["angle"], params["translate"],
                                             params["scale"], [params["shear"], 0.0])
        matrix = inverse_pixel_matrix(centred, height, width)

        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        source_x = matrix[0] * xs + matrix[1] * ys + matrix[2]
        source_y = matrix[3] * xs + matrix[4] * ys + matrix[5]
        mask = interior_mask(source_x, source_y, height, width)
        name = f"affine.{interpolation}.{input_name}.{params['angle']:g}"

        # The matrix conversion must reproduce torchvision inside the image, or the case is wrong.
        if interpolation == "bilinear":
            check = round_u8(sample_bilinear(image, source_x, source_y, "grid-constant"))
            assert np.abs(check.astype(int) - to_hwc(tv).astype(int))[mask == 1].max() <= 1, name

        tolerance = (1, 0.05) if interpolation == "bilinear" else (255, 0.05)
        add_case(
            name, "affine", input_name, {**params, "interpolation": interpolation, "fill": 0},
            "torchvision F.affine(angle, translate, scale, shear=[shear, 0], fill=None) on a uint8 "
            "tensor; its positive angle turns the picture clockwise (F.rotate negates the angle)",
            to_hwc(tv), tolerance[0], tolerance[1],
            "Bilinear: torchvision computes the sampling grid in float32 and rounds half to even, "
            "so a value inside the mask may differ by 1; outside the mask (taps past the border) "
            "the fill convention decides and only the mean is bounded. Nearest: a source position "
            "within float32 error of a pixel boundary may pick the neighbour, so only the mean "
            "difference is bounded (a handful of such pixels).",
            mask=mask[..., None],
            inverse_matrix_f64=[float(v) for v in matrix],
        )

    # Fill rules other than zero, on torchvision's matrix: scipy modes sampled in float64.
    image = images["rgb_64x48"]
    height, width = image.shape[:2]
    centred = _get_inverse_affine_matrix([0.0, 0.0], 25.0, [4.0, -3.0], 0.85, [0.0, 0.0])
    matrix = inverse_pixel_matrix(centred, height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    source_x = matrix[0] * xs + matrix[1] * ys + matrix[2]
    source_y = matrix[3] * xs + matrix[4] * ys + matrix[5]
    for fill, mode, cval in [("edge", "nearest", 0.0), ("reflect", "mirror", 0.0),
                             ("constant_90", "grid-constant", 90.0)]:
        reference = round_u8(sample_bilinear(image, source_x, source_y, mode, cval))
        add_case(
            f"warp_affine.{fill}.rgb_64x48", "warp_affine", "rgb_64x48",
            {"fill": fill, "interpolation": "bilinear"},
            f"scipy.ndimage.map_coordinates(order=1, mode={mode!r}, cval={cval:g}) per channel at "
            "the positions of the inverse matrix",
            reference, 1, 0.02,
            "Float64 bilinear sampling rounded half up; f32 arithmetic may move a rounding by 1. "
            "'nearest' replicates the edge pixel; 'mirror' reflects about the edge pixel's centre "
            "(d c b | a b c d), and for bilinear sampling that equals reflecting each tap; "
            "'grid-constant' blends each tap past the border with the fill value.",
            inverse_matrix_f64=[float(v) for v in matrix],
        )


def smooth_field(noise, alpha, sigma):
    """alpha * Gaussian(noise), scipy with zero boundary and the kernel cut at 4 sigma."""
    return alpha * gaussian_filter(noise.astype(np.float64), sigma, mode="constant", cval=0.0,
                                   truncate=4.0)


def elastic_cases(images):
    rng = np.random.default_rng(7)

    # Exact smoothing of fixed uniform(-1, 1) noise.
    for (height, width), alpha, sigma in [((37, 53), 34.0, 4.0), ((29, 41), 8.0, 1.5),
                                          ((28, 28), 34.0, 4.0)]:
        noise_x = rng.uniform(-1, 1, (height, width)).astype(np.float32)
        noise_y = rng.uniform(-1, 1, (height, width)).astype(np.float32)
        dx, dy = smooth_field(noise_x, alpha, sigma), smooth_field(noise_y, alpha, sigma)
        add_case(
            f"elastic_field.{height}x{width}.alpha{alpha:g}.sigma{sigma:g}", "elastic_field", None,
            {"height": height, "width": width, "alpha": alpha, "sigma": sigma},
            "alpha * scipy.ndimage.gaussian_filter(noise, sigma, mode='constant', truncate=4) "
            "for dx and for dy, in float64",
            np.stack([dx, dy]).astype(np.float32), 2e-4 * alpha, 2e-5 * alpha,
            "Same kernel (radius int(4 sigma + 0.5), normalised) and zero boundary; only f32 "
            "accumulation differs, a few ulp of the field's size.",
            noise=np.stack([noise_x, noise_y]),
            field_std=float(np.std(np.stack([dx, dy]))),
        )

    # Remap with a fixed smooth field large enough to push border samples off the image.
    for input_name, alpha, sigma in [("rgb_37x53", 30.0, 3.0), ("grey_29x41", 20.0, 2.0)]:
        image = images[input_name]
        height, width = image.shape[:2]
        dx = smooth_field(rng.uniform(-1, 1, (height, width)), alpha, sigma).astype(np.float32)
        dy = smooth_field(rng.uniform(-1, 1, (height, width)), alpha, sigma).astype(np.float32)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        source_x, source_y = xs + dx.astype(np.float64), ys + dy.astype(np.float64)
        mask = interior_mask(source_x, source_y, height, width)[..., None]
        field = np.stack([dx, dy])
        for fill, mode in [("constant_0", "grid-constant"), ("edge", "nearest"),
                           ("reflect", "mirror")]:
            reference = round_u8(sample_bilinear(image, source_x, source_y, mode))
            add_case(
                f"elastic_remap.{fill}.{input_name}", "elastic_remap", input_name, {"fill": fill},
                f"scipy.ndimage.map_coordinates(order=1, mode={mode!r}) per channel at "
                "(y + dy, x + dx)",
                reference, 1, 0.02,
                "Float64 bilinear sampling rounded half up; f32 arithmetic may move a rounding "
                "by 1.",
                field=field, mask=mask,
            )

        # The classic Simard recipe's map_coordinates default, mode='constant', gives the fill
        # value to every sample past the edge instead of blending each tap. cv2.remap is what
        # Albumentations runs and blends each tap. golden.rs compares both inside the mask and
        # cv2 on the whole image.
        hard = round_u8(sample_bilinear(image, source_x, source_y, "constant"))
        add_case(
            f"elastic_remap.scipy_constant.{input_name}", "elastic_remap_border", input_name,
            {"fill": "constant_0"}, "scipy.ndimage.map_coordinates(order=1, mode='constant')",
            hard, 1, 0.02, "Inside the mask it equals the blended rule, and outside it is all fill.",
            field=field, mask=mask,
        )
        remapped = cv2.remap(image, source_x.astype(np.float32), source_y.astype(np.float32),
                             cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        add_case(
            f"elastic_remap.cv2.{input_name}", "elastic_remap_border", input_name,
            {"fill": "constant_0"},
            "cv2.remap(INTER_LINEAR, BORDER_CONSTANT 0), the call Albumentations' elastic makes",
            remapped.reshape(image.shape), 2, 0.05,
            "OpenCV quantises positions to 1/32 pixel and weights to fixed point; on this smooth "
            "field it stays within 1 of scipy's float64 'grid-constant' result.",
            field=field, mask=mask,
        )


# ----------------------------------------------------------------------------------------------
# Colour and value ops


EIGVAL = np.array([0.2175, 0.0188, 0.0045])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]])


def pca_cases(images):
    image = images["rgb_37x53"]
    for alphas in [[0.15, -0.2, 0.3], [2.0, -1.5, 3.0], [-1.8, 0.9, -2.5]]:
        offsets = 255 * EIGVEC @ (np.array(alphas) * EIGVAL)
        reference = round_u8(image.astype(np.float64) + offsets)
        add_case(
            f"pca_lighting.rgb_37x53.{'_'.join(f'{a:g}' for a in alphas)}", "pca_lighting",
            "rgb_37x53", {"alphas": alphas, "eigen": "imagenet"},
            "numpy: offset[c] = 255 * sum_k vectors[c][k] * alphas[k] * values[k] (AlexNet / "
            "fb.resnet.torch Lighting in 0..255 units); out = clip(round(v + offset[c]))",
            reference, 0, 0.0,
            "Integer pixel plus a per-channel offset rounds the same way in f32 and f64 unless "
            "the offset is within f32 error of a half, which these alphas avoid.",
            offsets=offsets.astype(np.float32),
        )


def float_reference(adjust, image, factor):
    """torchvision's formula on a float [0, 1] tensor, scaled back and rounded half up.

    Dividing by 255 and multiplying back leaves errors near 1e-13, which would send exact
    halves (v * 1.25 for even v, say) either way. Rounding to 6 decimals first removes them.
    """
    values = adjust(to_tensor(image).to(torch.float64) / 255, factor) * 255
    return round_u8(np.round(values.permute(1, 2, 0).numpy(), 6))


def rounded_uint8_reference(adjust, image, factor):
    """torchvision's uint8 path with one change: the blend rounds half up instead of truncating.

    Swaps torchvision's private `_blend` (torchvision 0.26) for a copy that rounds before the
    cast, so the grey level, its floor and the f32 blend stay torchvision's own code.
    """
    original = torchvision_color._blend

    def blend_rounded(image1, image2, ratio):
        bound = 255.0
        output = image1.mul(float(ratio)).add_(image2, alpha=1.0 - float(ratio)).clamp_(0, bound)
        return output.add_(0.5).floor_().to(image1.dtype)

    torchvision_color._blend = blend_rounded
    try:
        return to_hwc(adjust(to_tensor(image), factor))
    finally:
        torchvision_color._blend = original


def colour_cases(images):
    ops = {
        "brightness": F.adjust_brightness,
        "contrast": F.adjust_contrast,
        "saturation": F.adjust_saturation,
    }
    for op, input_name, factor in [
        ("brightness", "rgb_37x53", 0.6), ("brightness", "rgb_37x53", 1.4),
        ("brightness", "grey_29x41", 1.25),
        ("contrast", "rgb_37x53", 0.5), ("contrast", "rgb_37x53", 1.7),
        ("contrast", "grey_29x41", 0.7),
        ("saturation", "rgb_37x53", 0.0), ("saturation", "rgb_37x53", 0.4),
        ("saturation", "rgb_37x53", 1.8), ("saturation", "grey_29x41", 0.3),
    ]:
        image = images[input_name]
        adjust = ops[op]
        if op == "brightness":
            # Brightness scales without a grey image: the float path is the rounded uint8 one.
            reference, call = float_reference(adjust, image, factor), "on a float64 [0, 1] tensor"
        else:
            reference = rounded_uint8_reference(adjust, image, factor)
            call = "on a uint8 tensor, its blend rounding half up where torchvision truncates"
        add_case(
            f"adjust_{op}.{input_name}.{factor:g}", f"adjust_{op}", input_name,
            {"factor": factor}, f"torchvision F.adjust_{op} {call}",
            reference, 1, 0.01,
            "The same blend, with the same floored grey level (0.2989 R + 0.587 G + 0.114 B) "
            "for contrast and saturation, rounded half up; a different order of f32 "
            "operations may move a value at a half by 1.",
        )
        add_case(
            f"adjust_{op}.uint8.{input_name}.{factor:g}", f"adjust_{op}_uint8", input_name,
            {"factor": factor}, f"torchvision F.adjust_{op} on a uint8 tensor",
            to_hwc(adjust(to_tensor(image), factor)), 1, 1.0,
            "torchvision truncates the blended value toward zero where the crate rounds to "
            "nearest, so its output is the same or 1 lower.",
        )
        if op == "brightness":
            continue
        add_case(
            f"adjust_{op}.float.{input_name}.{factor:g}", f"adjust_{op}_float", input_name,
            {"factor": factor},
            f"torchvision F.adjust_{op} on a float64 [0, 1] tensor, times 255, rounded half up",
            float_reference(adjust, image, factor), 1, 0.6,
            "The float path blends with the exact grey level; the uint8 path the crate follows "
            "floors it first, which shifts a blended value by up to |1 - factor|.",
        )


def normalize_cases(images):
    for input_name, mean, std in [
        ("rgb_64x48", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("grey_29x41", [0.2860], [0.3530]),
    ]:
        image = images[input_name]
        scaled = F.to_dtype(to_tensor(image), torch.float32, scale=True)
        out = F.normalize(scaled, mean=mean, std=std)
        add_case(
            f"normalize.{input_name}", "normalize", input_name,
            {"mean": [m * 255 for m in mean], "std": [s * 255 for s in std]},
            "torchvision F.normalize(F.to_dtype(image, float32, scale=True), mean, std); "
            "params are the same mean and std in 0..255 units",
            out.numpy().astype(np.float32), 1e-5, 1e-6,
            "(v / 255 - m / 255) / (s / 255) against (v - m) / s, both in f32: a few ulp.",
        )


def erase_cases(images):
    for input_name, (top, left, height, width), value in [
        ("rgb_37x53", (5, 7, 10, 20), 0),
        ("grey_29x41", (0, 30, 29, 11), 200),
    ]:
        image = images[input_name]
        fill = torch.full((image.shape[2], height, width), value, dtype=torch.uint8)
        erased = F.erase(to_tensor(image), top, left, height, width, fill)
        add_case(
            f"erase.{input_name}.{top}_{left}_{height}x{width}", "erase", input_name,
            {"top": top, "left": left, "height": height, "width": width, "value": value},
            "torchvision F.erase(image, i, j, h, w, v) on a uint8 tensor",
            to_hwc(erased), 0, 0.0, "Erasing writes a constant: no arithmetic.",
        )


# ----------------------------------------------------------------------------------------------


def main():
    DATA.mkdir(exist_ok=True)
    for old in DATA.iterdir():
        old.unlink()

    images = {
        "rgb_37x53": add_input("rgb_37x53", make_image(37, 53, 3, seed=1)),
        "rgb_64x48": add_input("rgb_64x48", make_image(64, 48, 3, seed=2)),
        "grey_29x41": add_input("grey_29x41", make_image(29, 41, 1, seed=3)),
        "rgb_1x1": add_input("rgb_1x1", np.array([[[200, 17, 90]]], np.uint8)),
    }
    resize_cases(images)
    shorter_side_cases(images)
    center_crop_cases(images)
    flip_cases(images)
    resized_crop_cases(images)
    ten_crop_cases(images)
    affine_cases(images)
    elastic_cases(images)
    pca_cases(images)
    colour_cases(images)
    normalize_cases(images)
    erase_cases(images)

    index = {
        "generator": "augment/tests/golden/make_golden.py",
        "versions": {
            "numpy": np.__version__, "opencv": cv2.__version__, "pillow": PIL.__version__,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "scipy": scipy.__version__, "albumentations": albumentations.__version__,
        },
        "layout": "raw little-endian arrays; images u8 HWC; fields f32 [2, H, W] (dx then dy); "
                  "normalize outputs f32 CHW; ten_crop outputs u8 [10, h, w, C]",
        "inputs": INPUTS,
        "cases": CASES,
    }
    (HERE / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    total = sum(path.stat().st_size for path in DATA.iterdir())
    print(f"{len(CASES)} cases, {len(INPUTS)} inputs, {total} bytes of data")


if __name__ == "__main__":
    main()
