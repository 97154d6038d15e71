"""The prepared-data format, written and read here alone: a folder holding

- `train.npy`, `validation.npy`, `test.npy`: uint8 pixel shards (posters, size, size, 3),
  one per split, rows in manifest order within the split (the manifest's `row` column);
- `manifest.csv`: one row per accepted poster (id, source, sha256, label, class, split,
  row, group, and any extra columns of the input);
- `rejects.csv`: one row per rejected input with its reason;
- `dataset.json`: counts, settings and the dataset's digest.

A dataset logged to a preprocess run travels with `checksums.json` (SHA-256 of each file);
a copy downloaded from the run is checked against both before anything reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from poster_ml import CLASS_NAMES
from poster_ml.config import PreprocessConfig
from poster_ml.data.annotations import STATUS_COLUMN, annotation_version
from poster_ml.data.images import DECODE_VERSION
from poster_ml.data.sources import Reject
from poster_ml.data.splits import SPLITS
from poster_ml.data.synthetic import signal_facts
from poster_ml.errors import DatasetError


def create_shard(path: Path, shape: tuple[int, ...], dtype: type = np.uint8) -> None:
    """A .npy file of `shape`, its rows zero (and sparse on disk) until written."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(int(side) for side in shape),
    }
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        file.truncate(file.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize)


class Shard:
    """Reads and writes rows of a .npy shard (pixels, staging or cached features) with plain
    file reads and writes.

    A memory map would keep every page it touched resident; reading a batch into a fresh
    buffer, and writing one from it, keeps memory at one batch, however large the shard.
    """

    def __init__(self, path: Path):
        header = np.load(path, mmap_mode="r")
        self.path, self.shape, self.offset, self.dtype = (
            Path(path),
            header.shape,
            header.offset,
            header.dtype,
        )
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        del header

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        batch = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as file:
            if len(rows) and np.all(np.diff(rows) == 1):
                file.seek(self.offset + int(rows[0]) * self.row_bytes)
                file.readinto(memoryview(batch).cast("B"))  # type: ignore[arg-type]  # numpy arrays are buffers; its stubs do not say so.
                return batch
            for position in np.argsort(rows, kind="stable"):
                file.seek(self.offset + int(rows[position]) * self.row_bytes)
                file.readinto(memoryview(batch[position]).cast("B"))
        return batch

    def write(self, start: int, rows: np.ndarray) -> None:
        """Writes `rows` in place from row `start` on; other processes may write other rows."""
        if start < 0 or start + len(rows) > len(self):
            raise ValueError(f"rows {start} to {start + len(rows)} are outside {self.path}")
        contiguous = np.ascontiguousarray(rows, dtype=self.dtype)
        with open(self.path, "r+b", buffering=0) as file:
            file.seek(self.offset + start * self.row_bytes)
            file.write(memoryview(contiguous).cast("B"))  # type: ignore[arg-type]  # As in read.


@dataclasses.dataclass(frozen=True)
class PreparedData:
    path: Path
    manifest: pd.DataFrame
    info: dict
    # Where it came from when not a local folder: runs:/<preprocess run id>/prepared.
    uri: str = ""

    @property
    def digest(self) -> str:
        return self.info["digest"]

    @property
    def image_size(self) -> int:
        return int(self.info["size"])

    def split(self, name: str) -> pd.DataFrame:
        """The manifest rows of one split, in shard order."""
        return (
            self.manifest[self.manifest["split"] == name].sort_values("row").reset_index(drop=True)
        )

    def labels(self, name: str) -> np.ndarray:
        return self.split(name)["label"].to_numpy(dtype=np.float32)

    def rejects(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "rejects.csv", dtype=str, keep_default_na=False)

    def reader(self, name: str) -> Shard:
        return Shard(self.path / self.info["shards"][name])


def load_prepared(path: str | Path, uri: str = "") -> PreparedData:
    path = Path(path)
    if not (path / "dataset.json").is_file() or not (path / "manifest.csv").is_file():
        raise DatasetError(
            f"{path} is not a prepared dataset (no dataset.json and manifest.csv); run `poster-ml preprocess` first"
        )
    info = json.loads((path / "dataset.json").read_text())
    manifest = pd.read_csv(path / "manifest.csv", dtype={"id": str, "group": str, "source": str})
    return PreparedData(path, manifest, info, uri)


ANNOTATION_FAILURES = "annotation_failures.csv"
DATASET_FILES = ("dataset.json", "manifest.csv", "rejects.csv", ANNOTATION_FAILURES)


def dataset_files(dataset: PreparedData) -> list[Path]:
    """The files that make the dataset, shards included, as they travel to another machine
    (a dataset prepared before annotations has no annotation_failures.csv)."""
    names = [*DATASET_FILES, *dataset.info["shards"].values()]
    return [
        dataset.path / name
        for name in names
        if name != ANNOTATION_FAILURES or (dataset.path / name).is_file()
    ]


def file_checksums(files: list[Path]) -> dict[str, str]:
    """SHA-256 of each file, by name, read a megabyte at a time."""
    checksums = {}
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
        checksums[path.name] = digest.hexdigest()
    return checksums


def verify_copy(folder: Path, digest: str, checksums: dict[str, str]) -> None:
    """Refuses a copy of a dataset whose files or digest differ from what its run logged."""
    present = file_checksums([folder / name for name in checksums if (folder / name).is_file()])
    wrong = sorted(name for name in checksums if present.get(name) != checksums[name])
    if wrong:
        raise DatasetError(
            f"the downloaded dataset {digest[:12]} is damaged or incomplete ({', '.join(wrong)} differ from the run's checksums)"
        )
    info = json.loads((folder / "dataset.json").read_text())
    computed = dataset_digest((folder / "manifest.csv").read_bytes(), info["pixels"])
    if computed != digest or info["digest"] != digest:
        raise DatasetError(
            f"the downloaded dataset's digest is {computed[:12]}, not the {digest[:12]} its run logged"
        )


def sample_posters(dataset: PreparedData, per_class: int = 8) -> dict[str, np.ndarray]:
    """The first training posters of each class, read from the shard."""
    train, reader = dataset.split("train"), dataset.reader("train")
    return {
        name: reader.read(train[train["class"] == name]["row"].to_numpy()[:per_class])
        for name in reversed(CLASS_NAMES)
    }


def write_shards(
    manifest: pd.DataFrame,
    staging: Shard,
    accepted: list[int],
    out_dir: Path,
    chunk: int = 256,
) -> None:
    """Writes one uint8 .npy shard per split, which training reads a batch at a time."""
    staging_index = np.array(accepted)
    for split in SPLITS:
        positions = np.flatnonzero(manifest["split"].to_numpy() == split)
        create_shard(out_dir / f"{split}.npy", (len(positions), *staging.shape[1:]))
        shard = Shard(out_dir / f"{split}.npy")
        for start in range(0, len(positions), chunk):
            shard.write(start, staging.read(staging_index[positions[start : start + chunk]]))


def write_prepared(
    out_dir: Path, manifest: pd.DataFrame, pixels: dict, info_for_digest
) -> PreparedData:
    """Writes the manifest and dataset.json (from `info_for_digest(digest)`) next to the shards."""
    manifest_bytes = manifest.to_csv(index=False, lineterminator="\n").encode()
    write_atomically(out_dir / "manifest.csv", manifest_bytes)
    info = info_for_digest(dataset_digest(manifest_bytes, pixels)) | {"pixels": pixels}
    # Last, and whole or not at all: a dataset.json marks a complete dataset.
    write_atomically(out_dir / "dataset.json", (json.dumps(info, indent=2) + "\n").encode())
    return PreparedData(out_dir, manifest, info)


def write_atomically(path: Path, content: bytes) -> None:
    """Writes a file under a temporary name, then renames it: readers see all or nothing."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def pixel_settings(config: PreprocessConfig) -> dict:
    """Every setting that changes the pixels of the shards, beside the manifest's posters."""
    return {
        "size": config.size,
        "reduced_decode": config.reduced_decode,
        "max_pixels": config.max_pixels,
        "decode_version": DECODE_VERSION,
        # The detectors' versions: their boxes and attributes are part of the dataset.
        "annotation": annotation_version() if config.annotate else None,
    }


def dataset_digest(manifest_bytes: bytes, pixels: dict) -> str:
    """The dataset's identity: SHA-256 of the manifest and of the pixel settings."""
    digest = hashlib.sha256(manifest_bytes)
    digest.update(json.dumps(pixels, sort_keys=True).encode())
    return digest.hexdigest()


def dataset_info(
    manifest: pd.DataFrame,
    rejects: pd.DataFrame,
    inputs: int,
    config: PreprocessConfig,
    digest: str,
) -> dict:
    counts = {
        split: {
            name: int(((manifest["split"] == split) & (manifest["class"] == name)).sum())
            for name in CLASS_NAMES
        }
        for split in SPLITS
    }
    fresh_share = float(manifest["label"].mean())
    info = {
        "digest": digest,
        "inputs": inputs,
        "accepted": len(manifest),
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(Counter(rejects["reason"]).items())),
        "counts": counts,
        "duplicate_groups": int((manifest.groupby("group").size() > 1).sum()),
        "size": config.size,
        "seed": config.seed,
        "fractions": {
            "train": config.train_fraction,
            "validation": config.validation_fraction,
            "test": config.test_fraction,
        },
        "source": config.source,
        "shards": {split: f"{split}.npy" for split in SPLITS},
        "fresh_share": round(fresh_share, 4),
        "majority_baseline": round(max(fresh_share, 1 - fresh_share), 4),
    }
    if STATUS_COLUMN in manifest.columns:
        info["annotation"] = annotation_summary(manifest)
    if config.source == "synthetic":
        info["synthetic_signal"] = signal_facts(config.label_noise)
    return info


def write_rejects(rejects: list[Reject], out_dir: Path) -> pd.DataFrame:
    table = pd.DataFrame(
        [dataclasses.asdict(r) for r in rejects], columns=["id", "source", "reason", "detail"]
    )
    table = table.sort_values(["source", "reason"], kind="stable").reset_index(drop=True)
    table.to_csv(out_dir / "rejects.csv", index=False, lineterminator="\n")
    return table


def annotation_summary(manifest: pd.DataFrame) -> dict[str, int]:
    """How many posters were annotated, on how many a title and faces were found, how many failed."""
    ok = manifest[STATUS_COLUMN] == "ok"
    return {
        "annotated": int(ok.sum()),
        "with_title": int((ok & (manifest["title_area"] > 0)).sum()),
        "with_faces": int((ok & (manifest["faces"] > 0)).sum()),
        "failed": int((~ok).sum()),
    }


def write_annotation_failures(manifest: pd.DataFrame, out_dir: Path) -> None:
    """The posters whose detectors failed or timed out, with the reason (kept in the
    dataset all the same: only their detected regions are missing)."""
    columns = ["id", "source", "reason"]
    failed = (
        manifest.loc[manifest[STATUS_COLUMN] != "ok", ["id", "source", STATUS_COLUMN]]
        if STATUS_COLUMN in manifest.columns
        else pd.DataFrame(columns=columns)
    )
    failed.set_axis(columns, axis=1).to_csv(
        out_dir / ANNOTATION_FAILURES, index=False, lineterminator="\n"
    )
