"""What each poster shows, found by detectors that ship their weights inside their packages,
so that the study's finding ("fresh posters have a very big title and very few
characters") can be measured on anyone's posters, not only on the ones this project drew.

- Text: PP-OCRv4's text detector (DBNet) from the `rapidocr-onnxruntime` wheel, detection
  only; the title is the largest text block by area.
- Faces: dlib's HOG frontal-face detector from the `dlib-bin` wheel (no weight file).
- Design attributes, from those boxes and the pixels: the title's height and area as shares
  of the poster, the share covered by any text, the number of faces and the share they
  cover, and brightness, saturation and colourfulness (Hasler and Suesstrunk, 2003).

The detectors read the prepared poster at twice its side, between MIN_DETECTION_HEIGHT and
MAX_DETECTION_HEIGHT pixels high and two thirds as wide: a prepared poster is a stretched
square, and movie posters are 2:3, so the square is unstretched back before a face detector
trained on upright faces sees it; a small poster enlarged further holds no more detail,
only more pixels to search. Boxes are (x0, y0, x1, y1) as
shares of the poster's width and height, as the synthetic generator's planted boxes are.

A poster on which a detector fails, or which takes longer than the time limit, keeps its
colour attributes and gets its reason in the status column; the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

MIN_DETECTION_HEIGHT, MAX_DETECTION_HEIGHT = 128, 320
# dlib's HOG window is 80 x 80 pixels; one upsampling finds faces down to about 40 pixels,
# an eighth of the largest detection image's height (smaller posters show only larger faces).
FACE_UPSAMPLING = 1
ANNOTATION_CODE_VERSION = 1  # Raised whenever what is measured here changes.
ATTRIBUTES = (
    "title_height",
    "title_area",
    "text_area",
    "faces",
    "face_area",
    "brightness",
    "saturation",
    "colourfulness",
)
DETECTED_TITLE_COLUMNS = (
    "detected_title_x0",
    "detected_title_y0",
    "detected_title_x1",
    "detected_title_y1",
)
TEXT_COLUMN, FACES_COLUMN, STATUS_COLUMN = "detected_text", "detected_faces", "annotation"
ANNOTATION_COLUMNS = (
    STATUS_COLUMN,
    TEXT_COLUMN,
    FACES_COLUMN,
    *DETECTED_TITLE_COLUMNS,
    *ATTRIBUTES,
)
AREA_GRID = 64  # Areas of box unions are counted on a 64 x 64 grid.


def annotation_version() -> str:
    """The detectors' packages and this module's measuring code: part of the dataset's digest."""
    versions = ", ".join(
        f"{package} {importlib.metadata.version(package)}"
        for package in ("rapidocr-onnxruntime", "dlib-bin", "onnxruntime")
    )
    return (
        f"{versions}; detection {MIN_DETECTION_HEIGHT}-{MAX_DETECTION_HEIGHT} px high; "
        f"code {ANNOTATION_CODE_VERSION}"
    )


class Detectors:
    """The text and face detectors, loaded on first use (once per process).

    One call at a time: dlib's detector keeps its image pyramid in the object, so two
    threads (the scoring server answers each request in one) would read each other's
    poster. The lock holds only while the two detectors run on one poster."""

    def __init__(self):
        self._text = None
        self._faces = None
        self.lock = threading.Lock()

    def text_boxes(self, image: np.ndarray) -> np.ndarray:
        """Text blocks of a detection-sized RGB image, as normalised boxes."""
        if self._text is None:
            from rapidocr_onnxruntime import RapidOCR

            # One thread: preprocess runs several posters at once in processes instead.
            # "max" with a limit above any detection image: the detector reads the image
            # at the size detection_image chose (rounded to a multiple of 32), not enlarged.
            self._text = RapidOCR(
                det_limit_side_len=960, det_limit_type="max", intra_op_num_threads=1
            ).text_det
        polygons, _ = self._text(np.ascontiguousarray(image[:, :, ::-1]))  # It reads BGR.
        if polygons is None or len(polygons) == 0:
            return np.zeros((0, 4))
        corners = np.asarray(polygons, dtype=np.float64)
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        return normalised(boxes, image.shape)

    def face_boxes(self, image: np.ndarray) -> np.ndarray:
        """Upright faces of a detection-sized RGB image, as normalised boxes."""
        if self._faces is None:
            import dlib

            self._faces = dlib.get_frontal_face_detector()
        found = self._faces(np.ascontiguousarray(image), FACE_UPSAMPLING)
        boxes = np.array([[f.left(), f.top(), f.right(), f.bottom()] for f in found], dtype=float)
        return normalised(boxes.reshape(-1, 4), image.shape)


def normalised(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    height, width = shape[:2]
    scale = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(boxes / scale, 0.0, 1.0)


def detection_image(poster: np.ndarray) -> np.ndarray:
    """The prepared (square) poster at the detectors' 2:3 size."""
    height = int(np.clip(2 * poster.shape[0], MIN_DETECTION_HEIGHT, MAX_DETECTION_HEIGHT))
    width = round(height * 2 / 3)
    return np.asarray(Image.fromarray(poster).resize((width, height), Image.Resampling.BILINEAR))


@dataclasses.dataclass(frozen=True)
class Annotation:
    status: str  # "ok", or why the detectors gave no answer.
    text: np.ndarray  # (n, 4) normalised boxes, largest first.
    faces: np.ndarray
    attributes: dict[str, float]

    def row(self) -> dict:
        """The annotation as manifest columns; boxes as JSON lists rounded to 1/1000."""
        title = self.text[0] if len(self.text) else np.full(4, np.nan)
        return {
            STATUS_COLUMN: self.status,
            TEXT_COLUMN: boxes_json(self.text),
            FACES_COLUMN: boxes_json(self.faces),
            **dict(zip(DETECTED_TITLE_COLUMNS, np.round(title, 4).tolist(), strict=True)),
            **{name: round(value, 4) for name, value in self.attributes.items()},
        }


def boxes_json(boxes: np.ndarray) -> str:
    return json.dumps(np.round(boxes, 3).tolist())


def boxes_of(cell) -> np.ndarray:
    """Boxes back from a manifest cell (an empty or missing cell is no box)."""
    if not isinstance(cell, str) or not cell:
        return np.zeros((0, 4))
    return np.asarray(json.loads(cell), dtype=np.float64).reshape(-1, 4)


class AnnotationTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raises AnnotationTimeout in the main thread after `seconds` (a C call in progress
    finishes first); elsewhere, and for 0, there is no limit."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise AnnotationTimeout(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def annotate(poster: np.ndarray, detectors: Detectors, timeout: float) -> Annotation:
    """One poster's regions and attributes; a failing or slow detector gives a status, never
    an exception, and the colour attributes are measured all the same."""
    colours = colour_attributes(poster)
    image = detection_image(poster)
    try:
        with detectors.lock, time_limit(timeout):
            text = largest_first(detectors.text_boxes(image))
            faces = largest_first(detectors.face_boxes(image))
    except AnnotationTimeout as error:
        return unannotated(f"timed out: {error}", colours)
    except Exception as error:  # noqa: BLE001  # A detector's own errors name no type we could list.
        return unannotated(f"detector failed: {type(error).__name__}: {error}", colours)
    return Annotation("ok", text, faces, region_attributes(text, faces) | colours)


def unannotated(status: str, colours: dict[str, float]) -> Annotation:
    missing = {name: float("nan") for name in ATTRIBUTES if name not in colours}
    return Annotation(status, np.zeros((0, 4)), np.zeros((0, 4)), missing | colours)


def largest_first(boxes: np.ndarray) -> np.ndarray:
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-areas, kind="stable")]


def region_masks(regions: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean (n, height, width) masks of boxes (x0, y0, x1, y1) normalised to [0, 1]: a
    cell is inside where its centre is."""
    rows = (np.arange(height) + 0.5) / height
    columns = (np.arange(width) + 0.5) / width
    inside_y = (rows[None, :] >= regions[:, 1:2]) & (rows[None, :] <= regions[:, 3:4])
    inside_x = (columns[None, :] >= regions[:, 0:1]) & (columns[None, :] <= regions[:, 2:3])
    return inside_y[:, :, None] & inside_x[:, None, :]


def box_masks(boxes: np.ndarray, side: int = AREA_GRID) -> np.ndarray:
    """The union of the boxes as a boolean side x side mask."""
    return np.any(region_masks(boxes.reshape(-1, 4), side, side), axis=0)


def region_attributes(text: np.ndarray, faces: np.ndarray) -> dict[str, float]:
    title = text[0] if len(text) else np.zeros(4)
    return {
        "title_height": float(title[3] - title[1]),
        "title_area": float((title[2] - title[0]) * (title[3] - title[1])),
        "text_area": float(box_masks(text).mean()),
        "faces": float(len(faces)),
        "face_area": float(box_masks(faces).mean()),
    }


def colour_attributes(poster: np.ndarray) -> dict[str, float]:
    """Mean brightness and saturation (HSV, 0 to 1) and the Hasler-Suesstrunk colourfulness."""
    hsv = np.asarray(Image.fromarray(poster).convert("HSV"), dtype=np.float64) / 255.0
    red, green, blue = (poster[..., channel].astype(np.float64) for channel in range(3))
    red_green, yellow_blue = red - green, 0.5 * (red + green) - blue
    colourfulness = np.hypot(red_green.std(), yellow_blue.std()) + 0.3 * np.hypot(
        red_green.mean(), yellow_blue.mean()
    )
    return {
        "brightness": float(hsv[..., 2].mean()),
        "saturation": float(hsv[..., 1].mean()),
        "colourfulness": float(colourfulness),
    }


CHUNK = 64  # Posters a worker annotates per task.
_detectors = Detectors()  # One per process: each loads its detectors once.


def annotate_rows(task: tuple[str, list[int], float]) -> list[dict]:
    """Manifest columns of the posters at `rows` of the shard at `path` (a pool's task)."""
    # Here, not at the top: prepared.py imports this module for its columns and version.
    from poster_ml.data.prepared import Shard

    path, rows, timeout = task
    posters = Shard(Path(path)).read(np.asarray(rows))
    return [annotate(poster, _detectors, timeout).row() for poster in posters]


def annotate_shard(
    path: str, rows: list[int], timeout: float, workers: int, serial_below: int
) -> pd.DataFrame:
    """Every poster's annotation columns, in the order of `rows`, with a progress bar;
    fewer than `serial_below` posters are annotated in this process."""
    tasks = [
        (str(path), rows[start : start + CHUNK], timeout) for start in range(0, len(rows), CHUNK)
    ]
    bar = tqdm(total=len(rows), desc="finding titles and faces", unit="poster", disable=None)
    annotated: list[dict] = []
    with bar, contextlib.ExitStack() as stack:
        mapped: Iterator[list[dict]] = map(annotate_rows, tasks)
        if workers > 1 and len(rows) >= serial_below:
            # Spawned, as decoding's are: the workers import the detectors, not TensorFlow.
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
            mapped = pool.map(annotate_rows, tasks)
        for chunk in mapped:
            annotated.extend(chunk)
            bar.update(len(chunk))
    return pd.DataFrame(annotated, columns=list(ANNOTATION_COLUMNS))
