"""The ``tune:`` section is checked at config load: objective, n_jobs, space keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.config import load_config
from recctl.errors import ConfigError


def _write(path: Path, tune: dict) -> Path:  # noqa: ANN001
    raw = yaml.safe_load(path.read_text())
    raw["tune"] = tune
    path.write_text(yaml.safe_dump(raw))
    return path


def test_space_key_that_is_not_a_model_parameter(pop_config: Path) -> None:
    _write(pop_config, {"model": "pop", "space": {"no_components": {"type": "choice", "values": [8, 16]}}})
    with pytest.raises(ConfigError) as info:
        load_config(pop_config)
    message = str(info.value)
    assert "tune.space.no_components" in message
    assert "not a parameter of model 'pop'" in message
    assert "allowed parameters: category_column, measure, mode, window_days" in message


@pytest.mark.parametrize(
    ("tune", "key", "text"),
    [
        ({"model": "pop", "objective": "accuracy@10"}, "tune.objective", "one of precision"),
        ({"model": "pop", "objective": "ndcg@0"}, "tune.objective", "positive K"),
        ({"model": "pop", "n_jobs": 0}, "tune.n_jobs", "-1 (all cores)"),
        ({"model": "pop", "method": "bayes"}, "tune.method", "'random', 'grid' or 'tpe'"),
        ({"model": "nope"}, "tune.model", "no model named 'nope'"),
        (
            {"model": "pop", "space": {"mode": {"type": "loguniform", "low": 0, "high": 1}}},
            "tune.space.mode",
            "loguniform needs low > 0",
        ),
    ],
)
def test_bad_tune_section_names_the_key(pop_config: Path, tune: dict, key: str, text: str) -> None:
    _write(pop_config, tune)
    with pytest.raises(ConfigError) as info:
        load_config(pop_config)
    assert key in str(info.value) and text in str(info.value), str(info.value)


def test_bad_space_key_through_the_cli_exits_3(pop_config: Path) -> None:
    _write(pop_config, {"model": "pop", "space": {"moode": {"type": "choice", "values": ["global"]}}})
    result = CliRunner().invoke(app, ["tune", str(pop_config)])
    assert result.exit_code == 3
    assert "tune.space.moode" in result.stderr and "allowed parameters" in result.stderr
    assert result.stdout == ""
