"""The preprocess step: posters in, validated, resized, de-duplicated and split, as one run."""

from __future__ import annotations

from poster_ml.config import PreprocessConfig
from poster_ml.data.prepare import prepare, summary_text
from poster_ml.data.prepared import PreparedData
from poster_ml.tracking import artifacts, runs


def preprocess_step(config: PreprocessConfig) -> PreparedData:
    with runs.step_run("preprocess", {"preprocess": config}, seed=config.seed):
        dataset = prepare(config)
        artifacts.log_preprocess(dataset)
    print(summary_text(dataset))
    return dataset
