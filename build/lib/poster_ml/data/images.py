"""The one decode-and-resize function that preprocessing, training and serving share."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from poster_ml.errors import PosterMLError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
DEFAULT_MAX_PIXELS = 40_000_000


class PosterError(PosterMLError):
    """A poster that cannot be used; `reason` is a short, stable phrase for reject reports."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


DECODE_VERSION = 1
"""Bumped whenever decode_poster changes the pixels it returns, so that prepared datasets
(whose identity includes it) are not mistaken for ones decoded the new way."""


def decode_poster(
    data: bytes,
    size: int | tuple[int, int],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduced_decode: bool = True,
) -> np.ndarray:
    """Decodes encoded image bytes into a (height, width, 3) uint8 RGB array of `size`.

    EXIF orientation is applied, every mode becomes RGB (transparency over white, 16-bit
    samples scaled down rather than clipped), and animations give their first frame. The
    poster is stretched to the target size: posters share a 2:3 aspect ratio, so
    stretching keeps every pixel and maps regions linearly, and since serving uses this
    same function the model always sees the same geometry. Raises PosterError.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if not data:
        raise PosterError("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and later errors) on huge images; our own limit below is stricter.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise PosterError("decompression bomb", str(error)) from None
    except UnidentifiedImageError:
        raise PosterError("not an image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise _unreadable(error) from None

    if image.format not in SUPPORTED_FORMATS:
        raise PosterError("unsupported format", str(image.format))
    # The pixel count is in the header, so a decompression bomb is caught before decoding.
    if image.width * image.height > max_pixels:
        raise PosterError(
            "decompression bomb", f"{image.width}x{image.height} pixels exceeds {max_pixels}"
        )
    if reduced_decode and image.format in ("JPEG", "MPO"):
        # JPEG can decode at 1/2, 1/4 or 1/8 scale for almost free. Asking for a square of
        # the larger side keeps the draft at least as big as the target in any orientation.
        side = max(height, width)
        image.draft("RGB", (side, side))
    try:
        image.seek(0)
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise _unreadable(error) from None

    rgb = _to_rgb(ImageOps.exif_transpose(image))
    return np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


def _unreadable(error: Exception) -> PosterError:
    reason = "truncated image" if "truncated" in str(error).lower() else "corrupt image"
    return PosterError(reason, str(error))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB without clipping high-bit-depth samples."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        samples = np.asarray(image, dtype=np.float64)
        # 16-bit samples span 0..65535; dividing by 257 maps that range exactly onto 0..255.
        image = Image.fromarray(np.clip(samples / 257.0, 0, 255).round().astype(np.uint8))
    elif image.mode == "F":
        samples = np.asarray(image, dtype=np.float64)
        scale = 255.0 if samples.max(initial=0.0) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(samples * scale, 0, 255).round().astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """Encodes an RGB uint8 array as JPEG bytes (used by the generator, examples and tests)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
