"""What the test suite verifies, counted so that a change that makes it faster can show it
lost nothing: test functions, collected test items, and checks (`assert` statements and
`pytest.raises` / `pytest.fail` calls) in tests/, at the working tree or at a commit.

    python benchmarks/suite_counts.py                 # the working tree
    python benchmarks/suite_counts.py --rev 98ccbba   # a commit, read from git
    python benchmarks/suite_counts.py --collect       # also the items pytest collects

The counts are read from the syntax trees, so comments and strings never count.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sources(rev: str | None) -> dict[str, str]:
    """Every Python file under tests/, by path, from the working tree or from `rev`."""
    if rev is None:
        return {str(path.relative_to(ROOT)): path.read_text() for path in ROOT.glob("tests/*.py")}
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, "tests/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        name: subprocess.run(
            ["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for name in names
        if name.endswith(".py")
    }


def is_pytest_check(node: ast.AST) -> bool:
    """`pytest.raises(...)` or `pytest.fail(...)`: checks that are not assert statements."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "pytest"
        and node.func.attr in ("raises", "fail")
    )


def counts(sources: dict[str, str]) -> dict[str, int]:
    tests = asserts = pytest_checks = 0
    for source in sources.values():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                tests += node.name.startswith("test_")
            asserts += isinstance(node, ast.Assert)
            pytest_checks += is_pytest_check(node)
    return {
        "files": len(sources),
        "test functions": tests,
        "assert statements": asserts,
        "pytest.raises/fail": pytest_checks,
    }


def collected_items() -> int:
    """The items pytest collects in the working tree (every parametrisation counts)."""
    output = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return sum(1 for line in output.splitlines() if "::" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="a git commit; the working tree if left out")
    parser.add_argument("--collect", action="store_true", help="count collected items too")
    arguments = parser.parse_args()
    found = counts(test_sources(arguments.rev))
    if arguments.collect:
        if arguments.rev:
            parser.error("--collect counts the working tree only; check out the commit first")
        found["collected items"] = collected_items()
    for name, number in found.items():
        print(f"{name}: {number}")


if __name__ == "__main__":
    main()
