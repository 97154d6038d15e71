"""Every command in the README's shell blocks still works: each `poster-ml` command parses
into a valid config (the same checks as a real run, before any work), each `mlflow run`
names an entry point and parameters that MLproject has, each `make` target exists (and
`make -n` expands it), each benchmark script and option exists, and the commands that run
offline in seconds (preparing synthetic posters) are run for real."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from poster_ml.cli import build_parser
from poster_ml.config import ENTRY_POINTS, AugmentConfig, TrainConfig, chosen_profile, train_config
from poster_ml.config.settings import (
    config_from_arguments,
    parse_overrides,
    split_overrides,
    with_overrides,
)

ROOT = Path(__file__).resolve().parents[1]
# What the README's placeholders stand for when a command is checked.
PLACEHOLDERS = {"<run id>": "0123456789abcdef0123456789abcdef", "...": "secret"}


# The README and every page of the manual: the commands of each are checked alike.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shell_commands() -> list[tuple[str, list[str]]]:
    """('page:line', words) of every command in a ```bash block of the README and the
    manual, continuation lines joined, comments dropped, `A=b` assignments before a
    command left out, and the variables a block exports substituted."""
    return [
        (f"{page.relative_to(ROOT)}:{line}", words)
        for page in PAGES
        for line, words in page_commands(page.read_text().splitlines())
    ]


def page_commands(lines: list[str]) -> list[tuple[int, list[str]]]:
    commands: list[tuple[int, list[str]]] = []
    block: list | None = None
    exports: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if line.startswith("```bash"):
            block, exports = [], {}
            continue
        if block is None:
            continue
        if line.startswith("```"):
            block = None
            continue
        if block and block[-1][1].endswith("\\"):
            block[-1] = (block[-1][0], block[-1][1][:-1] + " " + line.strip())
        else:
            block.append((number, line))
        if line.endswith("\\"):
            continue
        start, text = block[-1]
        for placeholder, value in PLACEHOLDERS.items():
            text = text.replace(placeholder, value)
        for part in re.split(r"[;&]\s*(?=\S)|&$", text):
            words = shlex.split(part, comments=True)
            if words and words[0] == "export":
                exports |= dict(word.split("=", 1) for word in words[1:])
                continue
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]
            words = [expanded(word, exports) for word in words]
            if words:
                commands.append((start, words))
    return commands


def expanded(word: str, exports: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda match: exports.get(match[1], match[0]), word)


COMMANDS_IN_README = shell_commands()


def of(program: str) -> list:
    return [
        pytest.param(words, id=line) for line, words in COMMANDS_IN_README if words[0] == program
    ]


def test_the_readme_has_commands_of_every_kind_checked_here():
    programs = {words[0] for _, words in COMMANDS_IN_README}
    assert {"poster-ml", "mlflow", "make", "python"} <= programs
    assert len(of("poster-ml")) >= 12
    pages = {line.rsplit(":", 1)[0] for line, _ in COMMANDS_IN_README}
    assert {"README.md", "docs/install.md", "docs/serving.md"} <= pages


@pytest.mark.parametrize("words", of("poster-ml"))
def test_every_poster_ml_command_parses_into_a_valid_config(words):
    arguments = build_parser().parse_args(words[1:])
    config_class = ENTRY_POINTS[arguments.command]
    config = config_from_arguments(arguments, config_class)
    if arguments.command == "train":
        overrides = split_overrides(parse_overrides(config.overrides), TrainConfig, AugmentConfig)
        # 'auto' is the quick profile on a machine without a GPU, as on CI's.
        train_config(chosen_profile(config.profile, gpu=False), overrides[0])
        with_overrides(AugmentConfig(), overrides[1])


@pytest.mark.parametrize("words", of("mlflow"))
def test_every_mlflow_run_names_an_entry_point_and_parameters_it_has(words):
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    if words[1] != "run":
        assert words[1:3] in (["ui"], ["models", "serve"]) or words[1] == "ui", words
        return
    entry = words[words.index("-e") + 1]
    assert entry in entry_points, entry
    names = [words[i + 1].split("=", 1)[0] for i, word in enumerate(words) if word == "-P"]
    assert set(names) <= set(entry_points[entry].get("parameters", {})), names
    if "--env-manager" in words:
        assert words[words.index("--env-manager") + 1] in ("local", "uv", "conda", "virtualenv")


@pytest.mark.parametrize("words", of("make"))
def test_every_make_target_exists_and_expands(words):
    dry_run = subprocess.run(
        ["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert dry_run.returncode == 0, dry_run.stderr


@pytest.mark.parametrize("words", of("python") + of("bash"))
def test_every_benchmark_script_and_option_exists(words):
    script = ROOT / words[1]
    assert script.is_file(), script
    text = script.read_text()
    for option in (word for word in words[2:] if word.startswith("--")):
        assert f'"{option}"' in text, (script.name, option)


def test_the_readme_s_offline_preprocess_command_runs(tmp_path):
    (line, words), *_ = [
        (line, words)
        for line, words in COMMANDS_IN_README
        if words[:2] == ["poster-ml", "preprocess"] and "synthetic" in words
    ]
    words = [str(tmp_path / "p") if word == "/tmp/p" else word for word in words]
    words[words.index("--count") + 1] = "40"  # The same command, on fewer posters.
    finished = subprocess.run(
        [sys.executable, "-m", "poster_ml.cli", *words[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert finished.returncode == 0, (line, finished.stderr[-2000:])
    assert (tmp_path / "p" / "dataset.json").is_file()


def test_the_architecture_page_names_every_module_of_the_package():
    section = (ROOT / "docs" / "architecture.md").read_text()
    modules = [
        path.relative_to(ROOT / "poster_ml")
        for path in (ROOT / "poster_ml").rglob("*.py")
        if path.name != "__init__.py"
    ]
    missing = [str(module) for module in modules if not re.search(rf"[`/]{module.name}`", section)]
    assert len(modules) > 40
    assert not missing, missing


def test_the_architecture_page_is_short():
    assert len((ROOT / "docs" / "architecture.md").read_text().splitlines()) <= 60
