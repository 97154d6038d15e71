"""The run schema: the tags that say what a run is, and every search for runs.

Each step's run carries `poster_ml.step` (preprocess, train, train_variant, trial,
evaluate, register, main); a variant run hangs under its train run, a trial run under its
variant run (MLflow's parent tag). Every question the package asks the store about runs
is answered here, so that a word such as "latest" means one thing: the latest finished run
of that step in any experiment of the store. A run asked for that is not there is a one-line
error naming what to run first.
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from poster_ml.databases import redacted
from poster_ml.errors import DatasetError, TrackingStoreError

STEP_TAG = "poster_ml.step"
PARENT_TAG = mlflow_tags.MLFLOW_PARENT_RUN_ID
FAILURE_TAG = "poster_ml.failure"  # Why a run was marked FAILED by a later start.
PREPARED_URI_TAG = "prepared_uri"  # Where a preprocess run logged its prepared dataset.
DIGEST_TAG = "dataset_digest"  # The prepared dataset a run used, by its digest.
NEWEST_FIRST = ["attributes.start_time DESC"]


def step_tag(step: str) -> dict[str, str]:
    return {STEP_TAG: step}


def digest_of(run: mlflow.entities.Run) -> str:
    return run.data.tags.get(DIGEST_TAG, "")


def all_experiment_ids(client: MlflowClient) -> list[str]:
    return [experiment.experiment_id for experiment in client.search_experiments()]


def latest_finished(step: str, condition: str = "") -> mlflow.entities.Run | None:
    """The latest finished run of a step in any experiment, meeting `condition` (more of
    MLflow's filter, or nothing)."""
    client = MlflowClient()
    runs = client.search_runs(
        all_experiment_ids(client),
        f"tags.`{STEP_TAG}` = '{step}' and attributes.status = 'FINISHED'"
        + (f" and {condition}" if condition else ""),
        order_by=NEWEST_FIRST,
        max_results=1,
    )
    return runs[0] if runs else None


def latest_train_run() -> mlflow.entities.Run | None:
    return latest_finished("train")


def latest_evaluate_run(train_run_id: str) -> mlflow.entities.Run | None:
    return latest_finished("evaluate", f"tags.train_run_id = '{train_run_id}'")


def latest_prepared_run() -> mlflow.entities.Run | None:
    """The latest finished preprocess run that logged its prepared dataset."""
    return latest_finished("preprocess", f"tags.{PREPARED_URI_TAG} != ''")


def child_runs(parent: mlflow.entities.Run) -> list[mlflow.entities.Run]:
    """The runs nested under a run, oldest first."""
    return MlflowClient().search_runs(
        [parent.info.experiment_id],
        f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )


def child_run_named(parent_id: str, name: str) -> mlflow.entities.Run | None:
    """The latest nested run of that name under a run."""
    client = MlflowClient()
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`{PARENT_TAG}` = '{parent_id}' and attributes.run_name = '{name}'",
        order_by=NEWEST_FIRST,
        max_results=1,
    )
    return runs[0] if runs else None


def runs_of_config(
    experiment_id: str, step: str, key_tag: str, key: str
) -> list[mlflow.entities.Run]:
    """The two latest runs of a step with this config key, in any state."""
    return MlflowClient().search_runs(
        [experiment_id],
        f"tags.`{key_tag}` = '{key}' and tags.`{STEP_TAG}` = '{step}'",
        order_by=NEWEST_FIRST,
        max_results=2,
    )


def running_runs(experiment_id: str) -> list[mlflow.entities.Run]:
    return MlflowClient().search_runs([experiment_id], "attributes.status = 'RUNNING'")


def finished_entry_point_runs(experiment_id: str, entry_point: str) -> list[mlflow.entities.Run]:
    """The finished `mlflow run` runs of one entry point of this project, newest first."""
    return MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}' "
        "and attributes.status = 'FINISHED'",
        order_by=NEWEST_FIRST,
    )


def find_train_run(train_run: str) -> mlflow.entities.Run:
    """The train step's parent run by id, or the latest finished one for 'latest'."""
    client = MlflowClient()
    if train_run != "latest":
        try:
            return client.get_run(train_run)
        except MlflowException as error:
            # Only a run that is not there is "no such run"; an unreachable store or
            # refused credentials say so (store.store_error).
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise TrackingStoreError(
                f"no such train run: {train_run} (in the tracking store {redacted(mlflow.get_tracking_uri())})"
            ) from error
    latest = latest_train_run()
    if latest is None:
        raise DatasetError(
            "no finished train run in the tracking store; run `poster-ml train` first or pass --model-uri"
        )
    return latest


def evaluation_report(train_run_id: str) -> str | None:
    """The report of the latest finished evaluate run of a train run, as a runs:/ URI."""
    evaluation = latest_evaluate_run(train_run_id)
    return f"runs:/{evaluation.info.run_id}/report.html" if evaluation else None
