"""Imports point downward only: every recctl module imports its own layer or the layers below.

The layers are docs/architecture.md's "Layers"; imports inside functions (lazy ones, which keep
``--help`` fast) count too. A new top-level module or package must be placed in ``LAYERS``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "recctl"

#: lowest first; a module may import modules of its own layer or of a lower one
LAYERS: list[tuple[str, ...]] = [
    (
        "recctl.errors",
        "recctl.columns",
        "recctl.clock",
        "recctl.progress",
        "recctl.metric_registry",
        "recctl.artifacts",
        "recctl.workdir",
        "recctl.history",
        "recctl.memory",
        "recctl._kernels",  # compiled (recctl/_kernels.c): imports nothing of recctl
        "recctl.kernels",
    ),
    # config validates each model's parameters through the model registry, so it sits with models
    # the Spark session helper imports only config and errors: the spark_als model kind uses it
    (
        "recctl.config",
        "recctl.data",
        "recctl.models",
        "recctl.ranking",
        "recctl.rules",
        "recctl.graph",
        "recctl.engine.spark.session",
        "recctl.engine.spark.hadoopfs",
    ),
    (
        "recctl.lists",
        "recctl.evaluation",
        "recctl.tuning",
        "recctl.abtest",
        "recctl.incremental",
        "recctl.serving",
        "recctl.service",
        "recctl.export",
        "recctl.model_store",
        "recctl.htmlreport",
        "recctl.engine",
        "recctl.gates",
        "recctl.versions",
        "recctl.related",
    ),
    ("recctl.stages",),
    ("recctl.pipeline", "recctl.experiment"),
    ("recctl.cli", "recctl.__main__"),
]


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[1]:
                    best = (i, len(name))
    return None if best is None else best[0]


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from recctl import graph` imports the module recctl.graph
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names if target == "recctl"]
    return [(line, name) for line, name in found if name == "recctl" or name.startswith("recctl.")]


def test_every_module_has_a_layer() -> None:
    missing = sorted(
        {_module_of(p) for p in PACKAGE.rglob("*.py") if _module_of(p) != "recctl" and _layer(_module_of(p)) is None}
    )
    assert not missing, f"place these modules in tests/test_layers.py LAYERS: {missing}"


def test_imports_point_downward_only() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_of(path)
        own = _layer(module)
        if own is None:  # recctl/__init__.py: the public API re-exports every layer, lazily
            continue
        for line, target in _imports(path, module):
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                upward.append(f"{where}: {module} (layer {own}) imports {target} (layer {theirs})")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)
