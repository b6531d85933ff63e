"""The global flags every command shares, tested on every command as a user would type them.

``--json`` (one JSON object on stdout, also on failure), ``--format``, ``-q``, ``-v``,
``--log-format``, ``--set``; help that reads right in an 80-column CI log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from recctl.cli.main import app

runner = CliRunner()

#: every command, with the options it needs besides CONFIG to get as far as loading the config
COMMANDS: dict[str, list[str]] = {
    "ingest": [],
    "preprocess": [],
    "train": [],
    "evaluate": [],
    "tune": [],
    "recommend": [],
    "serve-export": [],
    "rollback": [],
    "update": [],
    "serve": [],
    "run": [],
    "info": [],
    "history": [],
    "ab assign": ["--users", "users.csv"],
    "ab report": [],
    "ab plan": ["--baseline-rate", "0.05", "--mde", "0.1"],
    "ab simulate": ["--rates", "control=0.1", "-o", "out.csv"],
    "ab preview": [],
}
GLOBAL_OPTIONS = ("--json", "--format", "--verbose", "--quiet", "--log-format", "--set")


def _walk(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    found = []
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "commands", None):
            found += _walk(sub, (*prefix, name))
        else:
            found.append((" ".join((*prefix, name)), sub))
    return found


ALL = _walk(typer.main.get_command(app))


def test_the_table_above_lists_every_command() -> None:
    assert {name for name, _ in ALL} == set(COMMANDS)


def one_json_object(stdout: str) -> dict[str, Any]:
    """stdout is exactly one JSON object (json.loads refuses anything after it)."""
    data = json.loads(stdout)
    assert isinstance(data, dict)
    assert data["schema_version"] == 1
    return data


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_missing_config_with_json_is_one_json_error_and_exit_3(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = runner.invoke(app, [*name.split(), str(missing), *COMMANDS[name], "--json"])
    assert result.exit_code == 3, result.output
    error = one_json_object(result.stdout)["error"]
    assert error["exit_code"] == 3 and error["type"] == "ConfigError"
    assert str(missing) in error["message"]
    assert "config file not found" in result.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_argument_with_json_is_one_json_error_and_exit_2(name: str) -> None:
    result = runner.invoke(app, [*name.split(), "c.yaml", "--no-such-option", "--json"])
    assert result.exit_code == 2
    error = one_json_object(result.stdout)["error"]
    assert error == {"type": "UsageError", "message": error["message"], "exit_code": 2}
    assert "--no-such-option" in error["message"]
    assert "--no-such-option" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--json"],  # missing CONFIG
        ["train", "c.yaml", "--json", "true"],  # --json takes no value
        ["fly", "--json"],  # unknown command
        ["ab", "plan", "--format", "json"],  # --format json means --json; no baseline given
        ["ab", "plan", "--baseline-rate", "0.05", "--mde", "0.1", "--weights", "1,x", "--json"],
        ["train", "c.yaml", "--set", "no-equals-sign", "--json"],
    ],
)
def test_usage_errors_answer_json_too(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert one_json_object(result.stdout)["error"]["exit_code"] == 2


def test_usage_error_without_json_keeps_stdout_empty() -> None:
    result = runner.invoke(app, ["train", "c.yaml", "--no-such-option"])
    assert result.exit_code == 2 and result.stdout == ""


@pytest.mark.parametrize(("name", "command"), ALL)
def test_every_command_has_the_global_options_and_no_bool_metavar(name: str, command: Any) -> None:
    result = runner.invoke(app, [*name.split(), "--help"], env={"TERMINAL_WIDTH": "100"})
    assert result.exit_code == 0, result.output
    for option in GLOBAL_OPTIONS:
        assert option in result.stdout, f"{name} lacks {option}"
    assert "-q" in result.stdout and "-v" in result.stdout
    # flags take no value: `--json <bool>` read as if `--json true` worked
    assert "<bool>" not in result.stdout


@pytest.mark.parametrize(("name", "command"), ALL)
def test_help_examples_do_not_wrap_in_80_columns(name: str, command: Any) -> None:
    text = command.help or ""
    examples = text.split("Example:", 1)[1].strip().splitlines() if "Example:" in text else []
    assert examples, f"{name} has no Example block"
    result = runner.invoke(app, [*name.split(), "--help"], env={"TERMINAL_WIDTH": "80", "COLUMNS": "80"})
    shown = [line.strip(" │") for line in result.stdout.splitlines()]
    for example in examples:
        assert example.strip() in shown, f"`{example.strip()}` wraps in `recctl {name} --help` at 80 columns"


def test_root_help_offers_completion() -> None:
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def _recctl(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "80", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "recctl", *args], capture_output=True, text=True, env=full_env, timeout=120, **kwargs
    )


def test_shell_completion_completes_commands() -> None:
    result = _recctl(env={"_RECCTL_COMPLETE": "complete_bash", "COMP_WORDS": "recctl tr", "COMP_CWORD": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["train"]


def test_python_dash_m_recctl_is_the_cli() -> None:
    result = _recctl("--version")
    assert result.returncode == 0 and result.stdout.startswith("recctl ")


def test_py_typed_ships_with_the_package() -> None:
    import recctl

    assert (Path(recctl.__file__).parent / "py.typed").is_file()


# -- --format -----------------------------------------------------------------------------------
PLAN = ["ab", "plan", "--baseline-rate", "0.05", "--mde", "0.1", "--weights", "1,1,1"]


def test_format_tsv_is_tab_separated_with_full_numbers() -> None:
    result = runner.invoke(app, [*PLAN, "--format", "tsv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "# Users per arm"
    assert lines[1].split("\t") == ["arm", "users", "share"]
    rows = [line.split("\t") for line in lines[2:]]
    assert [r[0] for r in rows] == ["control", "treatment_1", "treatment_2"]
    assert all(r[1].isdigit() for r in rows)  # no thousands separators
    assert float(rows[0][2]) == pytest.approx(1 / 3)  # full precision
    # prose goes to stderr so stdout stays data
    assert "users in total" in result.stderr and "users in total" not in result.stdout


def test_format_markdown_is_a_pipe_table() -> None:
    result = runner.invoke(app, [*PLAN, "--format", "markdown"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "### Users per arm"
    assert lines[2] == "| arm | users | share |"
    assert lines[3] == "|:---|---:|---:|"
    assert lines[4].startswith("| control | ")
    assert "users in total" in result.stdout and "[bold]" not in result.stdout


def test_format_json_equals_json_flag() -> None:
    a = runner.invoke(app, [*PLAN, "--format", "json"])
    b = runner.invoke(app, [*PLAN, "--json"])
    assert a.exit_code == b.exit_code == 0
    assert one_json_object(a.stdout) == one_json_object(b.stdout)


def test_unknown_format_is_a_usage_error() -> None:
    result = runner.invoke(app, [*PLAN, "--format", "xml"])
    assert result.exit_code == 2 and "xml" in result.stderr


def test_wide_table_is_not_cut_in_a_pipe(repo_root: Path) -> None:
    # a pipe is no terminal: Rich assumed 80 columns and printed `treatment_with_a…`
    long = "treatment_with_a_really_long_descriptive_name_that_a_ci_log_must_show_in_full_not_cut_at_80"
    config = repo_root / "configs" / "ab_example.yaml"
    result = _recctl(
        "ab", "plan", str(config), "--baseline-rate", "0.05", "--mde", "0.1",
        "--set", f"experiment.variants.{long}={{model: lightfm_bpr, weight: 1}}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    row = next(line for line in result.stdout.splitlines() if long in line)
    assert len(row) > 80


# -- --log-format, -v, -q -----------------------------------------------------------------------
def test_log_format_json_makes_every_stderr_line_a_json_object(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yaml"), "--log-format", "json"])
    assert result.exit_code == 3
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[-1]["level"] == "error" and records[-1]["exit_code"] == 3
    assert records[-1]["error_type"] == "ConfigError" and "missing.yaml" in records[-1]["message"]
    assert {"time", "logger"} <= set(records[-1])
    assert result.stdout == ""


def test_long_paths_in_stderr_are_never_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("a_long_directory_name_" * 5) / "and_another_one_to_pass_eighty_columns" / "missing.yaml"
    result = runner.invoke(app, ["train", str(deep), "-v"])
    assert result.exit_code == 3
    assert any(str(deep) in line for line in result.stderr.splitlines())


def test_quiet_keeps_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "missing.yaml"), "-q"])
    assert result.exit_code == 3 and "config file not found" in result.stderr


def test_help_imports_no_heavy_library() -> None:
    # `recctl --help` and completion stay instant: the CLI modules import heavy libraries lazily
    code = (
        "import sys, recctl.cli.main; "
        "print(sorted(m for m in ('polars', 'numpy', 'scipy', 'pyarrow', 'pydantic', 'lightfm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_serve_answers_json_too(quickstart_config: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'recctl[serve]'")
    schema = tmp_path / "openapi.json"
    result = runner.invoke(app, ["serve", str(quickstart_config), "--openapi", str(schema), "--json"])
    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout)["openapi"] == str(schema)
    assert json.loads(schema.read_text())["openapi"].startswith("3.")
