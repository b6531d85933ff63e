"""``--set KEY=VALUE``: config keys changed for one command, checked exactly like the file."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recctl.cli.main import app
from recctl.config import load_config
from recctl.config import overrides as overrides_module
from recctl.config.overrides import apply_overrides, parse_override
from recctl.errors import ConfigError

runner = CliRunner()


def test_module_examples() -> None:
    assert doctest.testmod(overrides_module).failed == 0


def test_values_are_yaml_and_keys_are_dotted() -> None:
    assert parse_override("evaluate.k=[5, 10]") == (["evaluate", "k"], [5, 10])
    assert parse_override("recommend=null") == (["recommend"], None)
    assert parse_override("name='shop: de'") == (["name"], "shop: de")  # quoted: a colon would make a mapping
    assert parse_override("name='a=b'") == (["name"], "a=b")  # the first = splits
    assert parse_override("seed=") == (["seed"], None)
    # not YAML: the text itself (validation checks it like any value)
    assert parse_override("data.interactions.timestamp_format=%d.%m.%Y %H:%M")[1] == "%d.%m.%Y %H:%M"
    assert parse_override("seed=[1") == (["seed"], "[1")


@pytest.mark.parametrize("bad", ["seed", "=3", "a..b=1"])
def test_malformed_overrides_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="override"):
        parse_override(bad)


def test_lists_are_addressed_by_position() -> None:
    raw = {"data": {"interactions": [{"path": "a.csv"}, {"path": "b.csv"}]}}
    out = apply_overrides(raw, ["data.interactions.1.path=c.csv", "data.interactions.-2.on_error=skip"])
    assert out["data"]["interactions"] == [{"path": "a.csv", "on_error": "skip"}, {"path": "c.csv"}]
    assert raw["data"]["interactions"][1]["path"] == "b.csv"  # the input is not changed
    with pytest.raises(ConfigError, match=r"config: data\.interactions: this key is a list of 2 entries"):
        apply_overrides(raw, ["data.interactions.5.path=x"])
    with pytest.raises(ConfigError, match=r"seed: is 1, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_load_config_applies_them_before_validation(quickstart_config: Path) -> None:
    cfg = load_config(quickstart_config, overrides=["seed=7", "evaluate.k=[10]", "models.popular.kind=popularity"])
    assert cfg.seed == 7 and cfg.evaluate.k == [10]
    # later overrides win, like later flags
    assert load_config(quickstart_config, overrides=["seed=7", "seed=8"]).seed == 8


def test_problems_name_the_key_and_the_override(quickstart_config: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(quickstart_config, overrides=["seed=abc", "evaluate.kk=3", "name=fine"])
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert any(line.startswith(f"{quickstart_config}: seed: ") and "(from --set seed=abc)" in line for line in lines)
    assert any("'kk'" in line and "(from --set evaluate.kk=3)" in line for line in lines)
    # references between sections are checked too (after the types)
    with pytest.raises(ConfigError) as info:
        load_config(quickstart_config, overrides=["recommend.model=nope"])
    assert str(info.value) == (
        f"{quickstart_config}: recommend.model: no model named 'nope' in `models`; "
        "defined: lightfm_bpr, lightfm_warp, popular (from --set recommend.model=nope)"
    )


def test_cli_set_changes_what_the_command_uses(quickstart_config: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    result = runner.invoke(app, ["info", str(quickstart_config), "--set", f"workdir={other}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["workdir"] == str(other)


def test_cli_set_with_an_unknown_key_exits_3_naming_it(quickstart_config: Path) -> None:
    result = runner.invoke(app, ["train", str(quickstart_config), "--set", "models.lightfm_warp.epochz=3", "--json"])
    assert result.exit_code == 3
    message = json.loads(result.stdout)["error"]["message"]
    assert "models.lightfm_warp" in message and "epochz" in message and "--set models.lightfm_warp.epochz=3" in message


def test_cli_set_without_equals_is_a_usage_error(quickstart_config: Path) -> None:
    result = runner.invoke(app, ["train", str(quickstart_config), "--set", "seed"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
