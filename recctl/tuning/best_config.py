"""Pick the best trial and write it as a complete config, ``best.yaml``.

``best.yaml`` is the original config (as loaded: what the file set, not every default) with

* the tuned model's parameters replaced by the best trial's, and ``epochs`` set to the best
  epoch for epoch-wise models (the early-stopped length is what was validated);
* every path made **absolute**: ``workdir``, the data sources, rule files and the A/B
  outcome file. ``best.yaml`` lives in ``<workdir>/tune/``, so paths relative to the
  original config would otherwise point nowhere; absolute paths keep the same workdir, so
  ``recctl train best.yaml`` reuses the existing ingest/preprocess outputs;
* no ``tune:`` section, so ``recctl run best.yaml`` trains and evaluates the tuned model
  instead of searching again.
"""

from __future__ import annotations

import copy
from typing import Any

from recctl.config import Config
from recctl.tuning.trial import TrialResult

__all__ = ["absolute_paths", "best_config_dict", "best_trial", "tuned_model_params"]


def best_trial(results: list[TrialResult]) -> TrialResult | None:
    """The complete trial with the highest objective; ties go to the lower trial number.

    So when nothing beats the configured defaults (trial 0), the defaults stay.
    """
    complete = [r for r in results if r.status == "complete" and r.value is not None]
    if not complete:
        return None
    return max(complete, key=lambda r: (r.value, -r.number))


def tuned_model_params(base: dict[str, Any], trial: TrialResult, epoch_wise: bool) -> dict[str, Any]:
    """The tuned model's parameters: ``base`` with the trial's values (and its best epoch)."""
    params = {**base, **trial.params}
    if epoch_wise and trial.best_epoch is not None:
        params["epochs"] = int(trial.best_epoch)
    return params


def absolute_paths(raw: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Return a copy of ``raw`` (config data) with every file path resolved to an absolute one."""
    raw = copy.deepcopy(raw)

    def fix(spec: Any) -> Any:
        if isinstance(spec, list):
            return [str(cfg.resolve(p)) for p in spec]
        return str(cfg.resolve(spec)) if isinstance(spec, str) else spec

    raw["workdir"] = str(cfg.workdir_path)
    data = raw.get("data", {})
    sources = data.get("interactions")
    for source in sources if isinstance(sources, list) else [sources]:
        if isinstance(source, dict) and "path" in source:
            source["path"] = fix(source["path"])
    for table in ("items", "users"):
        if isinstance(data.get(table), dict) and "path" in data[table]:
            data[table]["path"] = fix(data[table]["path"])
    rules = (raw.get("recommend") or {}).get("rules") or {}
    for key in ("allow_list", "deny_list"):
        if rules.get(key):
            rules[key] = fix(rules[key])
    outcomes = (raw.get("experiment") or {}).get("outcomes") or {}
    if outcomes.get("path"):
        outcomes["path"] = fix(outcomes["path"])
    return raw


def best_config_dict(cfg: Config, model_name: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """The complete config with model ``model_name``'s parameters replaced (see the module docstring).

    ``model_name=None`` changes no model (the caller replaces several).
    """
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["models"] = {**raw["models"], **({model_name: params} if model_name is not None else {})}
    raw.pop("tune", None)
    return absolute_paths(raw, cfg)
