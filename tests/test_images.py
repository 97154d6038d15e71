"""The one decode-and-resize function: modes, orientation, animation and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import encode, png_header_only
from PIL import Image

from poster_ml.data.images import PosterError, decode_poster


def test_output_is_uint8_rgb_of_requested_size():
    pixels = decode_poster(encode(Image.new("RGB", (206, 305), (10, 200, 30)), "JPEG"), 64)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - (10, 200, 30)).max() < 6


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "P", "RGBA", "LA", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new("RGB", (40, 60), (120, 120, 120)).convert(mode)
    format = "TIFF" if mode in ("I", "F", "CMYK") else "PNG"
    pixels = decode_poster(encode(image, format), (30, 20))
    assert pixels.shape == (30, 20, 3)


def test_transparency_is_composited_over_white():
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    assert decode_poster(encode(image, "PNG"), 8).min() == 255


def test_sixteen_bit_samples_are_scaled_not_clipped():
    samples = np.full((10, 10), 32896, dtype=np.uint16)  # 128 * 257, half of full scale.
    samples[0, 0] = 65535
    image = Image.fromarray(samples)
    pixels = decode_poster(encode(image, "PNG"), 10, reduced_decode=False)
    assert pixels[5, 5, 0] == 128  # Clipping would have given 255.
    assert pixels[0, 0, 0] == 255


def test_exif_orientation_is_applied():
    # A landscape image whose EXIF says "rotate 90 degrees clockwise to display".
    image = Image.new("RGB", (60, 30), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 30, 30))  # Left half red.
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = decode_poster(encode(image, "JPEG", exif=exif), (60, 30))
    # Displayed upright the image is portrait with the red half on top.
    assert pixels[5, 15, 0] > 200 and pixels[5, 15, 2] < 60
    assert pixels[55, 15, 2] > 200


def test_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels = decode_poster(data, 8)
    assert pixels[4, 4, 0] > 200 and pixels[4, 4, 1] < 50


def test_reduced_decode_matches_full_decode():
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)).resize(
        (1600, 2400), Image.Resampling.BICUBIC
    )
    data = encode(big, "JPEG", quality=92)
    reduced = decode_poster(data, 96, reduced_decode=True).astype(int)
    full = decode_poster(data, 96, reduced_decode=False).astype(int)
    assert np.abs(reduced - full).mean() < 4


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"this is a text file, not a poster", "not an image"),
        (png_header_only(100_000, 100_000), "decompression bomb"),
    ],
)
def test_bad_bytes_raise_poster_error_with_reason(data, reason):
    with pytest.raises(PosterError) as caught:
        decode_poster(data, 32)
    assert caught.value.reason == reason


def test_truncated_jpeg_is_rejected():
    data = encode(Image.new("RGB", (200, 300), (50, 60, 70)), "JPEG")
    with pytest.raises(PosterError) as caught:
        decode_poster(data[: len(data) // 2], 32, reduced_decode=False)
    assert caught.value.reason == "truncated image"


def test_pixel_limit_is_configurable():
    data = encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(PosterError, match="decompression bomb"):
        decode_poster(data, 32, max_pixels=10_000)


def test_unsupported_format_is_rejected():
    with pytest.raises(PosterError) as caught:
        decode_poster(encode(Image.new("RGB", (20, 20)), "PPM"), 32)
    assert caught.value.reason == "unsupported format"
