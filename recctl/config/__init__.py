"""Typed, strict experiment config loaded from one YAML file.

``load_config(path)`` refuses, before any work starts, an unknown key, a wrong type, a
reference to a model that is not defined, or an input file that does not exist. Every
problem is reported as ``<file>: <dotted.yaml.key>: <what is wrong and what is allowed>``.

Relative paths in the config are resolved against the directory of the config file, so a
config works from any current directory.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError

from recctl.config.abtest import ABTestConfig, VariantConfig
from recctl.config.base import BaseConfig
from recctl.config.data import DataConfig, InteractionSource, TableSource
from recctl.config.engine import EngineConfig
from recctl.config.evaluate import EvaluateConfig
from recctl.config.history import HistoryConfig
from recctl.config.preprocess import FeaturesConfig, PreprocessConfig, SplitConfig
from recctl.config.recommend import ExportConfig, RecommendConfig, RulesConfig
from recctl.config.serve import ServeConfig
from recctl.config.tune import TuneConfig
from recctl.config.update import UpdateConfig
from recctl.errors import ConfigError

__all__ = [
    "ABTestConfig",
    "BaseConfig",
    "Config",
    "DataConfig",
    "EngineConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FeaturesConfig",
    "HistoryConfig",
    "InteractionSource",
    "PreprocessConfig",
    "RecommendConfig",
    "RulesConfig",
    "ServeConfig",
    "SplitConfig",
    "TableSource",
    "TuneConfig",
    "VariantConfig",
    "load_config",
    "format_validation_error",
    "is_uri",
]


class Config(BaseConfig):
    """The whole experiment: one YAML file drives every stage."""

    name: str = Field(default="experiment", description="Experiment name, used in exports and reports.")
    workdir: str = Field(default="runs/experiment", description="Where stage outputs go; relative to the config file.")
    seed: int = Field(default=42, description="Seed of every random choice (splits, models, tuning, A/B salt).")
    lock_wait_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description=(
            "Seconds a command that writes waits for another recctl holding the workdir (or export folder) "
            "before exiting with code 8; 0 fails at once. The RECCTL_LOCK_WAIT environment variable overrides it."
        ),
    )
    data: DataConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    models: dict[str, dict[str, Any]] = Field(
        description="Model name -> parameters; each needs `kind` (a registered model, e.g. popularity, lightfm)."
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tune: TuneConfig | None = None
    recommend: RecommendConfig | None = None
    export: ExportConfig = Field(default_factory=ExportConfig)
    experiment: ABTestConfig | None = None
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source_path: Path | None = PrivateAttr(default=None)
    _model_configs: dict[str, Any] = PrivateAttr(default_factory=dict)

    # -- paths ---------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the config are resolved against."""
        return self._base_dir

    @property
    def source_path(self) -> Path | None:
        """The YAML file this config was loaded from, if any."""
        return self._source_path

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """Resolve a path from the config against the config file's directory."""
        p = Path(os.path.expanduser(str(path)))
        return p if p.is_absolute() else Path(os.path.normpath(self._base_dir / p))

    @property
    def workdir_path(self) -> Path:
        """The absolute workdir."""
        return self.resolve(self.workdir)

    def stage_dir(self, stage: str) -> Path:
        """Return ``<workdir>/<stage>``."""
        return self.workdir_path / stage

    # -- models --------------------------------------------------------------------------
    def model_config_for(self, name: str) -> Any:
        """Return the validated config object of model ``name``."""
        try:
            return self._model_configs[name]
        except KeyError:
            raise ConfigError(
                f"{self._source_path or 'config'}: models: no model named '{name}'; defined: "
                f"{', '.join(sorted(self.models)) or 'none'}"
            ) from None

    @property
    def model_configs(self) -> dict[str, Any]:
        """All validated model configs, by name."""
        return dict(self._model_configs)

    def section(self, name: str) -> Any:
        """Return a config section as plain data (what a stage records in its manifest).

        ``name`` may be dotted (``recommend.refit_on_all_data``) when a stage depends on one
        key of a section only; a missing section gives ``{}`` (or ``None`` for a dotted key).
        """
        head, _, rest = name.partition(".")
        value: Any = getattr(self, head)
        for part in rest.split(".") if rest else []:
            if value is None:
                return None
            value = value.get(part) if isinstance(value, dict) else getattr(value, part)
        if value is None:
            return None if rest else {}
        if isinstance(value, BaseConfig):
            value = value.model_dump(mode="json")
        return self._absolute_paths(value, rest.rsplit(".", 1)[-1] if rest else head)

    def _absolute_paths(self, value: Any, key: str) -> Any:
        # what a stage records of its config: file paths resolved, so the same file named
        # relative in one config and absolute in another (tune's best.yaml) is the same input
        if isinstance(value, dict):
            return {k: self._absolute_paths(v, str(k)) for k, v in value.items()}
        if key in _PATH_KEYS and isinstance(value, str):
            return str(self.resolve(value))
        if key in _PATH_KEYS and isinstance(value, list):
            return [str(self.resolve(v)) if isinstance(v, str) else v for v in value]
        if isinstance(value, list):
            return [self._absolute_paths(v, "") for v in value]
        return value


#: config keys holding file paths (relative to the config file)
_PATH_KEYS = frozenset({"path", "allow_list", "deny_list", "candidate_list"})


def format_validation_error(exc: ValidationError, source: str, prefix: tuple[Any, ...] = ()) -> list[str]:
    """Turn a pydantic ``ValidationError`` into ``file: dotted.key: message`` lines."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in (*prefix, *err["loc"]) if not _is_union_tag(p)]
        key = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            msg = f"{msg}, got {err.get('input')!r}"
        lines.append(f"{source}: {key}: {msg}")
    return lines


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the chosen union branch in loc ("list[InteractionSource]", "str"); hide it
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"} or part[:1].isupper())


def _validate_models(cfg: Config, source: str) -> list[str]:
    from recctl.models.registry import get_model_class, model_kinds

    problems: list[str] = []
    for name, params in cfg.models.items():
        kind = params.get("kind") if isinstance(params, dict) else None
        if kind is None:
            problems.append(f"{source}: models.{name}.kind: required; one of: {', '.join(model_kinds())}")
            continue
        try:
            cls = get_model_class(kind)
        except ConfigError as exc:
            problems.append(f"{source}: models.{name}.kind: {exc}")
            continue
        try:
            cfg._model_configs[name] = cls.config_class.model_validate(params)
        except ValidationError as exc:
            problems.extend(format_validation_error(exc, source, ("models", name)))
    return problems


def _check_references(cfg: Config, source: str) -> list[str]:
    names = set(cfg.models)
    problems = []

    def need(key: str, name: str | None) -> None:
        if name is not None and name not in names:
            problems.append(
                f"{source}: {key}: no model named '{name}' in `models`; defined: {', '.join(sorted(names))}"
            )

    for i, name in enumerate(cfg.evaluate.models or []):
        need(f"evaluate.models.{i}", name)
    need("evaluate.baseline", cfg.evaluate.baseline)
    if cfg.tune is not None:
        need("tune.model", cfg.tune.model)
        if isinstance(cfg.tune.models, list):
            for i, name in enumerate(cfg.tune.models):
                need(f"tune.models.{i}", name)
        for name in cfg.tune.spaces:
            need(f"tune.spaces.{name}", name)
        problems += _check_tune_space(cfg, source)
    # `tuned` is the model `recctl tune` picked, trained by `train` when tune.apply is set
    tuned_served = cfg.tune is not None and cfg.tune.apply
    if cfg.recommend is not None and not (tuned_served and cfg.recommend.model == "tuned"):
        need("recommend.model", cfg.recommend.model)
        for i, name in enumerate(cfg.recommend.fallback):
            need(f"recommend.fallback.{i}", name)
    if cfg.experiment is not None:
        for variant, spec in cfg.experiment.variants.items():
            need(f"experiment.variants.{variant}.model", spec.model)
    if cfg.export.related is not None:
        need("export.related.model", cfg.export.related.model)
        for i, name in enumerate(cfg.export.related.fallback):
            need(f"export.related.fallback.{i}", name)
    return problems


def _check_tune_space(cfg: Config, source: str) -> list[str]:
    """Each searched key must be a parameter of its model (owned by the tuning area)."""
    if cfg.tune is None:
        return []
    problems = []
    spaces = [("tune.space", cfg.tune.model, cfg.tune.space)] if cfg.tune.model else []
    spaces += [(f"tune.spaces.{name}", name, space) for name, space in cfg.tune.spaces.items()]
    for key_prefix, name, space in spaces:
        model_config = cfg._model_configs.get(name) if name else None
        if model_config is None:  # unknown or invalid model: reported elsewhere
            continue
        allowed = sorted(k for k in type(model_config).model_fields if k != "kind")
        problems += [
            f"{source}: {key_prefix}.{key}: '{key}' is not a parameter of model '{name}' "
            f"(kind {model_config.kind}); allowed parameters: {', '.join(allowed)}"
            for key in space
            if key not in allowed
        ]
    return problems


def _check_files(cfg: Config, source: str) -> list[str]:
    problems = []

    def check(key: str, spec: str | list[str]) -> None:
        for i, pattern in enumerate([spec] if isinstance(spec, str) else spec):
            where = key if isinstance(spec, str) else f"{key}.{i}"
            if is_uri(pattern):  # s3a://, hdfs://: only Spark reads them (it checks them when ingest runs)
                if not cfg.engine.is_spark:
                    problems.append(
                        f"{source}: {where}: '{pattern}' is a URI; the local engine reads local files only. "
                        "Set `engine: {kind: spark, ...}` to read it through Spark, or copy it to this machine."
                    )
                continue
            full = cfg.resolve(pattern)
            if glob.has_magic(str(full)):
                if not glob.glob(str(full)):
                    problems.append(f"{source}: {where}: no file matches '{pattern}' (looked in {full.parent})")
            elif not full.exists():
                problems.append(
                    f"{source}: {where}: file not found: {full}; check the path (relative to the config file)"
                )

    sources = cfg.data.interaction_sources()
    for i, src in enumerate(sources):
        base = (
            "data.interactions"
            if len(sources) == 1 and not isinstance(cfg.data.interactions, list)
            else f"data.interactions.{i}"
        )
        check(f"{base}.path", src.path)
        for j, lookup in enumerate(src.lookups):
            check(f"{base}.lookups.{j}.path", lookup.path)
    if cfg.data.items is not None:
        check("data.items.path", cfg.data.items.path)
    if cfg.data.users is not None:
        check("data.users.path", cfg.data.users.path)
    rules = cfg.recommend.rules if cfg.recommend else None
    for key in ("allow_list", "deny_list"):
        value = getattr(rules, key, None) if rules else None
        if value:
            check(f"recommend.rules.{key}", value)
    return problems


def _check_export_uri(cfg: Config, source: str) -> list[str]:
    """An ``export.directory`` URI (object store, HDFS) is published through Spark, pointer only."""
    export = cfg.export
    if not is_uri(export.directory):
        return []
    where = f"{source}: export.directory: '{export.directory}' is a URI"
    problems = []
    if not cfg.engine.is_spark:
        problems.append(
            f"{where}; the local engine publishes to local folders only. Set `engine: {{kind: spark, ...}}` "
            "to publish through Spark's file systems, or use a local (or mounted) folder."
        )
    if export.latest == "symlink":
        problems.append(f"{where}; object stores have no symlinks: set export.latest: json")
    if export.delta:
        problems.append(f"{where}; export.delta needs a local folder: set export.delta: false")
    if export.related is not None:
        problems.append(f"{where}; export.related needs a local folder: remove export.related")
    return problems


def is_uri(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URI with a scheme (``s3a://``, ``hdfs://``, ``file://``) rather than a local path."""
    text = str(path)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.replace("+", "").isalnum() and len(scheme) > 1


#: values a config may hold once YAML aliases are expanded (a real config holds a few hundred)
MAX_EXPANDED_VALUES = 100_000


def _refuse_alias_bombs(text: str, source: str) -> None:
    """Refuse a YAML whose aliases expand to more than :data:`MAX_EXPANDED_VALUES` values.

    Nested aliases (``a: &a [x, x]``, ``b: &b [*a, *a]``, ...) make a file of a few lines
    expand to billions of values, which validation would walk for minutes until memory runs
    out. The composed node graph is measured first, each shared node counted once per use.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key not in sizes:
            sizes[key] = 1  # a cycle (an alias to an ancestor) counts once, then is cut
            if isinstance(node, yaml.SequenceNode):
                sizes[key] = 1 + sum(size(child) for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                sizes[key] = 1 + sum(size(k) + size(v) for k, v in node.value)
            sizes[key] = min(sizes[key], MAX_EXPANDED_VALUES + 1)
        return sizes[key]

    try:
        total = size(root)
    except RecursionError:
        raise ConfigError(f"{source}: the YAML nests too deeply to be an experiment config.") from None
    if total > MAX_EXPANDED_VALUES:
        raise ConfigError(
            f"{source}: YAML aliases expand to more than {MAX_EXPANDED_VALUES:,} values; a config never needs "
            "that many (nested anchors / aliases?). Write the values out, or use fewer aliases."
        )


def load_config(path: str | os.PathLike[str], *, check_files: bool = True, overrides: Sequence[str] = ()) -> Config:
    """Load and validate an experiment config.

    Parameters
    ----------
    path
        The YAML file.
    check_files
        Also check that every input file exists (on by default; off for tests of shape only).
    overrides
        ``KEY=VALUE`` changes applied to the YAML before validation (``--set``; see
        :mod:`recctl.config.overrides`); a problem they cause names the ``--set``.

    Returns
    -------
    Config
        The validated config; relative paths resolve against the file's directory.

    Raises
    ------
    ConfigError
        Listing every problem found, one per line, as ``file: dotted.key: message``.
    """
    p = Path(path)
    source = str(path)
    if not p.exists():
        raise ConfigError(f"{source}: config file not found; give the path to a YAML experiment config.")
    try:
        text = p.read_text(encoding="utf-8")
        _refuse_alias_bombs(text, source)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not a UTF-8 text file ({exc.reason}).") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping of sections (data, models, ...).")
    if not overrides:
        return config_from_dict(raw, base_dir=p.resolve().parent, source=source, check_files=check_files)
    from recctl.config.overrides import annotate_problems, apply_overrides

    raw = apply_overrides(raw, overrides, source)
    try:
        return config_from_dict(raw, base_dir=p.resolve().parent, source=source, check_files=check_files)
    except ConfigError as exc:
        raise ConfigError(annotate_problems(str(exc), overrides, source)) from exc


def config_from_dict(
    raw: dict[str, Any], *, base_dir: Path | None = None, source: str = "config", check_files: bool = True
) -> Config:
    """Validate a config given as a dict (see :func:`load_config`)."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_validation_error(exc, source))) from exc
    cfg._base_dir = base_dir or Path.cwd()
    cfg._source_path = Path(source) if source != "config" else None
    problems = _validate_models(cfg, source)
    problems += _check_references(cfg, source)
    problems += _check_export_uri(cfg, source)
    if check_files:
        problems += _check_files(cfg, source)
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg
