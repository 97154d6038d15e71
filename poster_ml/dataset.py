"""Reading a prepared dataset: its manifest, its facts and its pixel shards."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from poster_ml.errors import DatasetError


class ShardReader:
    """Reads rows of a .npy shard (pixels or cached features) with plain file reads.

    A memory map would keep every page it touched resident; reading a batch into a fresh
    buffer keeps memory at one batch, however large the shard.
    """

    def __init__(self, path: Path):
        header = np.load(path, mmap_mode="r")
        self.path, self.shape, self.offset, self.dtype = Path(path), header.shape, header.offset, header.dtype
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
                file.readinto(memoryview(batch).cast("B"))
                return batch
            for position in np.argsort(rows, kind="stable"):
                file.seek(self.offset + int(rows[position]) * self.row_bytes)
                file.readinto(memoryview(batch[position]).cast("B"))
        return batch


@dataclasses.dataclass(frozen=True)
class PreparedData:
    path: Path
    manifest: pd.DataFrame
    info: dict

    @property
    def digest(self) -> str:
        return self.info["digest"]

    @property
    def image_size(self) -> int:
        return int(self.info["size"])

    def split(self, name: str) -> pd.DataFrame:
        """The manifest rows of one split, in shard order."""
        return self.manifest[self.manifest["split"] == name].sort_values("row").reset_index(drop=True)

    def labels(self, name: str) -> np.ndarray:
        return self.split(name)["label"].to_numpy(dtype=np.float32)

    def rejects(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "rejects.csv", dtype=str, keep_default_na=False)

    def reader(self, name: str) -> ShardReader:
        return ShardReader(self.path / self.info["shards"][name])


def load_prepared(path: str | Path) -> PreparedData:
    path = Path(path)
    if not (path / "dataset.json").is_file() or not (path / "manifest.csv").is_file():
        raise DatasetError(f"{path} is not a prepared dataset (no dataset.json and manifest.csv); run `poster-ml preprocess` first")
    info = json.loads((path / "dataset.json").read_text())
    manifest = pd.read_csv(path / "manifest.csv", dtype={"id": str, "group": str, "source": str})
    return PreparedData(path, manifest, info)
