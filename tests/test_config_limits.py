"""Config values that could only fail later are refused when the config is loaded (exit 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from recctl.config import load_config
from recctl.errors import ConfigError
from recctl.evaluation.metrics import ALL_METRICS
from recctl.metric_registry import METRICS, parse_metric_at_k
from tests.conftest import write_config


def _config(tmp_path: Path, change: Any) -> Path:
    path = write_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.setdefault("update", {}).update(drift={"metric": "nonsense@10"}), "update.drift.metric"),
        (lambda r: r.setdefault("update", {}).update(drift={"metric": "coverage@10"}), "cannot be maximised"),
        (lambda r: r["evaluate"].update(metrics=["ndcg", "ndgc"]), "did you mean 'ndcg'"),
        (lambda r: r["evaluate"].update(k=[10, 10**9]), "between 1 and 10,000"),
        (lambda r: r["recommend"].update(k=100_000_000_000), "recommend.k"),
        (lambda r: r["models"]["popular"].update(kind=["item_knn"]), "a model kind is one name"),
        (lambda r: r.setdefault("tune", {}).update(objective="auc@10"), "has no K"),
    ],
)
def test_values_that_fail_later_are_refused_at_load(tmp_path: Path, change: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, change))
    assert expected in str(info.value)


def test_a_nested_alias_bomb_is_refused_before_validation(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    lines = ["a0: &a0 [ndcg, ndcg, ndcg, ndcg, ndcg, ndcg, ndcg, ndcg, ndcg, ndcg]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    text = path.read_text().replace("evaluate:\n", "evaluate:\n  metrics: *a11\n", 1)
    path.write_text("\n".join(lines) + "\n" + text)  # 10 * 5**11 = 488 million values
    with pytest.raises(ConfigError, match="aliases expand to more than 100,000 values"):
        load_config(path)


def test_one_metric_registry_names_every_metric_the_evaluation_computes() -> None:
    assert set(ALL_METRICS) == set(METRICS)
    assert parse_metric_at_k(" ndcg@10 ", objective=True) == ("ndcg", 10)
