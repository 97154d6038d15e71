"""poster-ml: predict from a movie poster whether the film is fresh or rotten, and show why."""

import logging

__version__ = "0.4.0"

# A library's convention: its logger prints nothing of its own until the application (our
# command line, or the user's code) gives it a handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())

CLASS_NAMES = ("rotten", "fresh")
"""Label 0 is rotten and label 1 is fresh, as in the study."""

DECISION_THRESHOLD = 0.5
"""A poster is called fresh when its probability of fresh is at least this. Metrics, CAM
grids and the served model share it; it travels with the model in its settings."""


def predicted_fresh(probabilities, threshold: float = DECISION_THRESHOLD):
    """True where the probability of fresh reaches the decision threshold: the one rule that
    turns a probability into a label, for the metrics, the maps and the served answer."""
    return probabilities >= threshold
