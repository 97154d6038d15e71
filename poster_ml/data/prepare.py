"""The preprocess step: posters in, validated, decoded once, de-duplicated, split, stored."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from poster_ml import CLASS_NAMES, disk
from poster_ml.config import PreprocessConfig
from poster_ml.data.annotations import annotate_shard
from poster_ml.data.dedup import difference_hash, duplicate_groups, thumbnail
from poster_ml.data.images import PosterError, decode_poster
from poster_ml.data.prepared import (
    PreparedData,
    Shard,
    create_shard,
    dataset_info,
    pixel_settings,
    write_annotation_failures,
    write_prepared,
    write_rejects,
    write_shards,
)
from poster_ml.data.sources import Candidate, Reject, list_inputs
from poster_ml.data.splits import grouped_stratified_split
from poster_ml.errors import DatasetError
from poster_ml.locks import exclusive

SERIAL_BELOW = 200  # Fewer posters decode faster in-process than in a pool (its start costs).
# Fewer posters are annotated about as fast in-process: each worker first loads both detectors.
ANNOTATE_SERIAL_BELOW = 500


@dataclasses.dataclass(frozen=True)
class Decoded:
    sha256: str
    dhash: int
    thumbnail: np.ndarray | None
    reject: Reject | None


def decode_file(
    path: Path, size: int, max_pixels: int, reduced_decode: bool
) -> tuple[np.ndarray | None, Decoded]:
    """Reads and decodes one poster: its pixels (None if rejected) and its facts."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, Decoded("", 0, None, Reject(str(path), "unreadable file", str(error)))
    digest = hashlib.sha256(data).hexdigest()
    try:
        pixels = decode_poster(data, size, max_pixels=max_pixels, reduced_decode=reduced_decode)
    except PosterError as error:
        return None, Decoded(digest, 0, None, Reject(str(path), error.reason, str(error)))
    return pixels, Decoded(digest, difference_hash(pixels), thumbnail(pixels), None)


def decode_all(
    candidates: list[Candidate], config: PreprocessConfig, staging_path: Path
) -> list[Decoded]:
    """Decodes every candidate on all cores; each worker writes its pixels straight into
    the staging shard at the candidate's index, so only small facts travel back."""
    tasks = [
        (index, candidate.path, candidate.source, candidate.poster_id)
        for index, candidate in enumerate(candidates)
    ]
    decode = functools.partial(_decode_into_staging, staging_path=staging_path, config=config)
    workers = workers_of(config)
    progress = functools.partial(
        tqdm, total=len(tasks), desc="decoding posters", unit="poster", disable=None
    )
    if workers == 1 or len(tasks) < SERIAL_BELOW:
        return list(progress(map(decode, tasks)))
    # Spawned workers import only these light modules, never a parent's TensorFlow state.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(progress(pool.map(decode, tasks, chunksize=32)))


def workers_of(config: PreprocessConfig) -> int:
    return config.workers or os.cpu_count() or 1


_open_staging: dict[Path, Shard] = {}


def _decode_into_staging(
    task: tuple[int, Path, str, str], staging_path: Path, config: PreprocessConfig
) -> Decoded:
    index, path, source, poster_id = task
    pixels, facts = decode_file(path, config.size, config.max_pixels, config.reduced_decode)
    if pixels is not None:
        if staging_path not in _open_staging:  # Its header read once per process.
            _open_staging[staging_path] = Shard(staging_path)
        _open_staging[staging_path].write(index, pixels[None])
    if facts.reject is not None:
        # Rejects name the source as the manifest would, relative to the input root.
        facts = dataclasses.replace(
            facts, reject=dataclasses.replace(facts.reject, source=source, id=poster_id)
        )
    return facts


def prepare(config: PreprocessConfig) -> PreparedData:
    """Runs the whole step and writes the prepared dataset to `config.out`.

    One process at a time writes a folder (a second one stops and says why), and
    dataset.json, the mark of a complete dataset, is removed first and written last.
    """
    out_dir = Path(config.out)
    busy = f"another preprocess is writing {out_dir}; wait for it to finish or choose another --out"
    with exclusive(out_dir / ".lock", wait=False, busy_message=busy), disk.writing(out_dir):
        (out_dir / "dataset.json").unlink(missing_ok=True)
        return _prepare(config, out_dir)


def _prepare(config: PreprocessConfig, out_dir: Path) -> PreparedData:
    listing = list_inputs(config)
    candidates = listing.candidates
    # The staging shard and the split shards hold every poster once each; the space is
    # checked before any decoding, so a full disk stops the step at once, not at its end.
    poster_bytes = config.size * config.size * 3
    disk.require_space(
        out_dir, 2 * len(candidates) * poster_bytes + 2**20, f"{len(candidates)} posters"
    )
    staging_path = out_dir / "staging.npy"
    create_shard(staging_path, (max(1, len(candidates)), config.size, config.size, 3))
    staging = Shard(staging_path)
    try:
        decoded = decode_all(candidates, config, staging_path)
        group_of = duplicate_group_of(decoded, config)
        decoded = reject_conflicting_duplicates(candidates, decoded, group_of)
        rejects = write_rejects(
            listing.rejects + [d.reject for d in decoded if d.reject is not None], out_dir
        )
        accepted = [i for i, d in enumerate(decoded) if d.reject is None]
        if not accepted:
            raise DatasetError(
                f"no poster was accepted out of {listing.inputs} inputs; reasons in {out_dir / 'rejects.csv'}"
            )
        # A group is kept or rejected whole, so each kept poster's group root is kept too.
        position = {index: place for place, index in enumerate(accepted)}
        manifest = build_manifest(
            [candidates[i] for i in accepted],
            [decoded[i] for i in accepted],
            [position[group_of[i]] for i in accepted],
            config,
        )
        manifest = with_annotations(manifest, staging_path, accepted, config)
        write_annotation_failures(manifest, out_dir)
        write_shards(manifest, staging, accepted, out_dir)
    finally:
        _open_staging.pop(staging_path, None)
        staging_path.unlink(missing_ok=True)
    return write_prepared(
        out_dir,
        manifest,
        pixel_settings(config),
        lambda digest: dataset_info(manifest, rejects, listing.inputs, config, digest),
    )


def with_annotations(
    manifest: pd.DataFrame, staging_path: Path, accepted: list[int], config: PreprocessConfig
) -> pd.DataFrame:
    """The manifest with each poster's detected regions and design attributes beside it
    (data/annotations.py), read from the staging shard; as it is without --annotate."""
    if not config.annotate:
        return manifest
    found = annotate_shard(
        str(staging_path),
        accepted,
        config.annotation_timeout,
        workers_of(config),
        ANNOTATE_SERIAL_BELOW,
    )
    return pd.concat([manifest, found], axis=1)


def duplicate_group_of(decoded: list[Decoded], config: PreprocessConfig) -> dict[int, int]:
    """Each decoded poster's duplicate group, as the index of the group's root poster (the
    exact and near duplicates of dedup.py), computed once for rejects and splits alike."""
    good = [i for i, d in enumerate(decoded) if d.reject is None]
    if not good:
        return {}
    roots = duplicate_groups(
        [decoded[i].sha256 for i in good],
        [decoded[i].dhash for i in good],
        np.stack([np.asarray(decoded[i].thumbnail) for i in good]),
        config.near_duplicate_bits,
        config.near_duplicate_difference,
    )
    return {index: good[root] for index, root in zip(good, roots, strict=True)}


def reject_conflicting_duplicates(
    candidates: list[Candidate], decoded: list[Decoded], group_of: dict[int, int]
) -> list[Decoded]:
    """Rejects every member of a duplicate group whose members disagree on the label: the
    poster's label cannot be trusted, and such groups would skew the stratified splits."""
    labels_of: dict[int, set[int]] = {}
    for index, root in group_of.items():
        labels_of.setdefault(root, set()).add(candidates[index].label)
    decoded = list(decoded)
    for index, root in group_of.items():
        if len(labels_of[root]) > 1:
            first = candidates[root]
            detail = f"duplicate of {first.source} (id {first.poster_id}); the group holds both fresh and rotten labels"
            decoded[index] = dataclasses.replace(
                decoded[index],
                reject=Reject(
                    candidates[index].source,
                    "duplicates with conflicting labels",
                    detail,
                    candidates[index].poster_id,
                ),
            )
    return decoded


def build_manifest(
    candidates: list[Candidate], decoded: list[Decoded], roots: list[int], config: PreprocessConfig
) -> pd.DataFrame:
    """The manifest of the accepted posters; `roots[i]` is poster i's group root there."""
    labels = [c.label for c in candidates]
    fractions = (config.train_fraction, config.validation_fraction, config.test_fraction)
    splits = grouped_stratified_split(labels, roots, fractions, config.seed)
    manifest = pd.DataFrame(
        {
            "id": [c.poster_id for c in candidates],
            "source": [c.source for c in candidates],
            "sha256": [d.sha256 for d in decoded],
            "label": labels,
            "class": [CLASS_NAMES[label] for label in labels],
            "split": splits,
            "group": [candidates[root].poster_id for root in roots],
        }
    )
    for column in dict.fromkeys(key for c in candidates for key in c.extras):
        manifest[column] = [c.extras.get(column, "") for c in candidates]
    # Each split's shard holds its posters in manifest order; `row` is the index there.
    manifest.insert(6, "row", manifest.groupby("split").cumcount())
    return manifest


def summary_text(dataset: PreparedData) -> str:
    """The summary the step prints: accepted and rejected by reason add up to the inputs."""
    info = dataset.info
    lines = [
        f"prepared {info['accepted']} of {info['inputs']} posters into {dataset.path} (digest {info['digest'][:12]})"
    ]
    for split, counts in info["counts"].items():
        lines.append(
            f"  {split:<10} {sum(counts.values()):>6}  (fresh {counts['fresh']}, rotten {counts['rotten']})"
        )
    if "annotation" in info:
        annotated = info["annotation"]
        lines.append(
            f"  annotated  {annotated['annotated']:>6}  (a title found on {annotated['with_title']}, "
            f"faces on {annotated['with_faces']}; {annotated['failed']} failed, listed in annotation_failures.csv)"
        )
    lines.append(f"  accepted   {info['accepted']:>6}")
    lines.append(f"  rejected   {info['rejected']:>6}")
    for reason, count in info["rejected_by_reason"].items():
        lines.append(f"    {reason:<36} {count:>6}")
    return "\n".join(lines)
