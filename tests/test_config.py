"""The config refuses bad input before any work starts, naming the YAML key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recctl.config import config_from_dict, load_config
from recctl.errors import ConfigError


def minimal(tmp_path: Path) -> dict:
    events = tmp_path / "events.csv"
    events.write_text("u,i,t\n1,a,2024-01-01\n")
    return {
        "workdir": str(tmp_path / "work"),
        "data": {"interactions": {"path": str(events), "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"}}},
        "models": {"pop": {"kind": "popularity"}},
    }


def load_dict(tmp_path: Path, raw: dict) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    load_config(path)


def test_minimal_config_loads(tmp_path: Path) -> None:
    cfg = config_from_dict(minimal(tmp_path), base_dir=tmp_path)
    assert cfg.model_config_for("pop").kind == "popularity"
    assert cfg.workdir_path == tmp_path / "work"


def test_shipped_quickstart_is_valid(repo_root: Path) -> None:
    cfg = load_config(repo_root / "configs" / "quickstart.yaml")
    assert cfg.recommend is not None and cfg.recommend.model in cfg.models


def test_unknown_key_names_key_and_suggests(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["preprocess"] = {"min_user_interaction": 2}
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, raw)
    msg = str(exc.value)
    assert "c.yaml: preprocess: unknown key 'min_user_interaction'" in msg
    assert "did you mean 'min_user_interactions'" in msg


def test_unknown_model_parameter_is_refused(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["models"]["pop"]["mod"] = "global"
    with pytest.raises(ConfigError, match=r"models\.pop: unknown key 'mod' \(did you mean 'mode'\?\)"):
        load_dict(tmp_path, raw)


def test_wrong_type_names_key(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["seed"] = "forty-two"
    with pytest.raises(ConfigError, match=r"c\.yaml: seed: .*integer"):
        load_dict(tmp_path, raw)


def test_bad_choice_lists_allowed_values(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["models"]["pop"]["mode"] = "trending"
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, raw)
    assert "models.pop.mode" in str(exc.value) and "'global'" in str(exc.value)


def test_unknown_model_kind_lists_registered(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["models"]["pop"]["kind"] = "popularty"
    with pytest.raises(
        ConfigError, match=r"models\.pop\.kind: unknown model kind 'popularty' \(did you mean 'popularity'\?\)"
    ):
        load_dict(tmp_path, raw)


def test_missing_file_is_refused_with_key(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["data"]["interactions"]["path"] = str(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match=r"data\.interactions\.path: file not found: .*nope\.csv"):
        load_dict(tmp_path, raw)


def test_empty_glob_is_refused(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["data"]["interactions"]["path"] = str(tmp_path / "day-*.csv")
    with pytest.raises(ConfigError, match=r"no file matches"):
        load_dict(tmp_path, raw)


def test_reference_to_undefined_model(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["recommend"] = {"model": "hybrid"}
    with pytest.raises(ConfigError, match=r"recommend\.model: no model named 'hybrid' in `models`; defined: pop"):
        load_dict(tmp_path, raw)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    raw = minimal(tmp_path)
    raw["seed"] = "x"
    raw["evaluate"] = {"k": [0]}
    with pytest.raises(ConfigError) as exc:
        load_dict(tmp_path, raw)
    assert "seed" in str(exc.value) and "evaluate.k" in str(exc.value)


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  interactions: [unclosed\nmodels: {}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML \(line \d+, column \d+\)"):
        load_config(path)


def test_non_mapping_config(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    sub = tmp_path / "configs"
    sub.mkdir()
    raw = minimal(tmp_path)
    raw["data"]["interactions"]["path"] = "../events.csv"
    raw["workdir"] = "../runs/x"
    (sub / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(sub / "c.yaml")
    assert cfg.resolve("../events.csv") == tmp_path / "events.csv"
    assert cfg.workdir_path == tmp_path / "runs" / "x"
