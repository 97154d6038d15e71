"""One poster's explanation as an answer carries it: the LayerCAM heatmap laid over the
poster at the poster's own aspect (a PNG), and the map's share of mass on each cell of
the grid that the faithfulness measures use, and the poster's detected title, text and
faces (data/annotations.py) with the map's share on each and its design attributes.
`poster-ml predict --cam` writes the same PNG and regions that a served answer holds."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from poster_ml.data.annotations import Detectors, annotate, box_masks
from poster_ml.data.images import decode_poster, oriented_size
from poster_ml.explain.cam import class_activation_maps, upsample
from poster_ml.explain.faithfulness import CELLS_PER_SIDE, cell_masks
from poster_ml.explain.localisation import COMPARISON_GRID, shares_on_masks

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


def overlay_png(poster: np.ndarray, heat: np.ndarray, regions: Sequence[dict] = ()) -> bytes:
    """The poster (uint8, at the overlay's size) with its map (values in [0, 1], any size)
    resized onto it and laid over it, and each detected region outlined in its kind's
    colour, as PNG bytes."""
    height, width = poster.shape[:2]
    map_image = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8))
    values = np.asarray(map_image.resize((width, height), Image.Resampling.BILINEAR), float) / 255
    opacity = OVERLAY_OPACITY * values[..., None]
    blended = poster.astype(float) * (1 - opacity) + hot_colours(values) * opacity
    image = Image.fromarray(blended.round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    line = max(1, round(max(width, height) / 150))
    for region in regions:
        x0, y0, x1, y1 = region["box"]
        draw.rectangle(
            (x0 * width, y0 * height, x1 * width, y1 * height),
            outline=REGION_COLOURS[region["kind"]],
            width=line,
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Outlines on the overlay: the title cyan, other text blue, faces green (the page's legend).
REGION_COLOURS = {"title": (0, 229, 255), "text": (80, 120, 255), "face": (60, 220, 60)}
ANNOTATION_TIMEOUT = 10.0  # Seconds a served poster's detectors may take.
_detectors = Detectors()  # Loaded on the first explained request, once per process.


# A served poster is annotated at least this sharp, whatever the model's input size: the
# detectors find far fewer titles and faces on a small poster (benchmarks/RESULTS.md), and
# a person reading the answer wants them found.
ANNOTATION_SIDE = 224


def poster_regions(data: bytes, model_side: int, heat: np.ndarray) -> tuple[list[dict], dict]:
    """One poster's detected regions, each with its kind, box and the map's share of mass
    inside it, and its design attributes with the detectors' status. The poster is decoded
    by preprocessing's function, as a square, at the model's side or ANNOTATION_SIDE."""
    square = decode_poster(data, max(model_side, ANNOTATION_SIDE))
    annotation = annotate(square, _detectors, ANNOTATION_TIMEOUT)
    kinds = [("title" if i == 0 else "text", box) for i, box in enumerate(annotation.text)]
    kinds += [("face", box) for box in annotation.faces]
    regions = [
        {
            "kind": kind,
            "box": [round(float(value), 3) for value in box],
            "map_share": round(
                float(shares_on_masks(heat[None], box_masks(box[None], COMPARISON_GRID)[None])[0]),
                4,
            ),
        }
        for kind, box in kinds
    ]
    design = {"annotation": annotation.status} | {
        name: None if value != value else round(value, 4)  # NaN travels as null in JSON.
        for name, value in annotation.attributes.items()
    }
    return regions, design


def cell_shares(maps: np.ndarray, grid: int = CELLS_PER_SIDE) -> np.ndarray:
    """Each map's share of its mass on each cell, row by row: (n, grid * grid), summing to 1
    (a blank map gives every cell an equal share)."""
    masks = cell_masks(maps.shape[1], maps.shape[2], grid)
    totals = np.einsum("nhw,chw->nc", np.clip(maps, 0, None).astype(np.float64), masks)
    mass = totals.sum(axis=1, keepdims=True)
    return np.where(mass > 0, totals / np.where(mass > 0, mass, 1), 1 / (grid * grid))


@dataclasses.dataclass(frozen=True)
class Explanations:
    """Per poster: the overlay PNG, the map's cell shares, its regions and design attributes."""

    pngs: list[bytes]
    cell_shares: np.ndarray
    regions: list[list[dict]]
    designs: list[dict]


def poster_explanations(cam_model, images: np.ndarray, files: list[bytes]) -> Explanations:
    """For each poster (its pixels as the model saw them, and its encoded file), the
    LayerCAM overlay with the detected regions outlined, as PNG bytes on the poster decoded
    sharp at its own aspect, the map's cell shares, and the regions and attributes."""
    maps = upsample(class_activation_maps(cam_model, images)["layer_cam"], *images.shape[1:3])
    pngs, regions, designs = [], [], []
    for data, heat in zip(files, maps, strict=True):
        found, design = poster_regions(data, images.shape[1], heat)
        width, height = overlay_size(data)
        pngs.append(overlay_png(decode_poster(data, (height, width)), heat, found))
        regions.append(found)
        designs.append(design)
    return Explanations(pngs, cell_shares(maps), regions, designs)
