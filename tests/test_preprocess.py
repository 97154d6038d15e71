"""The preprocess step on every input layout, every reject reason, splits and determinism."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import encode, png_header_only
from mlflow.tracking import MlflowClient
from PIL import Image

from poster_ml.cli import main
from poster_ml.config import PreprocessConfig
from poster_ml.data.images import decode_poster
from poster_ml.data.prepare import prepare
from poster_ml.data.prepared import load_prepared
from poster_ml.data.synthetic import write_synthetic_posters
from poster_ml.locks import exclusive


def add_rows(labels_csv, rows):
    with open(labels_csv, "a", newline="") as file:
        writer = csv.writer(file)
        for row in rows:
            writer.writerow(row)


@pytest.fixture
def messy_collection(tmp_path):
    """Good synthetic posters plus one crafted file or row for every reject reason."""
    labels_csv = write_synthetic_posters(tmp_path / "raw", count=30, seed=3)
    images = tmp_path / "raw" / "images"
    good = (images / "syn000000.jpg").read_bytes()
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("not a poster at all")
    (images / "truncated.jpg").write_bytes(
        encode(Image.new("RGB", (200, 300), (9, 99, 199)), "JPEG")[:400]
    )
    (images / "bomb.png").write_bytes(png_header_only(90_000, 90_000))
    (images / "portable.ppm").write_bytes(encode(Image.new("RGB", (20, 30)), "PPM"))
    (images / "conflict.jpg").write_bytes(good)
    (images / "twice.jpg").write_bytes(good)
    (tmp_path / "raw" / "outside.jpg").write_bytes(good)
    # Columns: movie_id, tomatometer_status, planted, region_x0..y1 (blank for crafted rows).
    blank = ["", "", "", "", ""]
    add_rows(
        labels_csv,
        [
            ["empty", "Fresh", *blank],
            ["text", "rotten", *blank],
            ["truncated", "ROTTEN", *blank],
            ["bomb", "1", *blank],
            ["portable", "0", *blank],
            ["ghost", "Fresh", *blank],
            ["meh", "Meh", *blank],
            ["../outside", "Fresh", *blank],
            ["conflict", "Fresh", *blank],
            ["conflict", "Rotten", *blank],
            ["twice", "Certified-Fresh", *blank],
            ["twice", "fresh", *blank],
            ["", "Fresh", *blank],
        ],
    )
    return labels_csv, images


EXPECTED_REASONS = {
    "empty file": 1,
    "not an image": 1,
    "truncated image": 1,
    "decompression bomb": 1,
    "missing file": 2,  # ghost.jpg, and portable (only .jpg, .jpeg, .png and .webp are looked up)
    "unknown label": 1,
    "path escapes images folder": 1,
    "conflicting labels for duplicate id": 2,
    "duplicate id": 1,
    "missing id": 1,
}


def test_messy_csv_collection_rejects_each_bad_row_and_keeps_the_good(
    messy_collection, tmp_path, capsys
):
    labels_csv, images = messy_collection
    out = tmp_path / "prepared"
    exit_code = main(
        [
            "preprocess",
            "--source",
            str(labels_csv),
            "--images",
            str(images),
            "--size",
            "32",
            "--out",
            str(out),
        ]
    )
    assert exit_code == 0
    dataset = load_prepared(out)
    rejects = dataset.rejects()
    assert dataset.info["inputs"] == 30 + 13
    assert dataset.info["accepted"] + dataset.info["rejected"] == dataset.info["inputs"]
    assert dataset.info["accepted"] == 31  # 30 synthetic posters and the first "twice".
    assert rejects["reason"].value_counts().to_dict() == EXPECTED_REASONS
    assert (rejects["reason"] != "").all() and (rejects["source"] != "").all()
    assert list(rejects.columns) == ["id", "source", "reason", "detail"]
    # Every reject whose row had an id carries it; only the row without one has none.
    assert (rejects["id"] == "").sum() == (rejects["reason"] == "missing id").sum()
    printed = capsys.readouterr().out
    assert "accepted       31" in printed and "rejected       12" in printed
    assert "missing file" in printed


def test_poster_and_path_columns_and_their_escapes(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    poster = encode(Image.new("RGB", (40, 60), (200, 10, 10)), "PNG")
    (images / "sub" / "a.png").write_bytes(poster)
    (images / "b.webp").write_bytes(encode(Image.new("RGB", (40, 60), (10, 10, 200)), "WEBP"))
    (images / "portable.ppm").write_bytes(encode(Image.new("RGB", (20, 30)), "PPM"))
    (tmp_path / "secret.png").write_bytes(poster)
    pd.DataFrame(
        {
            "imdb_id": ["a", "b", "c", "d", "e"],
            "label": ["1", "0", "1", "0", "1"],
            "poster": ["sub/a.png", "b.webp", "../secret.png", "/etc/hostname", "portable.ppm"],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    dataset = prepare(
        PreprocessConfig(
            source=str(tmp_path / "labels.csv"),
            images=str(images),
            size=16,
            out=str(tmp_path / "out"),
        )
    )
    assert sorted(dataset.manifest["id"]) == ["a", "b"]
    reasons = dataset.rejects().set_index("source")["reason"].to_dict()
    assert reasons == {
        "../secret.png": "path escapes images folder",
        "/etc/hostname": "path escapes images folder",
        "portable.ppm": "unsupported format",
    }
    # Each reject carries its CSV row's id, so it can be traced back.
    assert dataset.rejects().set_index("source")["id"].to_dict() == {
        "../secret.png": "c",
        "/etc/hostname": "d",
        "portable.ppm": "e",
    }


def test_class_folder_layout(tmp_path):
    # Flat colours whose grey levels differ by at least 11 between any two posters, so
    # that none is taken for a near duplicate of another.
    for name, colour, green in (("fresh", (250, 0, 0), 0), ("rotten", (0, 0, 250), 20)):
        folder = tmp_path / "posters" / name
        folder.mkdir(parents=True)
        for index in range(6):
            (folder / f"{name}{index}.jpg").write_bytes(
                encode(
                    Image.new("RGB", (40, 60), (colour[0], index * 40 + green, colour[2])), "JPEG"
                )
            )
    (tmp_path / "posters" / "fresh" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "posters" / "rotten" / ".DS_Store").write_bytes(b"\0\0")
    dataset = prepare(
        PreprocessConfig(source=str(tmp_path / "posters"), size=16, out=str(tmp_path / "out"))
    )
    assert dataset.info["inputs"] == 13 and dataset.info["accepted"] == 12
    assert dataset.rejects()["source"].tolist() == ["fresh/broken.jpg"]
    assert dataset.manifest.groupby("class").size().to_dict() == {"fresh": 6, "rotten": 6}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--source", "missing.csv", "--images", "."], "no such labels CSV"),
        (["--source", "LABELS", "--images", "."], "no label column"),
        (["--source", "ONLY_BAD", "--images", "IMAGES"], "no poster was accepted"),
        (["--train-fraction", "0.9"], "sum to 1"),
        (["--count", "many"], "must be int"),
    ],
)
def test_fatal_problems_give_one_line_and_non_zero_exit(arguments, message, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.jpg").write_text("nope")
    (tmp_path / "nolabel.csv").write_text("movie_id,year\nx,1999\n")
    (tmp_path / "bad.csv").write_text("movie_id,label\nx,1\n")
    replacements = {
        "LABELS": str(tmp_path / "nolabel.csv"),
        "ONLY_BAD": str(tmp_path / "bad.csv"),
        "IMAGES": str(tmp_path / "images"),
    }
    arguments = [replacements.get(a, a) for a in arguments]
    exit_code = main(["preprocess", *arguments, "--out", str(tmp_path / "out")])
    # MLflow and the progress bar also write to stderr; the error is one line of its own.
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert exit_code == 1
    assert (
        len(errors) == 1
        and errors[0].startswith("poster-ml preprocess: error:")
        and message in errors[0]
    )


@pytest.mark.parametrize("command", ["preprocess", "train", "evaluate", "register", "main"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0 and "usage: poster-ml" in capsys.readouterr().out


def test_same_seed_gives_byte_identical_manifest(tmp_path):
    first = prepare(PreprocessConfig(count=60, size=24, out=str(tmp_path / "a"), seed=5))
    second = prepare(PreprocessConfig(count=60, size=24, out=str(tmp_path / "b"), seed=5))
    other = prepare(PreprocessConfig(count=60, size=24, out=str(tmp_path / "c"), seed=6))
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (
        tmp_path / "b" / "manifest.csv"
    ).read_bytes()
    assert first.digest == second.digest != other.digest


def test_every_setting_that_changes_pixels_changes_the_digest(tmp_path):
    """Without annotations (measured on the pixels, they differ by size), the manifest is
    the same at any size; the dataset's identity must not be."""
    out = str(tmp_path / "same-folder")
    plain = {"count": 40, "out": out, "seed": 5, "annotate": False}
    small = prepare(PreprocessConfig(size=24, **plain))
    manifest = (tmp_path / "same-folder" / "manifest.csv").read_bytes()
    large = prepare(PreprocessConfig(size=32, **plain))
    assert (tmp_path / "same-folder" / "manifest.csv").read_bytes() == manifest
    full_decode = prepare(PreprocessConfig(size=32, reduced_decode=False, **plain))
    lower_limit = prepare(PreprocessConfig(size=32, max_pixels=10_000_000, **plain))
    digests = {small.digest, large.digest, full_decode.digest, lower_limit.digest}
    assert len(digests) == 4
    assert load_prepared(out).info["pixels"] == {
        "size": 32,
        "reduced_decode": True,
        "max_pixels": 10_000_000,
        "decode_version": 1,
        "annotation": None,
    }


def test_splits_are_stratified_in_the_study_proportions(synthetic_dataset):
    manifest = synthetic_dataset.manifest
    shares = manifest["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.48, abs=0.02)
    assert shares["validation"] == pytest.approx(0.32, abs=0.02)
    assert shares["test"] == pytest.approx(0.20, abs=0.02)
    overall_fresh = manifest["label"].mean()
    for split, rows in manifest.groupby("split"):
        assert rows["label"].mean() == pytest.approx(overall_fresh, abs=0.03), split


def test_custom_split_fractions(tmp_path):
    dataset = prepare(
        PreprocessConfig(
            count=100,
            size=16,
            out=str(tmp_path),
            train_fraction=0.6,
            validation_fraction=0.2,
            test_fraction=0.2,
        )
    )
    counts = dataset.manifest["split"].value_counts()
    # Each class is split on its own, so each split may be one poster off per class.
    assert (
        abs(counts["train"] - 60) <= 2
        and abs(counts["validation"] - 20) <= 2
        and abs(counts["test"] - 20) <= 2
    )


def test_exact_and_near_duplicates_share_group_and_split(tmp_path):
    labels_csv = write_synthetic_posters(tmp_path / "raw", count=80, seed=11)
    images = tmp_path / "raw" / "images"
    original = Image.open(images / "syn000004.jpg")
    shutil.copy(images / "syn000004.jpg", images / "copy.jpg")
    (images / "near.jpg").write_bytes(encode(original.resize((200, 300)), "JPEG", quality=60))
    label = next(row[1] for row in csv.reader(labels_csv.open()) if row[0] == "syn000004")
    add_rows(labels_csv, [["copy", label, "", "", "", "", ""], ["near", label, "", "", "", "", ""]])
    for seed in range(4):  # Whatever the seed, the three stay together.
        dataset = prepare(
            PreprocessConfig(
                source=str(labels_csv),
                images=str(images),
                size=32,
                out=str(tmp_path / f"out{seed}"),
                seed=seed,
            )
        )
        rows = dataset.manifest.set_index("id").loc[["syn000004", "copy", "near"]]
        assert rows["group"].nunique() == 1 and rows["split"].nunique() == 1
        assert rows["sha256"].iloc[0] == rows["sha256"].iloc[1] != rows["sha256"].iloc[2]
        # Only the planted pair groups: unrelated posters that share hash bits by chance do not.
        assert (
            (dataset.manifest.groupby("group").size() > 1).sum()
            == dataset.info["duplicate_groups"]
            == 1
        )


def test_duplicate_groups_are_the_same_whatever_the_block_of_pairs_compared_at_once():
    """The pairs are compared a block at a time so that memory stays flat; the block must
    not change which posters group, across a block's edge included."""
    from poster_ml.data.dedup import duplicate_groups

    rng = np.random.default_rng(3)
    hashes = [int(h) for h in rng.integers(0, 2**63, 300, dtype=np.int64)]
    thumbnails = rng.integers(0, 256, (300, 16, 16), dtype=np.uint8)
    for first, second in ((0, 299), (5, 150), (150, 151), (7, 8)):  # Near duplicates.
        hashes[second] = hashes[first] ^ 0b101
        thumbnails[second] = thumbnails[first]
    digests = [str(index) for index in range(300)]
    digests[42] = digests[41]  # An exact copy.
    whole = duplicate_groups(digests, hashes, thumbnails, 10, 8.0, pairs_per_block=2**30)
    assert len(set(whole)) == 300 - 5
    for pairs_per_block in (1, 300 * 7, 300 * 64):
        assert duplicate_groups(digests, hashes, thumbnails, 10, 8.0, pairs_per_block) == whole


def test_a_duplicate_group_whose_labels_disagree_is_rejected_whole(tmp_path):
    labels_csv = write_synthetic_posters(tmp_path / "raw", count=60, seed=11)
    images = tmp_path / "raw" / "images"
    label = next(row[1] for row in csv.reader(labels_csv.open()) if row[0] == "syn000004")
    other = "Rotten" if label.lower() == "fresh" else "Fresh"
    shutil.copy(images / "syn000004.jpg", images / "copy.jpg")
    add_rows(labels_csv, [["copy", other, "", "", "", "", ""]])
    dataset = prepare(
        PreprocessConfig(
            source=str(labels_csv), images=str(images), size=32, out=str(tmp_path / "out")
        )
    )
    assert not {"syn000004", "copy"} & set(dataset.manifest["id"])
    rejected = dataset.rejects().set_index("source").loc[["copy.jpg", "syn000004.jpg"]]
    assert (rejected["reason"] == "duplicates with conflicting labels").all()
    assert len(dataset.manifest) == 59 and dataset.info["rejected"] == 2


def test_pixels_round_trip_through_the_shards(synthetic_dataset):
    images = synthetic_dataset.path / "synthetic" / "images"
    for split in ("train", "validation", "test"):
        rows = synthetic_dataset.split(split).iloc[:3]
        stored = synthetic_dataset.reader(split).read(rows["row"].to_numpy())
        for index, source in enumerate(rows["source"]):
            expected = decode_poster((images / source).read_bytes(), synthetic_dataset.image_size)
            np.testing.assert_array_equal(stored[index], expected)


def test_shard_reader_reads_any_row_order(synthetic_dataset):
    reader = synthetic_dataset.reader("train")
    everything = np.load(synthetic_dataset.path / "train.npy")
    rows = np.array([5, 0, 17, 3, 3])
    np.testing.assert_array_equal(reader.read(rows), everything[rows])
    np.testing.assert_array_equal(reader.read(np.arange(4, 9)), everything[4:9])


def test_two_preprocess_runs_into_one_folder_leave_one_complete_dataset(tmp_path):
    out = tmp_path / "shared"
    MlflowClient().create_experiment("poster-ml")  # The tracking store exists before both start.
    command = [
        sys.executable,
        "-m",
        "poster_ml.cli",
        "preprocess",
        "--count",
        "300",
        "--size",
        "32",
        "--out",
        str(out),
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(process.wait(timeout=300), process.stderr.read()) for process in processes]
    codes = sorted(code for code, _ in results)
    # They overlap (decoding 300 posters takes seconds), so one refuses; had one finished
    # before the other began, both would succeed, one after the other.
    assert codes in ([0, 1], [0, 0]), results
    for code, error in results:
        if code == 1:
            assert "another preprocess is writing" in error.strip().splitlines()[-1]
    dataset = load_prepared(out)
    assert dataset.info["accepted"] == 300 and len(dataset.manifest) == 300
    assert sum(len(dataset.reader(split)) for split in ("train", "validation", "test")) == 300
    assert not list(out.glob("*.partial"))


def test_a_preprocess_into_a_folder_being_written_stops_and_says_why(tmp_path, capsys):
    with exclusive(tmp_path / "out" / ".lock", wait=False):
        assert (
            main(["preprocess", "--count", "20", "--size", "16", "--out", str(tmp_path / "out")])
            == 1
        )
    assert "another preprocess is writing" in capsys.readouterr().err


WITHOUT_TENSORFLOW = """
import sys


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError(f"preprocess imported {name}")


sys.meta_path.insert(0, Refuse())
from poster_ml.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_preprocess_runs_without_importing_tensorflow(tmp_path):
    """TensorFlow takes seconds to import and preprocess has no use for it: a process that
    refuses to import it still prepares the posters."""
    command = [sys.executable, "-c", WITHOUT_TENSORFLOW, "preprocess", "--count", "16"]
    finished = subprocess.run(
        [*command, "--size", "32", "--out", str(tmp_path / "prepared")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (tmp_path / "prepared" / "dataset.json").is_file()
