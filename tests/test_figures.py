"""Every measured figure in the README says where it came from, and RESULTS.md says when,
on what code and on what machine.

A measured figure is a duration, a ratio (`1.50x`), a size, a rate, an AUC or a score
written to three decimals. The paragraph (or table) that holds one must name its source:
the command that printed it, a test that checks it, or `benchmarks/RESULTS.md`. Where the
source is RESULTS.md or a benchmark, the figure must be found in RESULTS.md as written, so
the two cannot drift apart. Each RESULTS.md entry carries a date, a commit of this
repository and a machine."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

NUMBER = r"\d[\d,]*(?:\.\d+)?"
MEASURED = re.compile(
    rf"""
    \d+\ min\ \d+\ s\b                                        # a duration: 6 min 0 s
    | {NUMBER}\ ?(?:ms|s|min|minutes|seconds|hours)\b         # or 8.2 s
    | \b{NUMBER}x\b                                          # a ratio
    | {NUMBER}\ ?(?:KB|MB|GB|KiB|MiB|GiB)\b                   # a size
    | {NUMBER}\ (?:posters|images|requests)(?:/s|\ a\ second) # a rate
    | \bAUCs?\b[^.\d]{{0,30}}\d\.\d+                           # an AUC
    | (?<![\d.-])-?[01]\.\d{{3}}\b                              # a score: 0.517
    """,
    re.VERBOSE,
)
COMMAND = re.compile(
    r"`(?:time |[A-Z_]+=\S+ )*(?:make|python|bash|poster-ml|pytest|du|uv|mlflow)\b[^`]*`"
    r"|`(?:benchmarks|tests)/[\w/.]+\.(?:py|sh)`"
)
FROM_RESULTS = re.compile(r"RESULTS\.md|`(?:python |bash )?benchmarks/")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
COMMIT = re.compile(r"\bcommits? ([0-9a-f]{7,40})\b")
MACHINE = re.compile(r"\b\d+-core\b|\bGPU\b|H200|H100|A100")


def blocks(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each paragraph, list or table of a Markdown file; fenced code
    is left out (commands there are checked by test_readme.py)."""
    found, current, start, fenced = [], [], 0, False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if line.strip() and not line.startswith("#"):
            if not current:
                start = number
            current.append(line)
        elif current:
            found.append((start, " ".join(current)))
            current = []
    if current:
        found.append((start, " ".join(current)))
    return found


def recorded(figure: str, results: str) -> bool:
    """Whether RESULTS.md holds the figure as written (an AUC: its value), thousands
    separators and line breaks aside."""
    if figure.startswith("AUC"):
        figure = re.findall(NUMBER, figure)[-1]
    flat = " ".join(results.replace(",", "").split())
    wanted = re.escape(" ".join(figure.replace(",", "").split()))
    return re.search(rf"(?<![\d.]){wanted}(?![\d])", flat) is not None


def unsourced_figures(block: str, results: str) -> list[str]:
    """What is wrong with one block's figures: a figure without a source, or a figure said
    to be in RESULTS.md that is not there."""
    figures = [match.group(0) for match in MEASURED.finditer(block)]
    if not figures:
        return []
    if not (FROM_RESULTS.search(block) or COMMAND.search(block)):
        return [f"no source for {figures}"]
    if not FROM_RESULTS.search(block):
        return []
    missing = [figure for figure in figures if not recorded(figure, results)]
    return [f"not in RESULTS.md: {missing}"] if missing else []


def test_the_checker_finds_a_figure_without_a_source_and_one_that_drifted():
    results = "### The demo: `time make demo` (commit abcdef1)\n\n9 min 3 s; test AUC 0.781.\n"
    assert unsourced_figures("Training took 12 min on a laptop.", results)
    assert unsourced_figures("It runs at 1.87x the speed.", results)
    assert unsourced_figures("basic_cnn reached a test AUC of 0.78 offline.", results)
    assert not unsourced_figures("It took 9 min 3 s (`benchmarks/RESULTS.md`).", results)
    assert unsourced_figures("It took 19 min 3 s (`benchmarks/RESULTS.md`).", results)
    assert unsourced_figures("It took 9 min 4 s (`benchmarks/RESULTS.md`).", results)
    assert not unsourced_figures("A test AUC of 0.781 (RESULTS.md).", results)
    assert unsourced_figures("A test AUC of 0.78 (RESULTS.md).", results)
    assert not unsourced_figures("Each of 20 trials, 6 x 6 cells, batch 32.", results)
    assert not unsourced_figures("`pytest tests/test_serving.py` checks under 1 KB.", results)


# The README and every page of the manual (the benchmarks page includes RESULTS.md itself).
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize(
    "where, block",
    [
        (f"{page.relative_to(ROOT)}:{line}", block)
        for page in PAGES
        for line, block in blocks(page.read_text())
    ],
    ids=lambda value: str(value)[:24],
)
def test_every_figure_in_the_readme_and_the_manual_names_its_source(where, block):
    problems = unsourced_figures(block, RESULTS.read_text())
    assert not problems, f"{where}: {problems}"


def entries(text: str) -> list[tuple[str, str]]:
    """(section heading, entry heading and first paragraph) of every ### entry."""
    found, section = [], ""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("## "):
            section = line
        elif line.startswith("### "):
            paragraph = []
            for following in lines[index + 1 :]:
                if following.startswith("#") or (paragraph and not following.strip()):
                    break
                paragraph.append(following)
            found.append((section, " ".join([line, *paragraph])))
    return found


def known_commit(commit: str) -> bool | None:
    """Whether this repository has the commit; None in a shallow clone, which may lack it."""
    shallow = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True
    )
    if shallow.returncode != 0 or shallow.stdout.strip() != "false":
        return None
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True
    )
    return found.returncode == 0


def test_the_results_entries_are_found():
    assert len(entries(RESULTS.read_text())) >= 8


@pytest.mark.parametrize("section, entry", entries(RESULTS.read_text()), ids=lambda v: v[:40])
def test_every_results_entry_carries_date_commit_and_machine(section, entry):
    context = f"{section} {entry}"
    assert DATE.search(context), f"no date: {entry[:80]}"
    assert MACHINE.search(context), f"no machine: {entry[:80]}"
    commits = COMMIT.findall(context)
    assert commits, f"no commit: {entry[:80]}"
    for commit in commits:
        assert known_commit(commit) in (True, None), f"unknown commit {commit}: {entry[:80]}"
