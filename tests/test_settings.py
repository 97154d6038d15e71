"""Every setting a user can type has a range or a set of allowed values, checked before any
work starts: a bad one is one line on stderr and exit code 1, never a traceback. The
manual's table of settings (docs/reference/settings.md) is this table."""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import pytest

from poster_ml.cli import main
from poster_ml.config import (
    AugmentConfig,
    EvaluateConfig,
    PredictConfig,
    PreprocessConfig,
    RegisterConfig,
    ServeConfig,
    ServerConfig,
    TrainConfig,
    TrainStepConfig,
    WorkflowConfig,
)

# Where each config's settings are typed: a subcommand's option, or train's --overrides.
WHERE = {
    PreprocessConfig: "preprocess",
    TrainStepConfig: "train",
    EvaluateConfig: "evaluate",
    RegisterConfig: "register",
    PredictConfig: "predict",
    ServeConfig: "serve",
    ServerConfig: "server",
    WorkflowConfig: "main",
    TrainConfig: "train --overrides",
    AugmentConfig: "train --overrides",
}


@pytest.fixture
def socket_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def checked_settings() -> list[tuple[type, dataclasses.Field]]:
    return [
        (config, field)
        for config in WHERE
        for field in dataclasses.fields(config)
        if field.metadata.get("allowed") is not None
    ]


def out_of_range(allowed) -> str:
    if allowed.choices:
        return "bogus"
    if allowed.low is not None:
        return str(allowed.low if allowed.low_open else allowed.low - 1)
    return str(allowed.high + 1)


def command_line(config: type, name: str, value: str) -> list[str]:
    if WHERE[config] == "train --overrides":
        return ["train", "--overrides", f"{name}={value}"]
    return [WHERE[config], f"--{name.replace('_', '-')}", value]


@pytest.mark.parametrize(
    "config, field",
    checked_settings(),
    ids=lambda item: getattr(item, "name", getattr(item, "__name__", "")),
)
def test_an_out_of_range_setting_is_one_line_and_exit_code_1(
    config, field, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    value = out_of_range(field.metadata["allowed"])
    assert main(command_line(config, field.name, value)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "Traceback" not in error[0], error
    assert f"setting {field.name}=" in error[0] and "must be" in error[0]
    assert not any(tmp_path.iterdir()), "no work may start before the settings are checked"


def settings_table() -> str:
    lines = ["| where | setting | allowed | default |", "| --- | --- | --- | --- |"]
    for config, field in checked_settings():
        lines.append(
            f"| `{WHERE[config]}` | `{field.name}` | {field.metadata['allowed']} | `{field.default}` |"
        )
    return "\n".join(lines)


def test_the_settings_reference_lists_every_checked_setting_with_its_range():
    readme = (
        Path(__file__).resolve().parents[1] / "docs" / "reference" / "settings.md"
    ).read_text()
    table = re.search(
        r"<!-- settings table -->\n(.*?)\n<!-- end settings table -->", readme, re.DOTALL
    )
    assert table is not None and table.group(1).strip() == settings_table(), (
        "regenerate it: python -c 'import tests.test_settings as t; print(t.settings_table())'"
    )


def test_an_unreachable_store_and_a_missing_run_are_two_different_messages(
    monkeypatch, capsys, socket_port
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:secret@127.0.0.1:{socket_port}")
    assert main(["evaluate"]) == 1
    unreachable = capsys.readouterr().err.strip().splitlines()
    assert (
        len(unreachable) == 1
        and "cannot reach the tracking store http://user:***@127.0.0.1" in unreachable[0]
    )
    assert "secret" not in unreachable[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://postgres@127.0.0.1:{socket_port}/none")
    assert main(["evaluate"]) == 1
    assert (
        "cannot reach the tracking store postgresql://postgres@127.0.0.1" in capsys.readouterr().err
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")  # Reachable, and empty.
    assert main(["evaluate", "--train-run", "0123456789abcdef0123456789abcdef"]) == 1
    missing = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(missing) == 1 and "no such train run: 0123456789abcdef0123456789abcdef" in missing[0]


def test_verbose_keeps_the_cause(monkeypatch, capsys, socket_port):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{socket_port}")
    assert main(["evaluate", "--verbose"]) == 1
    error = capsys.readouterr().err
    assert (
        "Traceback" in error
        and "ConnectionRefusedError" in error
        and error.strip().splitlines()[-1].startswith("poster-ml evaluate: error: cannot reach")
    )


def test_refused_credentials_are_a_third_message_without_the_password(monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, UNAUTHENTICATED

    from poster_ml.tracking.store import store_error

    monkeypatch.setattr(
        "mlflow.get_tracking_uri", lambda: "http://alice:hunter2@mlflow.example:5000"
    )
    refused = store_error(
        MlflowException(
            "API request to endpoint /api/2.0/mlflow/runs/get failed with error code 401",
            error_code=UNAUTHENTICATED,
        )
    )
    missing = store_error(
        MlflowException("Run 'abc' not found", error_code=RESOURCE_DOES_NOT_EXIST)
    )
    unreachable = store_error(ConnectionRefusedError("[Errno 111] Connection refused"))
    messages = [str(refused), str(missing), str(unreachable)]
    assert (
        "refused the credentials" in messages[0]
        and "not found" in messages[1]
        and "cannot reach" in messages[2]
    )
    assert all(
        "http://alice:***@mlflow.example:5000" in message and "hunter2" not in message
        for message in messages
    )


def test_an_unreachable_studies_database_is_not_called_the_tracking_store(tmp_path):
    import optuna
    import sqlalchemy

    from poster_ml.tracking.store import store_error

    (tmp_path / "a-file").write_text("")  # No database can be made under a file.
    with pytest.raises(Exception) as raised:  # What Optuna raises: SQLAlchemy's error.
        optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/a-file/optuna.db")
    message = str(store_error(raised.value))
    assert "cannot reach the studies database" in message and "tracking store" not in message
    # The same SQLAlchemy error raised outside Optuna (MLflow's store makes its engine the
    # same way, with retries that take minutes) is the tracking store's.
    with pytest.raises(Exception) as raised:
        sqlalchemy.create_engine(f"sqlite:///{tmp_path}/a-file/mlflow.db").connect()
    assert "cannot reach the tracking store" in str(store_error(raised.value))


def test_errors_are_told_by_their_type_not_by_words_in_their_message(monkeypatch, capsys, tmp_path):
    from poster_ml.data import prepared

    assert main(["preprocess", "--count", "40", "--size", "32", "--out", "p"]) == 0

    # A shard that cannot be read (the tests run as root, which file modes do not stop).
    def refused(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(prepared.Shard, "__init__", refused)
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--data",
                "p",
                "--profile",
                "quick",
                "--variants",
                "basic_cnn",
                "--trials",
                "0",
            ]
        )
        == 1
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert (
        len(errors) == 1
        and "Permission denied:" in errors[0]
        and "train.npy" in errors[0]
        and "tracking store" not in errors[0]
    )
    # A message that merely contains "401" or "timed out" is no store failure.
    from poster_ml.tracking.store import store_error

    assert store_error(RuntimeError("layer 401 timed out")) is None
    # A missing images folder.
    (tmp_path / "labels.csv").write_text("id,label\n1,fresh\n")
    assert (
        main(
            [
                "preprocess",
                "--source",
                str(tmp_path / "labels.csv"),
                "--images",
                str(tmp_path / "nowhere"),
                "--out",
                "q",
            ]
        )
        == 1
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no such images folder" in errors[0]
