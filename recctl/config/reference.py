"""Render every config key (type, default, description) as Markdown: ``docs/config.md``.

The reference is generated from the pydantic models themselves, so it cannot drift from what
the loader accepts; ``tests/test_config_reference.py`` fails when ``docs/config.md`` is stale.
Regenerate with::

    python -m recctl.config.reference > docs/config.md
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["render_reference"]

_INTRO = """# Config reference

Every key an experiment config accepts, generated from the config models
(`python -m recctl.config.reference > docs/config.md`). The loader is strict: an unknown key, a
wrong type or a missing file is refused before any work starts, with the YAML key named. Paths
are relative to the config file. `configs/` has complete examples: `quickstart.yaml` (the
sample shop), `online_retail.yaml` (a raw invoice export), `movielens.yaml` (ratings with a
threshold), `movielens_sequential.yaml`, `ab_example.yaml`.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" if a is not None else "null" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        key, value = typing.get_args(annotation) or (Any, Any)
        return f"map {_type_name(key)} → {_type_name(value)}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"section `{annotation.__name__}`"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(section defaults)" if isinstance(value, BaseModel) else f"`{value!r}`"
    value = field.default
    if value is PydanticUndefined:
        return ""
    return "null" if value is None else f"`{value!r}`"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found += [m for m in _models_in(arg) if m not in found]
    return found


def _section(model: type[BaseModel], key: str, seen: set[tuple[str, type]]) -> list[str]:
    lines = [f"## `{key}`" if key else "## Top level", ""]
    doc = (model.__doc__ or "").strip().splitlines()
    if doc:
        lines += [doc[0], ""]
    lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
        for sub in _models_in(field.annotation):
            path = f"{key}.{name}" if key else name
            if (path, sub) not in seen:
                seen.add((path, sub))
                nested.append((path, sub))
    lines.append("")
    for path, sub in nested:
        lines += _section(sub, path, seen)
    return lines


def _model_kinds() -> list[str]:
    from recctl.models.registry import get_model_class, model_kinds

    lines = [
        "## `models.<name>`",
        "",
        "Each model is a name mapped to its parameters; `kind` picks the strategy. The keys of each kind:",
        "",
    ]
    for kind in model_kinds():
        config_class = get_model_class(kind).config_class
        doc = (config_class.__doc__ or "").strip().splitlines()
        lines += [f"### kind `{kind}`", ""]
        if doc:
            lines += [doc[0], ""]
        lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, field in config_class.model_fields.items():
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
        lines.append("")
    return lines


def render_reference() -> str:
    """The whole reference as Markdown (top-level keys, every section, every model kind)."""
    from recctl.config import Config

    lines = [_INTRO]
    lines += _section(Config, "", set())
    lines += _model_kinds()
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
