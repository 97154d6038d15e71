"""The embedded default: synthetic posters with a planted, documented signal.

The signal is modelled on the study's finding, as two partial cues a model needs both of:

- Title: a poster drawn *fresh* has a large title (75 %) or a medium one (25 %); a poster
  drawn *rotten* has a small title (75 %) or a medium one (25 %).
- Figures: a rotten drawing always shows a crowd, eight to eighteen small figures standing
  in regular rows; a fresh drawing shows one in 30 % of cases, else at most two figures
  placed freely.

A large title is evidence of fresh and a crowd evidence of rotten, so class activation
maps should light up the title of fresh posters and the crowd of rotten ones. Only a
fresh drawing with a medium title and a crowd is misread by the best rule, so 95.6 % of
drawings can be told apart. Backgrounds, colours, title position and letters vary for
both classes, so neither colour nor position gives the class away.

The title cue alone separates about 90 % of drawings (0.75 + 0.25 x 0.584). A share
`label_noise` (default 0.15) of the recorded labels is then flipped at random, so the
best possible accuracy is about 0.956 x 0.85 + 0.044 x 0.15 = 82 %, well below 100 %, as
for real posters, and the recorded fresh share is about 0.584 x 0.85 + 0.416 x 0.15 =
0.56: always answering fresh scores 0.56, not the study's 0.584. `signal_facts` gives
these numbers; preprocess writes them into dataset.json beside the measured shares.

For every poster the generator records the class it was drawn as (`planted`) and the box
of its discriminative region (the title block of a fresh drawing, the box around all
figures of a rotten one) in coordinates normalised to [0, 1], so that class activation
maps can be scored against it.
"""

from __future__ import annotations

import csv
import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from poster_ml.errors import ConfigError

POSTER_HEIGHT, POSTER_WIDTH = 305, 206
FRESH_SHARE = 0.584  # The study's share of fresh films.
FRESH_WITH_CROWD = 0.3  # Fresh drawings that show a crowd as well.
# Drawings whose title size is clear (large if fresh, small if rotten); the rest are medium.
CLEAR_TITLE = 0.75
REGION_COLUMNS = ("region_x0", "region_y0", "region_x1", "region_y1")
# Where every poster's title and figures are (empty without figures), whatever its class:
# what the study's finding (large titles, few people) can be measured against.
TITLE_COLUMNS = ("title_x0", "title_y0", "title_x1", "title_y1")
PEOPLE_COLUMNS = ("people_x0", "people_y0", "people_x1", "people_y1")
PLANTED_COLUMN = "planted"
Box = tuple[float, float, float, float]


def draw_poster(rng: np.random.Generator, fresh: bool) -> tuple[Image.Image, Box, Box, Box | None]:
    """Draws one poster of the given planted class; returns it, its planted region, its
    title's box and the box around its figures (None without figures), in pixels."""
    image = Image.new("RGB", (POSTER_WIDTH, POSTER_HEIGHT))
    draw = ImageDraw.Draw(image)
    _draw_background(draw, rng)
    title_at_top = rng.random() < 0.5
    # Figures go in the part of the poster that the title leaves free.
    free_top, free_bottom = (0.3, 0.95) if title_at_top else (0.05, 0.7)
    if not fresh or rng.random() < FRESH_WITH_CROWD:
        figures = _figure_rows(rng, free_top, free_bottom)
    else:
        figures = [
            _random_figure_box(rng, free_top, free_bottom) for _ in range(rng.integers(0, 3))
        ]
    for box in figures:
        _draw_figure(draw, rng, box)
    title_size = ("large" if fresh else "small") if rng.random() < CLEAR_TITLE else "medium"
    title_box = _draw_title(draw, rng, title_size, at_top=title_at_top)
    people = _enclosing_box(figures) if figures else None
    return image, title_box if fresh else people, title_box, people  # type: ignore[return-value]  # A rotten drawing always has figures.


def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, ...]:
    return tuple(int(value) for value in rng.integers(low, high, size=3))


def _draw_background(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    top, bottom = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    for row in range(POSTER_HEIGHT):
        share = row / (POSTER_HEIGHT - 1)
        draw.line(
            [(0, row), (POSTER_WIDTH, row)],
            fill=tuple(int(v) for v in top * (1 - share) + bottom * share),
        )
    # Soft distracting shapes appear on both classes.
    for _ in range(rng.integers(0, 4)):
        x0, y0 = rng.integers(0, POSTER_WIDTH), rng.integers(0, POSTER_HEIGHT)
        x1, y1 = x0 + rng.integers(20, 120), y0 + rng.integers(20, 120)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([int(x0), int(y0), int(x1), int(y1)], fill=_random_colour(rng, 40, 216))


def _draw_title(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: str, at_top: bool
) -> Box:
    letters = "".join(rng.choice(list(string.ascii_uppercase), size=rng.integers(4, 9)))
    font_size = int(rng.integers(*{"large": (38, 56), "medium": (22, 30), "small": (11, 17)}[size]))
    font = ImageFont.load_default(size=font_size)
    while draw.textlength(letters, font=font) > POSTER_WIDTH - 12:
        font_size -= 2
        font = ImageFont.load_default(size=font_size)
    text_width = draw.textlength(letters, font=font)
    x = float(rng.uniform(6, max(6.0, POSTER_WIDTH - 6 - text_width)))
    y = float(rng.uniform(0.03, 0.12) if at_top else rng.uniform(0.74, 0.84)) * POSTER_HEIGHT
    y = min(y, POSTER_HEIGHT - 1.25 * font_size - 4)
    draw.text(
        (x, y),
        letters,
        font=font,
        fill=_random_colour(rng),
        stroke_width=max(1, font_size // 14),
        stroke_fill=(0, 0, 0),
    )
    left, top, right, bottom = draw.textbbox(
        (x, y), letters, font=font, stroke_width=max(1, font_size // 14)
    )
    return (left, top, right, bottom)


def _random_figure_box(rng: np.random.Generator, free_top: float, free_bottom: float) -> Box:
    width = float(rng.uniform(40, 70))
    height = width * 2.2
    x0 = float(rng.uniform(0, POSTER_WIDTH - width))
    y0 = float(
        rng.uniform(
            free_top * POSTER_HEIGHT,
            max(free_top * POSTER_HEIGHT + 1, free_bottom * POSTER_HEIGHT - height),
        )
    )
    return (x0, y0, x0 + width, y0 + height)


def _figure_rows(rng: np.random.Generator, free_top: float, free_bottom: float) -> list[Box]:
    """The rotten posters' crowd: small figures in a regular grid of two or three rows.

    The crowd fills a block of 60 to 100 % of the width at a random height, so empty
    background is common to both classes and never evidence of freshness by itself.
    """
    rows, columns = int(rng.integers(2, 4)), int(rng.integers(4, 7))
    crowd_width = float(rng.uniform(0.6, 1.0)) * (POSTER_WIDTH - 8)
    cell_width = crowd_width / columns
    area_top, area_bottom = free_top * POSTER_HEIGHT, free_bottom * POSTER_HEIGHT
    cell_height = min((area_bottom - area_top) / rows, cell_width * 1.8)
    left = 4 + float(rng.uniform(0, POSTER_WIDTH - 8 - crowd_width))
    start = area_top + float(rng.uniform(0, (area_bottom - area_top) - rows * cell_height + 1e-6))
    boxes = []
    for row in range(rows):
        for column in range(columns):
            x0 = left + column * cell_width + 0.1 * cell_width
            y0 = start + row * cell_height + 0.05 * cell_height
            boxes.append((x0, y0, x0 + 0.8 * cell_width, y0 + 0.9 * cell_height))
    return boxes


def _draw_figure(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: Box) -> None:
    """A person: a round head over a rounded body."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    head = min(width * 0.6, height * 0.3)
    centre = (x0 + x1) / 2
    draw.ellipse(
        [centre - head / 2, y0, centre + head / 2, y0 + head],
        fill=_random_colour(rng, 120, 256),
        outline=(0, 0, 0),
    )
    draw.rounded_rectangle(
        [x0, y0 + head * 1.05, x1, y1],
        radius=width / 4,
        fill=_random_colour(rng),
        outline=(0, 0, 0),
    )


def normalised(box: Box | None) -> list[str]:
    """A box in pixels as four coordinates in [0, 1]; four empty cells for no box."""
    if box is None:
        return [""] * 4
    scale = np.array([POSTER_WIDTH, POSTER_HEIGHT, POSTER_WIDTH, POSTER_HEIGHT])
    return [f"{value:.4f}" for value in np.clip(np.array(box) / scale, 0, 1)]


def _enclosing_box(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def signal_facts(label_noise: float) -> dict[str, float]:
    """What the planted signal allows, by construction: the accuracy of the title cue
    alone and of the best rule on drawings, the ceiling after label noise, and the
    expected fresh share of the recorded labels (the majority baseline)."""
    title_only = CLEAR_TITLE + (1 - CLEAR_TITLE) * max(FRESH_SHARE, 1 - FRESH_SHARE)
    # Misread by the best rule: fresh drawings with a medium title and a crowd.
    best_rule = 1 - FRESH_SHARE * (1 - CLEAR_TITLE) * FRESH_WITH_CROWD
    fresh_share = FRESH_SHARE * (1 - label_noise) + (1 - FRESH_SHARE) * label_noise
    return {
        "title_cue_accuracy": round(title_only, 4),
        "best_rule_accuracy": round(best_rule, 4),
        "accuracy_ceiling": round(best_rule * (1 - label_noise) + (1 - best_rule) * label_noise, 4),
        "expected_fresh_share": round(fresh_share, 4),
    }


def write_synthetic_posters(
    out_dir: Path, count: int, seed: int, label_noise: float = 0.15
) -> Path:
    """Writes `count` JPEG posters and a labels CSV shaped like the public Rotten Tomatoes data.

    Returns the CSV's path; the posters lie in `out_dir/images/<movie_id>.jpg`. Poster i
    depends only on (seed, i), so a larger count extends a smaller one.
    """
    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    if not 0 <= label_noise < 0.5:
        raise ConfigError(f"label_noise must be in [0, 0.5), got {label_noise}")
    images_dir = Path(out_dir) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_path = Path(out_dir) / "labels.csv"
    with open(labels_path, "w", newline="") as labels_file:
        writer = csv.writer(labels_file)
        header = ["movie_id", "tomatometer_status", "planted", *REGION_COLUMNS, *TITLE_COLUMNS]
        writer.writerow([*header, *PEOPLE_COLUMNS])
        for index in range(count):
            rng = np.random.default_rng([seed, index])
            planted_fresh = bool(rng.random() < FRESH_SHARE)
            image, region, title, people = draw_poster(rng, planted_fresh)
            fresh = planted_fresh != bool(rng.random() < label_noise)
            status = ("Certified-Fresh" if rng.random() < 0.2 else "Fresh") if fresh else "Rotten"
            movie_id = f"syn{index:06d}"
            image.save(images_dir / f"{movie_id}.jpg", quality=90)
            boxes = [*normalised(region), *normalised(title), *normalised(people)]
            writer.writerow([movie_id, status, "fresh" if planted_fresh else "rotten", *boxes])
    return labels_path
