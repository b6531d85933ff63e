"""Every command has help with an example; the root lists the exit codes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recctl.cli.main import app

runner = CliRunner()
COMMANDS = ["ingest", "preprocess", "train", "evaluate", "tune", "recommend", "serve-export", "run", "info", "update"]


def test_root_help_lists_commands_and_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "Exit codes" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert "recctl " + command in result.stdout


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("recctl ")


def test_unknown_command_is_usage_error() -> None:
    result = runner.invoke(app, ["fly"])
    assert result.exit_code == 2


def test_missing_config_exit_code_3(tmp_path) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 3
    assert "config file not found" in result.stderr
    assert result.stdout == ""


def test_missing_upstream_stage_exit_code_5(quickstart_config) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["train", str(quickstart_config)])
    assert result.exit_code == 5, result.output
    assert "no finished 'preprocess' stage" in result.stderr
    assert "recctl preprocess" in result.stderr
