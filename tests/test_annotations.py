"""Detected regions and design attributes (data/annotations.py), the design baseline
(evaluation/design.py), and a detector's failure or time-out on one poster."""

from __future__ import annotations

import concurrent.futures
import json
import time

import matplotlib.cbook
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from poster_ml.cli import main
from poster_ml.config import PreprocessConfig
from poster_ml.data import annotations
from poster_ml.data.annotations import (
    ATTRIBUTES,
    Detectors,
    annotate,
    colour_attributes,
    detection_image,
)
from poster_ml.data.prepare import prepare
from poster_ml.data.synthetic import draw_poster
from poster_ml.evaluation.design import attribute_rows, design_baseline, wilson_interval
from poster_ml.explain.localisation import box_iou, detected_title_agreement

DETECTORS = Detectors()


def square(image: Image.Image, size: int = 224) -> np.ndarray:
    """A poster as preprocess stores it: stretched to a square."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))


def test_the_text_detector_finds_the_planted_titles_of_synthetic_posters():
    rng = np.random.default_rng(3)
    planted, detected = [], []
    for index in range(30):
        image, _, title, _ = draw_poster(rng, fresh=index % 2 == 0)
        found = annotate(square(image), DETECTORS, timeout=30)
        assert found.status == "ok"
        planted.append(np.array(title) / [206, 305, 206, 305])
        detected.append(found.text[0] if len(found.text) else np.full(4, np.nan))
    recall = (box_iou(np.array(planted), np.array(detected)) >= 0.5).mean()
    assert recall >= 0.8, recall


def test_the_face_detector_finds_grace_hopper_and_no_face_on_a_plain_poster():
    photograph = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))
    # The photograph (512 x 600) set on a 2:3 poster, as preprocess would store it.
    poster = Image.new("RGB", (400, 600), (20, 20, 40))
    poster.paste(photograph.resize((400, 469)), (0, 131))
    found = annotate(square(poster), DETECTORS, timeout=30)
    assert found.status == "ok" and len(found.faces) == 1
    x0, y0, x1, y1 = found.faces[0]
    # Her face is in the upper middle of the photograph, so of the poster's lower part.
    assert 0.2 < (x0 + x1) / 2 < 0.8 and 0.3 < (y0 + y1) / 2 < 0.75
    assert found.attributes["faces"] == 1 and 0 < found.attributes["face_area"] < 0.3
    plain = annotate(np.full((224, 224, 3), 128, np.uint8), DETECTORS, timeout=30)
    assert plain.status == "ok" and len(plain.faces) == 0 and len(plain.text) == 0
    assert plain.attributes["title_area"] == 0 and plain.attributes["faces"] == 0


def test_colour_attributes_of_grey_and_of_pure_red():
    grey = colour_attributes(np.full((32, 32, 3), 128, np.uint8))
    assert grey["saturation"] == 0 and grey["colourfulness"] == 0
    assert grey["brightness"] == pytest.approx(128 / 255, abs=0.01)
    red = colour_attributes(np.tile(np.array([255, 0, 0], np.uint8), (32, 32, 1)))
    assert red["brightness"] == pytest.approx(1) and red["saturation"] == pytest.approx(1)
    # Flat red: no spread, a mean of (255, 127.5) on the opponent axes: 0.3 x their norm.
    assert red["colourfulness"] == pytest.approx(0.3 * np.hypot(255, 127.5))


def test_detection_unstretches_the_square_to_the_poster_shape_at_twice_its_side():
    assert detection_image(np.zeros((224, 224, 3), np.uint8)).shape == (320, 213, 3)
    assert detection_image(np.zeros((75, 75, 3), np.uint8)).shape == (150, 100, 3)
    assert detection_image(np.zeros((32, 32, 3), np.uint8)).shape == (128, 85, 3)


def test_a_failing_and_a_slow_detector_leave_every_other_poster_annotated(
    tmp_path, monkeypatch, capsys
):
    """One poster's text detector raises, another's hangs past the time limit: preprocess
    exits 0, both are listed with their reasons, every other poster has its regions."""
    calls = {"count": 0}
    real = Detectors.text_boxes

    def flaky(self, image):
        calls["count"] += 1
        if calls["count"] == 3:
            raise RuntimeError("onnxruntime could not run the model")
        if calls["count"] == 5:
            time.sleep(60)  # The time limit interrupts the sleep.
        return real(self, image)

    monkeypatch.setattr(Detectors, "text_boxes", flaky)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "prepared"
    started = time.perf_counter()
    arguments = ["preprocess", "--count", "24", "--size", "96", "--out", str(out)]
    assert main([*arguments, "--annotation-timeout", "1", "--workers", "1"]) == 0
    assert time.perf_counter() - started < 50  # The hung detector did not hold it up.
    manifest = pd.read_csv(out / "manifest.csv")
    failed = manifest[manifest["annotation"] != "ok"]
    assert sorted(failed["annotation"]) == [
        "detector failed: RuntimeError: onnxruntime could not run the model",
        "timed out: took longer than 1 s",
    ]
    # The failed posters keep their colour attributes; their detected ones are missing.
    assert failed["brightness"].notna().all() and failed["title_area"].isna().all()
    good = manifest[manifest["annotation"] == "ok"]
    assert len(good) == 22 and good["title_area"].notna().all()
    assert (good["detected_text"].map(json.loads).map(len) > 0).mean() > 0.7
    table = pd.read_csv(out / "annotation_failures.csv")
    assert sorted(table["id"]) == sorted(failed["id"]) and set(table.columns) == {
        "id",
        "source",
        "reason",
    }
    assert "2 failed, listed in annotation_failures.csv" in capsys.readouterr().out


def test_the_detectors_version_is_part_of_the_dataset_digest(tmp_path, monkeypatch):
    settings = {"count": 20, "size": 48, "seed": 3}
    first = prepare(PreprocessConfig(out=str(tmp_path / "a"), **settings))
    monkeypatch.setattr(annotations, "ANNOTATION_CODE_VERSION", 999)
    second = prepare(PreprocessConfig(out=str(tmp_path / "b"), **settings))
    manifest = (tmp_path / "a" / "manifest.csv").read_bytes()
    assert manifest == (tmp_path / "b" / "manifest.csv").read_bytes()
    assert first.digest != second.digest
    assert "code 999" in second.info["pixels"]["annotation"]


def test_the_wilson_interval_matches_its_textbook_value():
    # 8 of 10: the Wilson 95 % interval is 0.490 to 0.943 (Newcombe, 1998, table I).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert np.isnan(wilson_interval(0, 0)).all()


def attribute_split(rng: np.random.Generator, count: int) -> pd.DataFrame:
    """Posters whose label follows the title's height, every other attribute noise."""
    table = pd.DataFrame({name: rng.random(count) for name in ATTRIBUTES})
    table["label"] = (table["title_height"] + 0.3 * rng.standard_normal(count) > 0.5).astype(int)
    table["annotation"] = "ok"
    return table


def test_the_attribute_table_and_the_design_baseline_find_the_attribute_that_matters():
    rng = np.random.default_rng(0)
    splits = {name: attribute_split(rng, 300) for name in ("train", "validation", "test")}
    rows = attribute_rows(splits["train"], splits["test"]).set_index("attribute")
    title = rows.loc["title_height"]
    assert title["fresh_share_above_ci_low"] > title["fresh_share_below_ci_high"]
    assert title["posters_above"] + title["posters_below"] == 300
    brightness = rows.loc["brightness"]  # Noise: the two intervals overlap.
    assert brightness["fresh_share_above_ci_low"] < brightness["fresh_share_below_ci_high"]
    # A CNN that guesses at random is worse than the attributes, beyond resampling noise.
    guess = rng.random(300)
    baseline = design_baseline(splits, guess, samples=200, seed=0)
    assert baseline.test_auc > 0.8 and baseline.test_auc_ci[0] > 0.7
    assert baseline.cnn_minus_design.high < 0
    assert max(baseline.coefficients, key=lambda name: abs(baseline.coefficients[name])) == (
        "title_height"
    )
    # The same posters' true scores as the CNN: no better than the attributes can say.
    metrics = design_baseline(splits, splits["test"]["title_height"].to_numpy(), 200, 0).metrics()
    assert metrics["cnn_minus_design_auc_ci_low"] < 0 < metrics["cnn_minus_design_auc_ci_high"]


def test_detected_title_agreement_counts_matches_at_iou_one_half():
    planted = {"title_x0": 0.1, "title_y0": 0.1, "title_x1": 0.9, "title_y1": 0.3}
    rows = [
        planted
        | {"detected_title_x0": 0.1, "detected_title_y0": 0.1}
        | {"detected_title_x1": 0.9, "detected_title_y1": 0.3},
        planted
        | {"detected_title_x0": 0.1, "detected_title_y0": 0.6}
        | {"detected_title_x1": 0.9, "detected_title_y1": 0.8},
        planted
        | dict.fromkeys(
            ("detected_title_x0", "detected_title_y0", "detected_title_x1", "detected_title_y1"),
            np.nan,
        ),
    ]
    metrics = detected_title_agreement(pd.DataFrame(rows))
    assert metrics["detected_title_recall"] == pytest.approx(1 / 3)
    assert metrics["detected_title_precision"] == pytest.approx(1 / 2)
    assert (
        metrics["detected_title_recall_ci_low"] < 1 / 3 < metrics["detected_title_recall_ci_high"]
    )


def test_one_set_of_detectors_shared_by_threads_gives_each_poster_its_own_faces():
    """The served model answers each request in a thread of its own and shares its
    detectors: a poster with a face and one without, annotated at once, keep their own."""
    photograph = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))
    poster = Image.new("RGB", (400, 600), (20, 20, 40))
    poster.paste(photograph.resize((400, 469)), (0, 131))
    with_face, plain = square(poster), np.full((224, 224, 3), 200, np.uint8)
    shared = Detectors()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(annotate, image, shared, 0) for image in [with_face, plain] * 40]
        found = [len(future.result().faces) for future in futures]
    assert found == [1, 0] * 40


def test_a_dataset_prepared_before_annotations_still_lists_its_files(tmp_path):
    from poster_ml.data.prepared import dataset_files

    dataset = prepare(PreprocessConfig(count=20, size=32, out=str(tmp_path), annotate=False))
    assert (tmp_path / "annotation_failures.csv").read_text().strip() == "id,source,reason"
    (tmp_path / "annotation_failures.csv").unlink()  # As a folder prepared before it was written.
    names = [path.name for path in dataset_files(dataset)]
    assert "annotation_failures.csv" not in names and "manifest.csv" in names
    # A missing shard is still listed: logging it then fails loudly, not silently short.
    (tmp_path / "test.npy").unlink()
    assert "test.npy" in [path.name for path in dataset_files(dataset)]
