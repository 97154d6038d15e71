"""Prepared data that travels through the tracking store: logged by preprocess, fetched
with --data runs:/<id>/prepared or latest into a cache keyed by digest, checked, fetched
once by two processes, and never trusted half-downloaded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from poster_ml.cli import main
from poster_ml.data.prepared import load_prepared
from poster_ml.errors import DatasetError
from poster_ml.tracking import datasets

PREPROCESS = ["preprocess", "--count", "60", "--size", "32", "--out", "prepared"]


@pytest.fixture
def logged_dataset(tmp_path):
    """A preprocess run that logged its data; the original folder is then moved away, as
    on another machine, so that only the run's copy can be read."""
    assert main([*PREPROCESS, "--log-data", "true"]) == 0
    Path("prepared").rename("prepared-elsewhere")
    original = load_prepared("prepared-elsewhere")
    run = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("poster-ml").experiment_id],
        "tags.`poster_ml.step` = 'preprocess'",
    )[0]
    return run, original


def artifact_file(run, name: str) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://")) / "prepared" / name


def count_downloads(monkeypatch, delay: float = 0.0) -> list[str]:
    calls: list[str] = []
    download = mlflow.artifacts.download_artifacts

    def counted(**kwargs):
        calls.append(kwargs["artifact_uri"])
        time.sleep(delay)
        return download(**kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", counted)
    return calls


def test_a_logged_dataset_is_downloaded_once_and_is_the_same_dataset(logged_dataset, monkeypatch):
    run, original = logged_dataset
    uri = run.data.tags["prepared_uri"]
    assert uri == f"runs:/{run.info.run_id}/prepared"
    downloads = count_downloads(monkeypatch)
    copy = datasets.open_data(uri)
    assert copy.digest == original.digest and copy.uri == uri
    assert copy.path == datasets.cache_root() / original.digest
    for split in ("train", "test"):
        assert (copy.reader(split).read([0, 1]) == original.reader(split).read([0, 1])).all()
    assert datasets.open_data("latest").path == copy.path
    assert downloads == [uri]  # The second and third open found the cache.


def test_a_train_run_on_fetched_data_names_the_preprocess_run_as_its_source(logged_dataset):
    run, original = logged_dataset
    uri = run.data.tags["prepared_uri"]
    overrides = "max_epochs=1 batch_size=16"
    arguments = ["--variants", "basic_cnn", "--trials", "0", "--overrides", overrides]
    assert main(["train", "--profile", "quick", "--data", "latest", *arguments]) == 0
    train = MlflowClient().search_runs([run.info.experiment_id], "tags.`poster_ml.step` = 'train'")[
        0
    ]
    assert train.data.tags["data_uri"] == uri
    assert train.data.tags["dataset_digest"] == original.digest
    dataset = train.inputs.dataset_inputs[0].dataset
    assert json.loads(dataset.source) == {"uri": uri}
    assert mlflow.data.get_source(dataset).load() == str(datasets.cache_root() / original.digest)


def test_two_processes_on_one_machine_download_a_dataset_once(logged_dataset, monkeypatch):
    run, _ = logged_dataset
    downloads = count_downloads(monkeypatch, delay=1.0)
    paths = []
    threads = [
        threading.Thread(
            target=lambda: paths.append(datasets.open_data(run.data.tags["prepared_uri"]).path)
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(downloads) == 1 and len(set(paths)) == 1 and len(paths) == 2


def test_a_damaged_download_is_refused_and_leaves_nothing_in_the_cache(logged_dataset):
    run, _ = logged_dataset
    shard = artifact_file(run, "train.npy")
    shard.write_bytes(shard.read_bytes()[:-10] + bytes(10))
    with pytest.raises(DatasetError, match=r"damaged or incomplete \(train.npy"):
        datasets.open_data(run.data.tags["prepared_uri"])
    assert list(datasets.cache_root().iterdir()) == [
        datasets.cache_root() / f"{run.data.tags['dataset_digest']}.lock"
    ]


def test_a_dataset_whose_digest_differs_from_its_run_is_refused(logged_dataset):
    # Files consistent with their checksums, but not the dataset the run logged: a
    # manifest with one label flipped is other data, and must never be trained on.
    run, _ = logged_dataset
    manifest = artifact_file(run, "manifest.csv")
    lines = manifest.read_text().splitlines()
    flipped = (",fresh,", ",rotten,") if ",fresh," in lines[1] else (",rotten,", ",fresh,")
    lines[1] = lines[1].replace(*flipped)
    manifest.write_text("\n".join(lines) + "\n")
    checksums = json.loads(artifact_file(run, "checksums.json").read_text())
    from poster_ml.data.prepared import file_checksums

    checksums |= file_checksums([manifest])
    artifact_file(run, "checksums.json").write_text(json.dumps(checksums))
    with pytest.raises(DatasetError, match=r"digest is \w+, not the"):
        datasets.open_data(run.data.tags["prepared_uri"])


def test_an_interrupted_download_is_never_trusted_and_the_next_run_completes_it(
    logged_dataset, monkeypatch
):
    run, original = logged_dataset
    uri = run.data.tags["prepared_uri"]
    download = mlflow.artifacts.download_artifacts

    def killed_midway(**kwargs):
        copy = Path(download(**kwargs))
        (copy / "test.npy").unlink()  # As if the process died before the last file.
        raise KeyboardInterrupt

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        datasets.open_data(uri)
    assert not (datasets.cache_root() / original.digest).exists()
    # A process killed outright leaves its partial folder behind: it is cleared, not read.
    stale = datasets.cache_root() / f".{original.digest}.partial-1"
    (stale / "prepared").mkdir(parents=True)
    (stale / "prepared" / "dataset.json").write_text("{}")
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    assert datasets.open_data(uri).digest == original.digest
    assert not stale.exists()


def test_data_from_a_run_that_logged_none_is_a_one_line_error(tmp_path, capsys):
    assert main([*PREPROCESS, "--log-data", "false"]) == 0
    assert main(["train", "--data", "latest", "--variants", "basic_cnn"]) == 1
    assert "no finished preprocess run in the tracking store logged its prepared data" in (
        capsys.readouterr().err
    )
    run = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("poster-ml").experiment_id],
        "tags.`poster_ml.step` = 'preprocess'",
    )[0]
    assert (
        datasets.open_data(f"runs:/{run.info.run_id}/prepared").path.resolve()
        == Path("prepared").resolve()
    ), "on the machine that prepared it, a run's data is the folder it wrote"
    Path("prepared").rename("prepared-elsewhere")  # As on another machine.
    assert (
        main(["train", "--data", f"runs:/{run.info.run_id}/prepared", "--variants", "basic_cnn"])
        == 1
    )
    assert "logged no prepared dataset" in capsys.readouterr().err
