"""Faithfulness measures against cases computed by hand: a model that looks at one known
block of pixels only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from poster_ml.evaluation.intervals import mean_interval
from poster_ml.explain import faithfulness as faith
from poster_ml.explain.localisation import finding_shares
from poster_ml.tables import finding_table

SIDE, CELL = 12, 8  # 12 x 12 posters, cells of 2 x 2 pixels; the model reads cell 8 only.


def block_model(images: np.ndarray) -> np.ndarray:
    """p(fresh) 0.9 when cell 8 (row 1, column 2: pixels 2-3, 4-5) is bright, else 0.1."""
    block = images[:, 2:4, 4:6].reshape(len(images), -1).mean(axis=1)
    return np.where(block > 100, 0.9, 0.1)


def poster() -> np.ndarray:
    image = np.zeros((1, SIDE, SIDE, 3), np.uint8)
    image[:, 2:4, 4:6] = 255
    return image


def test_cells_partition_the_poster_row_by_row():
    masks = faith.cell_masks(SIDE, SIDE)
    assert masks.shape == (36, SIDE, SIDE) and (masks.sum(axis=0) == 1).all()
    assert masks[CELL, 2:4, 4:6].all() and masks[CELL].sum() == 4


def test_the_deletion_curve_drops_at_exactly_the_step_that_removes_the_block():
    images, reference = poster(), np.zeros((1, SIDE, SIDE, 3), np.uint8)
    order = np.array([[0, 1, CELL, *[c for c in range(36) if c not in (0, 1, CELL)]]])
    deletion, insertion = faith.perturbation_curves(
        block_model, images, reference, order, np.array([True]), steps=36
    )
    # Cells 0 and 1 go first (nothing changes), the block third: p falls at step 3.
    np.testing.assert_allclose(deletion[0], [0.9, 0.9, 0.9] + [0.1] * 34)
    np.testing.assert_allclose(insertion[0], [0.1, 0.1, 0.1] + [0.9] * 34)
    # Trapezoids of width 1/36: (0.9 + 0.9 + 0.9 + 0.9 + 0.9 + 0.1 + 33 x 0.2) / 72.
    np.testing.assert_allclose(faith.curve_area(deletion), [11.2 / 72])
    np.testing.assert_allclose(faith.curve_area(insertion), [1 - 11.2 / 72])
    # Explaining rotten: the probability of rotten is followed instead.
    deletion, _ = faith.perturbation_curves(
        block_model, images, reference, order, np.array([False]), steps=36
    )
    np.testing.assert_allclose(deletion[0][:4], [0.1, 0.1, 0.1, 0.9])


def test_occlusion_finds_the_block_and_a_map_that_agrees_correlates_fully():
    images, reference = poster(), np.zeros((1, SIDE, SIDE, 3), np.uint8)
    occlusion = faith.occlusion_maps(block_model, images, reference, np.array([True]))
    expected = np.zeros(36)
    expected[CELL] = 0.8
    np.testing.assert_allclose(occlusion[0], expected)
    heat = np.zeros((1, SIDE, SIDE))
    heat[0, 2:4, 4:6] = 1.0
    scores = faith.cell_scores(heat)
    assert faith.ranked_cells(scores)[0, 0] == CELL
    assert faith.rank_correlations(scores, occlusion)[0] == 1.0
    assert np.isnan(faith.rank_correlations(np.zeros((1, 36)), occlusion)[0])


def test_the_reference_is_the_poster_blurred_and_intervals_hold_their_mean():
    images = np.zeros((2, 40, 40, 3), np.uint8)
    images[:, 18:22, 18:22] = 255
    smooth = faith.blurred(images)
    assert smooth.dtype == np.uint8 and smooth.shape == images.shape
    assert 0 < smooth[0, 20, 20, 0] < 255 and smooth[0, 20, 10, 0] > 0
    mean, low, high = mean_interval(np.array([0.2, 0.4, 0.6, np.nan]), 200, 0)
    assert abs(mean - 0.4) < 1e-12 and low <= mean <= high


def test_the_finding_shares_are_measured_where_regions_are_known_and_only_there():
    split = pd.DataFrame(
        {
            "title_x0": [0.0, 0.0], "title_y0": [0.0, 0.0], "title_x1": [1.0, 1.0],
            "title_y1": [0.5, 0.5], "people_x0": [0.0, ""], "people_y0": [0.6, ""],
            "people_x1": [1.0, ""], "people_y1": [1.0, ""],
        }
    )  # fmt: skip
    top = np.zeros((2, 8, 8))
    top[:, :2] = 1.0  # All mass in the top quarter (a little more, resized): on the title.
    groups = {"most_fresh": np.array([0]), "most_rotten": np.array([1])}
    shares = finding_shares(split, np.array([0, 1]), groups, {"layer_cam": top}, 50, 0)
    assert shares["finding_most_fresh_layer_cam_title_share"] == 1.0
    assert shares["finding_most_fresh_layer_cam_people_share"] == 0.0
    assert shares["finding_most_rotten_layer_cam_people_share"] == 0.0  # No figures drawn.
    assert finding_shares(split.drop(columns="title_x0"), np.array([0, 1]), groups, {}, 50, 0) == {}
    table = finding_table([{"variant": "basic_cnn", "faithfulness_posters": 2.0}])
    assert set(table["title_share"]) == {"not measurable"}
