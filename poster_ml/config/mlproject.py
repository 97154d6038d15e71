"""MLproject, written from the config dataclasses: every entry point's parameters, their
types and defaults come from the fields of its config class, so a setting is defined in
one place. `make mlproject` rewrites the file; a test fails when the committed one is stale.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
import typing
from pathlib import Path

from poster_ml.config import ENTRY_POINTS

HEADER = """\
# Written by `make mlproject` from the config dataclasses in poster_ml/config/: edit those,
# not this file (tests/test_layout.py fails when it is stale).
name: poster-ml

conda_env: conda.yaml

entry_points:"""
MLFLOW_TYPES = {int: "int", float: "float", str: "string", bool: "string"}


def parameter_type(config_class: type, name: str) -> str:
    hint = typing.get_type_hints(config_class)[name]
    if hint not in MLFLOW_TYPES:
        raise ValueError(f"{config_class.__name__}.{name}: an entry point takes no {hint}")
    return MLFLOW_TYPES[hint]


def parameter_default(value: object) -> str:
    """The default as MLflow reads it back: booleans as the strings 'true' and 'false'."""
    if isinstance(value, bool):
        value = str(value).lower()
    return json.dumps(value) if isinstance(value, str) else str(value)


def entry_point_lines(name: str, config_class: type) -> list[str]:
    fields = dataclasses.fields(config_class)
    lines = [f"  {name}:", "    parameters:"]
    for field in fields:
        kind, default = parameter_type(config_class, field.name), parameter_default(field.default)
        lines.append(f"      {field.name}: {{type: {kind}, default: {default}}}")
    options = [f"--{field.name.replace('_', '-')} {{{field.name}}}" for field in fields]
    command = textwrap.wrap(
        " ".join([f"python entrypoints/{name}.py", *options]),
        width=94,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [*lines, "    command: >-", *(f"      {line}" for line in command)]


def render() -> str:
    """The whole MLproject file."""
    blocks = ["\n".join(entry_point_lines(name, cls)) for name, cls in ENTRY_POINTS.items()]
    return HEADER + "\n" + "\n\n".join(blocks) + "\n"


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("MLproject")
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")  # A developer's command: it answers on stdout.
    return 0


if __name__ == "__main__":
    sys.exit(main())
