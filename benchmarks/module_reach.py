"""How many of the package's modules a reader opens to follow each step, and the package's
size: modules and lines, of the whole package and of tracking/.

Two counts per step. Imported: the step's module under poster_ml/steps/ and every package
module it imports, at the top or inside a function, followed transitively (an upper bound:
importing the config brings every step's settings). Run: the package modules in which a
function (not only the module's own top level) runs while the step runs in this process on
tiny synthetic posters, what a reader opens to follow one poster through that step
(`--run`, the working tree only: a minute on two cores).

    python benchmarks/module_reach.py                 # the working tree
    python benchmarks/module_reach.py --rev 98ccbba   # a commit, read from git
    python benchmarks/module_reach.py --run           # also the modules each step runs
    python benchmarks/module_reach.py --run --list    # ... and names them
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("preprocess", "train", "evaluate", "register", "predict", "serve", "main")
# Where a served request enters, by the layout of the commit read.
SERVED_REQUEST = ("poster_ml.serving.app", "poster_ml.tracking.serving_app")


def package_sources(rev: str | None) -> dict[str, str]:
    """Every module of poster_ml by dotted name, from the working tree or from `rev`."""
    if rev is None:
        paths = {str(p.relative_to(ROOT)): p.read_text() for p in ROOT.glob("poster_ml/**/*.py")}
    else:
        names = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", rev, "poster_ml/"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        paths = {
            name: subprocess.run(
                ["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True
            ).stdout
            for name in names
            if name.endswith(".py")
        }
    return {
        path.removesuffix(".py").removesuffix("/__init__").replace("/", "."): source
        for path, source in paths.items()
    }


def imported(source: str, modules: dict[str, str]) -> set[str]:
    """The package modules a source imports (a name imported from a package that is itself
    a module counts as that module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def reach(start: str, modules: dict[str, str]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported(modules[name], modules) - seen)
    return {name for name in seen if modules[name].strip()}


def modules_run(arguments: list[str]) -> set[str]:
    """The package modules with a function called while `poster-ml <arguments>` runs."""
    from poster_ml.cli import main as poster_ml

    def run() -> None:
        if poster_ml(arguments) != 0:
            raise SystemExit(f"poster-ml {arguments[0]} failed")

    return modules_called(run)


def modules_called(work) -> set[str]:
    """The package modules with a function called while `work()` runs."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    work()
    profile.disable()
    package = str(ROOT / "poster_ml")
    return {
        str(Path(file).relative_to(package))
        for file, _line, function in pstats.Stats(profile).stats  # type: ignore[attr-defined]
        if file.startswith(package) and function != "<module>"
    }


def run_counts(folder: Path) -> dict[str, set[str]]:
    """Preprocess, train, evaluate, register and predict on 120 posters of 40 pixels in a
    store of their own in `folder`; the modules each one ran."""
    import os

    os.chdir(folder)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    posters = str(folder / "posters")
    steps = {
        "preprocess": ["preprocess", "--count", "120", "--size", "40", "--out", "data/prepared"],
        "train": [
            *("train", "--profile", "quick", "--variants", "basic_cnn", "--trials", "0"),
            *("--overrides", "max_epochs=3 batch_size=16"),
        ],
        "evaluate": ["evaluate", "--bootstrap-samples", "20", "--cam-posters", "2"],
        "register": ["register", "--allow-cpu", "true"],
    }
    counts = {step: modules_run(arguments) for step, arguments in steps.items()}
    Path(posters).mkdir()
    for image in sorted((folder / "data/prepared/synthetic/images").iterdir())[:4]:
        (Path(posters) / image.name).write_bytes(image.read_bytes())
    counts["predict"] = modules_run(
        [
            "predict",
            posters,
            "--model",
            "models:/poster-ml/1",
            "--cam",
            str(folder / "cams"),
            "--out",
            str(folder / "p.csv"),
        ]
    )
    counts["served request"] = served_request(sorted(Path(posters).iterdir())[0])
    return counts


def served_request(poster: Path) -> set[str]:
    """What one request with explanations runs: the pyfunc's load (once per server) and its
    answer, plus the guarded app's own module, which wraps it."""
    import mlflow
    import pandas as pd

    def request() -> None:
        model = mlflow.pyfunc.load_model("models:/poster-ml/1")
        model.predict(pd.DataFrame({"image": [poster.read_bytes()]}), params={"explain": True})

    return modules_called(request) | {"the guarded app"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="a commit to read instead of the working tree")
    parser.add_argument("--run", action="store_true", help="also count the modules each step runs")
    parser.add_argument("--list", action="store_true", help="with --run, name those modules")
    arguments = parser.parse_args()
    modules = package_sources(arguments.rev)
    code = {name: source for name, source in modules.items() if source.strip()}
    tracking = {
        name: source for name, source in code.items() if name.startswith("poster_ml.tracking.")
    }
    print(f"package: {len(code)} modules, {sum(len(s.splitlines()) for s in code.values())} lines")
    print(
        f"tracking/: {len(tracking)} modules, {sum(len(s.splitlines()) for s in tracking.values())} lines"
    )
    starts = {step: f"poster_ml.steps.{step}" for step in STEPS}
    starts["served request"] = next(name for name in SERVED_REQUEST if name in modules)
    for step, start in starts.items():
        print(f"{step}: {len(reach(start, modules))} modules imported")
    if arguments.run:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            for step, names in run_counts(Path(folder)).items():
                print(f"{step}: {len(names)} modules run")
                if arguments.list:
                    print("   ", ", ".join(sorted(names)))


if __name__ == "__main__":
    main()
