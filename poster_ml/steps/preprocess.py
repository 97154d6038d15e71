"""The preprocess step: posters in, validated, resized, de-duplicated and split, as one run."""

from __future__ import annotations

import logging

from poster_ml.config import PreprocessConfig
from poster_ml.data.prepare import prepare, summary_text
from poster_ml.data.prepared import PreparedData
from poster_ml.tracking import datasets, runs

log = logging.getLogger(__name__)


def preprocess_step(config: PreprocessConfig) -> PreparedData:
    with runs.step_run("preprocess", {"preprocess": config}, seed=config.seed):
        dataset = prepare(config)
        log_data = config.log_data == "true" or (
            config.log_data == "auto" and datasets.tracking_is_remote()
        )
        dataset = datasets.log_preprocess(dataset, log_data)
    log.info(summary_text(dataset))
    if log_data:
        log.info(f"logged with the run: other machines train on it with --data {dataset.uri}")
    return dataset
