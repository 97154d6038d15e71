"""An MLflow dataset source for prepared data logged to a preprocess run, so that the
datasets of train and evaluate runs name where any machine can fetch them.

MLflow resolves no runs:/ source of its own; this one is registered as an
`mlflow.dataset_source` entry point (pyproject.toml), so MLflow reads it back too. MLflow
imports it while it starts, so it imports nothing of MLflow's but the base class.
"""

from __future__ import annotations

from mlflow.data.dataset_source import DatasetSource


class PreparedRunSource(DatasetSource):
    """runs:/<preprocess run id>/prepared; load() fetches it into the local cache."""

    def __init__(self, uri: str):
        self._uri = uri

    @property
    def uri(self) -> str:
        return self._uri

    @staticmethod
    def _get_source_type() -> str:
        return "poster_ml_prepared_run"

    def load(self) -> str:
        from poster_ml.tracking.datasets import run_dataset

        return str(run_dataset(self._uri).path)

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return isinstance(raw_source, str) and raw_source.startswith("runs:/")

    @classmethod
    def _resolve(cls, raw_source) -> PreparedRunSource:
        return cls(raw_source)

    def to_dict(self) -> dict:
        return {"uri": self._uri}

    @classmethod
    def from_dict(cls, source_dict: dict) -> PreparedRunSource:
        return cls(source_dict["uri"])
