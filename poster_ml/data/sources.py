"""Turns the three input layouts into one list of candidate posters and a list of rejects.

Layouts: a labels CSV with a folder of posters, a folder with class folders fresh/ and
rotten/, or the synthetic generator (which writes the CSV layout). Nothing is decoded
here; problems found from the listing alone (missing file, unknown label, a path that
escapes the images folder, conflicting duplicate ids) become rejects.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import defaultdict
from pathlib import Path

import pandas as pd

from poster_ml.config import PreprocessConfig
from poster_ml.data.synthetic import (
    PEOPLE_COLUMNS,
    PLANTED_COLUMN,
    REGION_COLUMNS,
    TITLE_COLUMNS,
    write_synthetic_posters,
)
from poster_ml.errors import DatasetError, first_line

ID_COLUMNS = ("movie_id", "id", "imdb_id")
LABEL_COLUMNS = ("tomatometer_status", "label")
PATH_COLUMNS = ("poster", "path", "url")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
LABEL_VALUES = {
    "fresh": 1,
    "certified-fresh": 1,
    "certified fresh": 1,
    "certified_fresh": 1,
    "1": 1,
    "1.0": 1,
    "rotten": 0,
    "0": 0,
    "0.0": 0,
}


@dataclasses.dataclass(frozen=True)
class Candidate:
    poster_id: str
    path: Path
    source: str  # The path relative to the input root, as the manifest records it.
    label: int
    extras: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Reject:
    source: str
    reason: str
    detail: str = ""
    id: str = ""  # The input's id (a CSV row's, or a class folder file's stem), where it has one.


@dataclasses.dataclass(frozen=True)
class Listing:
    candidates: list[Candidate]
    rejects: list[Reject]
    inputs: int


def parse_label(value: str) -> int | None:
    return LABEL_VALUES.get(str(value).strip().lower())


@dataclasses.dataclass(frozen=True)
class CsvColumns:
    """Which columns of a labels CSV hold what (`path` is optional)."""

    id: str
    label: str
    path: str | None
    extras: list[str]  # The synthetic generator's known regions, kept with each poster.


def read_labels_csv(labels_csv: Path) -> tuple[pd.DataFrame, CsvColumns]:
    """The labels CSV as text, and its columns; one line of error when it cannot serve."""
    if not labels_csv.is_file():
        raise DatasetError(f"no such labels CSV: {labels_csv}")
    try:
        table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(first_line(f"cannot read labels CSV {labels_csv}: {error}")) from None
    columns = {name.strip().lower(): name for name in table.columns}
    id_column = next((columns[c] for c in ID_COLUMNS if c in columns), None)
    label_column = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
    path_column = next((columns[c] for c in PATH_COLUMNS if c in columns), None)
    if id_column is None:
        raise DatasetError(f"{labels_csv} has no id column (one of {', '.join(ID_COLUMNS)})")
    if label_column is None:
        raise DatasetError(f"{labels_csv} has no label column (one of {', '.join(LABEL_COLUMNS)})")
    known = (PLANTED_COLUMN, *REGION_COLUMNS, *TITLE_COLUMNS, *PEOPLE_COLUMNS)
    extras = [c for c in known if c in table.columns]
    return table, CsvColumns(id_column, label_column, path_column, extras)


def list_csv_source(labels_csv: Path, images_dir: Path | None) -> Listing:
    """Lists the posters of a labels CSV whose files lie in (or below) `images_dir`, or
    whose poster column holds URLs (fetched and cached first: data/fetch.py)."""
    table, columns = read_labels_csv(labels_csv)
    if columns.path and table[columns.path].str.contains("://", regex=False).any():
        return list_url_source(labels_csv, table, columns)
    if images_dir is None:
        raise DatasetError("a labels CSV needs --images DIR, the folder of its posters")
    if not images_dir.is_dir():
        raise DatasetError(f"no such images folder: {images_dir}")
    root = images_dir.resolve()
    files_by_name = {path.name.lower(): path for path in root.iterdir() if path.is_file()}
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        listed = csv_poster(row, columns, root, files_by_name, f"{labels_csv.name}:{line}")
        if isinstance(listed, Candidate):
            candidates.append(listed)
        else:
            rejects.append(listed)
    kept, duplicate_rejects = _resolve_duplicate_ids(candidates)
    return Listing(kept, rejects + duplicate_rejects, inputs=len(table))


def csv_poster(
    row: dict, columns: CsvColumns, root: Path, files_by_name: dict, line: str
) -> Candidate | Reject:
    """One row of the labels CSV: the poster it names, or why it is rejected."""
    poster_id = row[columns.id].strip()
    named_path = row[columns.path].strip() if columns.path else ""
    where = named_path or poster_id or line
    if not poster_id:
        return Reject(where, "missing id", f"CSV line {line.rsplit(':', 1)[-1]}")
    label = parse_label(row[columns.label])
    if label is None:
        return Reject(where, "unknown label", repr(row[columns.label]), poster_id)
    path = _inside(root, named_path) if named_path else _find_by_id(root, poster_id, files_by_name)
    if path is None:
        return Reject(where, "path escapes images folder", named_path or poster_id, poster_id)
    if not path.is_file():
        return Reject(where, "missing file", f"no poster file for id {poster_id!r}", poster_id)
    extras = {column: row[column] for column in columns.extras}
    return Candidate(poster_id, path, path.relative_to(root).as_posix(), label, extras)


def list_url_source(labels_csv: Path, table: pd.DataFrame, columns: CsvColumns) -> Listing:
    """The posters of a labels CSV of URLs: each fetched (or found in the cache), or a
    reject with the reason it could not be had."""
    from poster_ml.data.fetch import Refused, fetch_posters

    rows = table.to_dict("records")
    urls = [str(row[columns.path or ""]).strip() for row in rows]
    fetched = fetch_posters(urls)
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    for line, (row, url) in enumerate(zip(rows, urls, strict=True), start=2):
        poster_id = str(row[columns.id]).strip()
        label = parse_label(row[columns.label])
        result = fetched[url]
        if not poster_id or label is None:
            reason = "missing id" if not poster_id else "unknown label"
            rejects.append(Reject(url, reason, f"{labels_csv.name}:{line}", poster_id))
        elif isinstance(result, Refused):
            rejects.append(Reject(url, result.reason, result.detail, poster_id))
        else:
            extras = {column: row[column] for column in columns.extras}
            candidates.append(Candidate(poster_id, result, url, label, extras))
    kept, duplicate_rejects = _resolve_duplicate_ids(candidates)
    return Listing(kept, rejects + duplicate_rejects, inputs=len(table))


def list_folder_source(folder: Path) -> Listing:
    """Lists the posters in the class folders fresh/ and rotten/ of `folder`."""
    class_dirs = {label: folder / name for name, label in (("fresh", 1), ("rotten", 0))}
    if not any(path.is_dir() for path in class_dirs.values()):
        raise DatasetError(f"{folder} has neither a fresh/ nor a rotten/ class folder")
    candidates = []
    root = folder.resolve()
    for label, class_dir in class_dirs.items():
        if not class_dir.is_dir():
            continue
        for path in sorted(class_dir.iterdir()):
            # Hidden files (.DS_Store, ._ resource forks) are not posters anyone put there.
            if path.is_file() and not path.name.startswith("."):
                candidates.append(
                    Candidate(
                        path.stem,
                        path.resolve(),
                        path.resolve().relative_to(root).as_posix(),
                        label,
                    )
                )
    kept, rejects = _resolve_duplicate_ids(candidates)
    return Listing(kept, rejects, inputs=len(candidates))


def _find_by_id(root: Path, poster_id: str, files_by_name: dict[str, Path]) -> Path | None:
    """The poster file `<id>.<jpg|jpeg|png|webp>`; a missing one gives its would-be path."""
    if "/" not in poster_id and "\\" not in poster_id and poster_id not in (".", ".."):
        found = (files_by_name.get(poster_id.lower() + extension) for extension in IMAGE_EXTENSIONS)
        return next((path for path in found if path is not None), root / poster_id)
    base = _inside(root, poster_id)
    if base is None:
        return None
    candidates = (base.with_name(base.name + extension) for extension in IMAGE_EXTENSIONS)
    return next((path for path in candidates if path.is_file()), base)


def _inside(root: Path, relative: str) -> Path | None:
    """`root / relative` if it stays inside root (after resolving links), else None."""
    if Path(relative).is_absolute():
        return None
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) else None


def _resolve_duplicate_ids(candidates: list[Candidate]) -> tuple[list[Candidate], list[Reject]]:
    """Keeps the first of repeated ids with one label; rejects every row of conflicting ones."""
    by_id: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        by_id[candidate.poster_id].append(candidate)
    kept, rejects = [], []
    for poster_id, group in by_id.items():
        if len({c.label for c in group}) > 1:
            rejects += [
                Reject(c.source, "conflicting labels for duplicate id", poster_id, poster_id)
                for c in group
            ]
            continue
        kept.append(group[0])
        rejects += [Reject(c.source, "duplicate id", poster_id, poster_id) for c in group[1:]]
    kept.sort(key=lambda c: (c.poster_id, c.source))
    return kept, rejects


def list_inputs(config: PreprocessConfig) -> Listing:
    """Lists the candidate posters of whichever layout `config.source` names."""
    if config.source == "synthetic":
        raw = Path(config.out) / "synthetic"
        if raw.exists():
            shutil.rmtree(raw)
        labels_csv = write_synthetic_posters(raw, config.count, config.seed, config.label_noise)
        return list_csv_source(labels_csv, raw / "images")
    source = Path(config.source)
    if source.is_dir():
        return list_folder_source(source)
    if source.is_file() or source.suffix.lower() == ".csv":
        return list_csv_source(source, Path(config.images) if config.images else None)
    raise DatasetError(
        f"no such source: {config.source} (give 'synthetic', a labels CSV or a folder)"
    )
