"""Exact and near-duplicate grouping: posters in one group always share a split."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 16


def difference_hash(pixels: np.ndarray) -> int:
    """The 64-bit dHash of an RGB image: brightness gradients on a 9 x 8 thumbnail."""
    thumbnail = np.asarray(
        Image.fromarray(pixels).convert("L").resize((9, 8), Image.Resampling.BILINEAR),
        dtype=np.int16,
    )
    bits = (thumbnail[:, 1:] > thumbnail[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """A 16 x 16 grayscale thumbnail, which confirms or refutes a near duplicate."""
    return np.asarray(
        Image.fromarray(pixels)
        .convert("L")
        .resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR),
        dtype=np.uint8,
    )


def duplicate_groups(
    sha256s: list[str],
    hashes: list[int],
    thumbnails: np.ndarray,
    max_bits: int,
    max_difference: float,
    pairs_per_block: int = 2**22,
) -> list[int]:
    """Returns for each poster the index of its group's first member.

    Two posters join one group when their source bytes are identical, or when their
    difference hashes differ in at most `max_bits` bits and their thumbnails differ by at
    most `max_difference` grey levels on average. The hash alone is not enough: posters
    dominated by smooth gradients share most hash bits by chance. Groups are closed
    transitively.
    """
    count = len(sha256s)
    parent = list(range(count))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def union(first: int, second: int) -> None:
        root_first, root_second = find(first), find(second)
        if root_first != root_second:
            parent[max(root_first, root_second)] = min(root_first, root_second)

    first_with_digest: dict[str, int] = {}
    for index, digest in enumerate(sha256s):
        union(first_with_digest.setdefault(digest, index), index)

    for row, column in near_pairs(hashes, thumbnails, max_bits, max_difference, pairs_per_block):
        union(row, column)
    return [find(index) for index in range(count)]


def near_pairs(
    hashes: list[int],
    thumbnails: np.ndarray,
    max_bits: int,
    max_difference: float,
    pairs_per_block: int,
) -> Iterator[tuple[int, int]]:
    """Every pair (row < column) of near duplicates, comparing all pairs a block of rows at
    a time; the block shrinks as the posters grow, so its memory (8 bytes a pair, 32 MiB
    by default) does not grow with them."""
    values = np.array(hashes, dtype=np.uint64)
    block = max(1, pairs_per_block // max(1, len(values)))
    for start in range(0, len(values), block):
        distances = np.bitwise_count(values[start : start + block, None] ^ values[None, :])
        rows, columns = np.nonzero(distances <= max_bits)
        rows += start
        candidates = rows < columns
        rows, columns = rows[candidates], columns[candidates]
        difference = np.abs(
            thumbnails[rows].astype(np.float32) - thumbnails[columns].astype(np.float32)
        ).mean(axis=(1, 2))
        close = difference <= max_difference
        yield from zip(rows[close].tolist(), columns[close].tolist(), strict=True)
