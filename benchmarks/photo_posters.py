"""Posters no one here drew: photographs that ship with installed packages (scikit-learn's
and scikit-image's sample images as backgrounds; Grace Hopper from matplotlib, the
astronaut and the cameraman from scikit-image, and the Labeled Faces in the Wild subset
scikit-image ships, as faces), each with a title set in DejaVu Sans Bold (matplotlib's
font). The detectors have never seen these compositions, and the truth of every title and
face placed is recorded.

The label follows the study's finding, as the synthetic default does: a poster composed
*fresh* has a large title and at most one face; one composed *rotten* a small title and
three to six faces; a share `label_noise` of the labels is flipped.

    python benchmarks/photo_posters.py OUT --count 200

writes OUT/fresh/*.jpg, OUT/rotten/*.jpg (a class-folder source for `poster-ml
preprocess`) and OUT/truth.csv (per poster: label, composed class, title box, face boxes).
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 400, 600
WORDS = (
    "NIGHT", "RIVER", "GHOST", "SUMMER", "EMPIRE", "SILENCE", "ORBIT", "HARBOR", "WINTER",
    "FALCON", "SIGNAL", "MIDNIGHT", "DESERT", "ECHO", "LEGACY", "TEMPEST", "VELVET", "ZERO",
)  # fmt: skip


@cache
def backgrounds() -> list[np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    photographs = list(load_sample_images().images)
    photographs += [
        getattr(skimage.data, name)()
        for name in ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
    ]
    return [np.asarray(photo)[..., :3] for photo in photographs]


@cache
def faces() -> list[np.ndarray]:
    """Head-and-shoulders crops (RGB), each the face roughly in its middle."""
    import skimage.data

    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    crops = [
        np.asarray(hopper.convert("RGB"))[40:330, 110:400],
        skimage.data.astronaut()[10:230, 130:330],
        np.stack([skimage.data.camera()[40:200, 200:330]] * 3, axis=-1),
    ]
    # The LFW subset: 100 faces of 25 x 25 grey pixels, enlarged.
    lfw = skimage.data.lfw_subset()[:100]
    crops += [np.stack([(face * 255).astype(np.uint8)] * 3, axis=-1) for face in lfw]
    return crops


def photo_poster(rng: np.random.Generator, fresh: bool) -> tuple[Image.Image, list, list]:
    """One poster: returns it, its title box and its face boxes (pixels, x0 y0 x1 y1)."""
    photo = backgrounds()[rng.integers(len(backgrounds()))]
    height, width = photo.shape[:2]
    side = int(rng.integers(min(height, width * 3 // 2) // 2, min(height, width * 3 // 2)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side * 2 // 3 + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side * 2 // 3])
    poster = crop.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    title_at_top = rng.random() < 0.5
    count = int(rng.integers(0, 2)) if fresh else int(rng.integers(3, 7))
    face_boxes = place_faces(poster, rng, count, title_at_top)
    title_box = set_title(poster, rng, large=fresh, at_top=title_at_top)
    return poster, title_box, face_boxes


def place_faces(poster: Image.Image, rng: np.random.Generator, count: int, title_at_top: bool):
    """Pastes `count` faces side by side in the part of the poster the title leaves free."""
    boxes: list[list[int]] = []
    band_top, band_bottom = (0.3, 0.95) if title_at_top else (0.05, 0.7)
    size = int(HEIGHT * (0.16 if count <= 1 else 0.13))
    for index in range(count):
        face = faces()[rng.integers(len(faces()))]
        tile = Image.fromarray(face).resize((size, size), Image.Resampling.BICUBIC)
        column, row = index % 3, index // 3
        x = int(20 + column * (WIDTH - 40) / 3 + rng.integers(0, max(1, (WIDTH - 40) // 3 - size)))
        y = int(HEIGHT * band_top + row * (size + 10) + rng.integers(0, 20))
        y = min(y, int(HEIGHT * band_bottom) - size)
        poster.paste(tile, (x, y))
        boxes.append([x, y, x + size, y + size])
    return boxes


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return ImageFont.truetype(str(path), size)


def set_title(poster: Image.Image, rng: np.random.Generator, large: bool, at_top: bool) -> list:
    """Sets one or two words in a band of its own, light on dark or dark on light."""
    text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 3)), replace=False))
    share = rng.uniform(0.09, 0.13) if large else rng.uniform(0.035, 0.055)
    size = int(HEIGHT * share)
    draw = ImageDraw.Draw(poster)
    while draw.textlength(text, font=font(size)) > WIDTH - 30:
        size -= 2
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font(size))
    left = int(rng.integers(10, max(11, WIDTH - (x1 - x0) - 10)))
    top = int(HEIGHT * (0.04 if at_top else 0.82))
    dark = rng.random() < 0.5
    margin = size // 4
    box = [left + x0, top + y0, left + x1, top + y1]
    band = [box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin]
    draw.rectangle(band, fill=(245, 240, 225) if not dark else (15, 15, 20))
    draw.text(
        (left, top), text, font=font(size), fill=(15, 15, 20) if not dark else (250, 245, 230)
    )
    return box


def write_photo_posters(
    out: Path, count: int, seed: int = 0, label_noise: float = 0.1
) -> pd.DataFrame:
    """Writes `count` posters into out/fresh and out/rotten and their truth into out/truth.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for name in ("fresh", "rotten"):
        (out / name).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        composed_fresh = bool(rng.random() < 0.55)
        poster, title, face_boxes = photo_poster(rng, composed_fresh)
        label = composed_fresh != bool(rng.random() < label_noise)
        source = f"{'fresh' if label else 'rotten'}/photo{index:05d}.jpg"
        poster.save(out / source, quality=90)
        scale = [WIDTH, HEIGHT, WIDTH, HEIGHT]
        rows.append(
            {
                "source": source,
                "label": int(label),
                "composed": "fresh" if composed_fresh else "rotten",
                "title": json.dumps(np.round(np.divide(title, scale), 4).tolist()),
                "faces": json.dumps(
                    [np.round(np.divide(b, scale), 4).tolist() for b in face_boxes]
                ),
            }
        )
    truth = pd.DataFrame(rows)
    truth.to_csv(out / "truth.csv", index=False)
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    truth = write_photo_posters(arguments.out, arguments.count, arguments.seed)
    print(f"wrote {len(truth)} posters and truth.csv into {arguments.out}")


if __name__ == "__main__":
    main()
