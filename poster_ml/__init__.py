"""poster-ml: predict from a movie poster whether the film is fresh or rotten, and show why."""

__version__ = "0.1.0"

CLASS_NAMES = ("rotten", "fresh")
"""Label 0 is rotten and label 1 is fresh, as in the study."""
