"""The one decode-and-resize function that preprocessing, training and serving share."""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from poster_ml import CLASS_NAMES, DECISION_THRESHOLD, predicted_fresh
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


def oriented_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded poster as decode_poster turns it (EXIF orientation
    applied), read from its header only."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        # Orientations 5 to 8 turn the picture a quarter: width and height swap.
        turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)


class DecodeVersionError(PosterMLError):
    """A model trained on pixels that this package's decoder no longer makes."""


@dataclasses.dataclass(frozen=True)
class InputContract:
    """Everything that decides a model's answer besides its weights: how a poster becomes
    pixels (size, reduced JPEG decoding, the pixel limit, the decoder's version) and how a
    probability becomes a label (class names, threshold), and the dataset it trained on.
    It is the logged model's settings.json, so the model carries it wherever it goes."""

    image_size: int
    reduced_decode: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    decode_version: int = DECODE_VERSION
    class_names: tuple[str, ...] = CLASS_NAMES
    threshold: float = DECISION_THRESHOLD
    dataset_digest: str = ""

    @classmethod
    def of_dataset(cls, info: dict) -> InputContract:
        """The contract of a model trained on a prepared dataset (its dataset.json)."""
        pixels = info["pixels"]
        return cls(
            int(pixels["size"]),
            bool(pixels["reduced_decode"]),
            int(pixels["max_pixels"]),
            int(pixels["decode_version"]),
            dataset_digest=info["digest"],
        )

    @classmethod
    def from_settings(cls, settings: dict) -> InputContract:
        """The contract in a model's settings.json (other keys, like its config, ignored)."""
        names = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in settings.items() if name in names}
        if "class_names" in values:
            values["class_names"] = tuple(values["class_names"])
        return cls(**values)

    def check_decoder(self) -> None:
        """Refuses, in one line, a model whose pixels this package's decoder no longer makes."""
        if self.decode_version != DECODE_VERSION:
            raise DecodeVersionError(
                f"the model was trained on posters decoded by decoder version {self.decode_version}, "
                f"this poster-ml decodes with version {DECODE_VERSION}: serve it with the code logged in the model"
            )

    def decode(self, data: bytes) -> np.ndarray:
        """The poster's pixels exactly as the model's training data had them."""
        self.check_decoder()
        return decode_poster(
            data,
            self.image_size,
            max_pixels=self.max_pixels,
            reduced_decode=self.reduced_decode,
        )

    def labels(self, probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Each probability of fresh as a class name, at the model's threshold (or another)."""
        cut = self.threshold if threshold is None else threshold
        rotten, fresh = self.class_names
        return np.where(predicted_fresh(probabilities, cut), fresh, rotten)
