"""Where a model logged before serving became a package of its own finds its pyfunc.

Such a model's `served_model.py` imports `PosterClassifier` from here, and a process that
has already imported this package loads it with this package's code (MLflow puts the
model's own code first on the path, but a package already imported stays as it was): the
register gate's champion and an evaluation by model URI are such loads.
"""

from poster_ml.serving.model import PosterClassifier

__all__ = ["PosterClassifier"]
