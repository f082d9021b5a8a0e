"""Writes the image fixtures that need an encoder other than the Rust ones under test.

cmyk_pil.jpg is a 32x32 CMYK JPEG written by Pillow through libjpeg-turbo. Pillow stores CMYK
samples inverted (0 = full ink) and marks the file with an Adobe APP14 segment, transform 0,
the convention Photoshop uses. Each 16x16 quadrant has one ink colour (C, M, Y, K in 0..255):

    top left     (255,   0,   0,   0)  cyan
    top right    (  0, 255, 255,   0)  red
    bottom left  (  0,   0,   0, 128)  grey
    bottom right ( 64, 128,   0,  32)  orange-ish

cmyk_pil.rgb is Pillow's own decode of that file, convert("RGB"), as raw RGB8 bytes in row
order: the reference the converter's decode is compared with.

photo_pil.jpg is a 48x32 YCbCr JPEG (quality 90, 4:2:0) of waves plus seeded noise, standing
in for a photo. photo_pil.rgb is Pillow's decode of it, and photo_pil_24x16.rgb that decode
resized to 24x16 with Image.BICUBIC, the filter the converter's downscale follows.

Run from this folder with Python 3.11.7, Pillow 13.0.0 (libjpeg-turbo, jpeg library 6.2):

    python3 make_fixtures.py
"""
import numpy as np
from PIL import Image

INKS = [
    ((0, 0), (255, 0, 0, 0)),
    ((16, 0), (0, 255, 255, 0)),
    ((0, 16), (0, 0, 0, 128)),
    ((16, 16), (64, 128, 0, 32)),
]

image = Image.new("CMYK", (32, 32))
for (left, top), ink in INKS:
    image.paste(ink, (left, top, left + 16, top + 16))
image.save("cmyk_pil.jpg", quality=95)

with Image.open("cmyk_pil.jpg") as written:
    assert written.mode == "CMYK", written.mode
    assert written.info.get("adobe_transform") == 0, written.info
    rgb = written.convert("RGB").tobytes()
with open("cmyk_pil.rgb", "wb") as f:
    f.write(rgb)

rows, columns = np.mgrid[0:32, 0:48]
noise = np.random.default_rng(3).integers(-20, 21, size=(32, 48, 3))
waves = np.stack(
    [
        128 + 90 * np.sin(columns / 5.0),
        128 + 90 * np.cos(rows / 4.0),
        128 + 60 * np.sin((rows + columns) / 7.0),
    ],
    axis=-1,
)
photo = Image.fromarray(np.clip(waves + noise, 0, 255).astype(np.uint8), "RGB")
photo.save("photo_pil.jpg", quality=90, subsampling="4:2:0")

with Image.open("photo_pil.jpg") as written:
    decoded = written.convert("RGB")
with open("photo_pil.rgb", "wb") as f:
    f.write(decoded.tobytes())
with open("photo_pil_24x16.rgb", "wb") as f:
    f.write(decoded.resize((24, 16), Image.BICUBIC).tobytes())
