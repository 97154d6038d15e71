"""One poster's explanation as an answer carries it: the LayerCAM heatmap laid over the
poster at the poster's own aspect (a PNG), and the map's share of mass on each cell of
the grid that the faithfulness measures use. `poster-ml predict --cam` writes the same PNG
that a served answer holds."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from poster_ml.data.images import decode_poster, oriented_size
from poster_ml.explain.cam import class_activation_maps, upsample
from poster_ml.explain.faithfulness import CELLS_PER_SIDE, cell_masks

OVERLAY_OPACITY = 0.6  # At the map's peak; where the map is zero the poster shows as it is.
MAX_SIDE = 384  # The overlay's longer side at most: an answer stays small for large posters.


def hot_colours(heat: np.ndarray) -> np.ndarray:
    """A black-red-yellow colour per value in [0, 1] (matplotlib's "hot", without it)."""
    red = np.clip(3 * heat, 0, 1)
    green = np.clip(3 * heat - 1, 0, 1)
    blue = np.clip(3 * heat - 2, 0, 1)
    return np.stack([red, green, blue], axis=-1) * 255


def overlay_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a poster's overlay: the poster's own aspect, at most MAX_SIDE."""
    width, height = oriented_size(data)
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def overlay_png(poster: np.ndarray, heat: np.ndarray) -> bytes:
    """The poster (uint8, at the overlay's size) with its map (values in [0, 1], any size)
    resized onto it and laid over it, as PNG bytes."""
    height, width = poster.shape[:2]
    map_image = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8))
    values = np.asarray(map_image.resize((width, height), Image.Resampling.BILINEAR), float) / 255
    opacity = OVERLAY_OPACITY * values[..., None]
    blended = poster.astype(float) * (1 - opacity) + hot_colours(values) * opacity
    buffer = io.BytesIO()
    Image.fromarray(blended.round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def cell_shares(maps: np.ndarray, grid: int = CELLS_PER_SIDE) -> np.ndarray:
    """Each map's share of its mass on each cell, row by row: (n, grid * grid), summing to 1
    (a blank map gives every cell an equal share)."""
    masks = cell_masks(maps.shape[1], maps.shape[2], grid)
    totals = np.einsum("nhw,chw->nc", np.clip(maps, 0, None).astype(np.float64), masks)
    mass = totals.sum(axis=1, keepdims=True)
    return np.where(mass > 0, totals / np.where(mass > 0, mass, 1), 1 / (grid * grid))


def poster_explanations(
    cam_model, images: np.ndarray, files: list[bytes]
) -> tuple[list[bytes], np.ndarray]:
    """For each poster (its pixels as the model saw them, and its encoded file), the
    LayerCAM overlay as PNG bytes on the poster decoded sharp at its own aspect, and the
    map's cell shares."""
    maps = upsample(class_activation_maps(cam_model, images)["layer_cam"], *images.shape[1:3])
    pngs = []
    for data, heat in zip(files, maps, strict=True):
        width, height = overlay_size(data)
        pngs.append(overlay_png(decode_poster(data, (height, width)), heat))
    return pngs, cell_shares(maps)
