"""MLproject entry point 'preprocess': parses its parameters and calls the package."""

import sys
from pathlib import Path

# MLflow runs this file from the project folder; make the package importable uninstalled.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poster_ml.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
