"""Helpers shared by the tests: encoded images and crafted bad files.

pytest puts this folder on the path (`pythonpath` in pyproject.toml), so `pytest` and
`python -m pytest` import it alike.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
"""The local PostgreSQL server (trust authentication); tests make their own databases."""


TINY_DATA = ["--count", "120", "--size", "40"]
"""Posters small enough for a training of seconds: preprocess's options."""


def prepare_tiny(folder: str = "data/prepared") -> None:
    """Prepares the tiny synthetic dataset at `folder` (train's default location) with a
    preprocess run, as a user would before training."""
    from poster_ml.cli import main

    if main(["preprocess", *TINY_DATA, "--out", folder]) != 0:
        raise RuntimeError("preprocess failed")


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: a decompression bomb that must be caught unread."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def variant_model_uri(store: str, variant: str = "basic_cnn") -> str:
    """The model URI a train run logged for a variant, from its variant run's tag."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return next(run for run in runs if run.data.tags.get("variant") == variant).data.tags[
        "model_uri"
    ]
