"""``--set KEY=VALUE``: change config keys for one command without editing the file.

An override is applied to the YAML as read, before validation, so it is checked exactly like
the file: an unknown key, a wrong type or a model that does not exist is refused with the
dotted key, and the message says which ``--set`` put it there. The value is YAML
(``--set evaluate.k=[5,10]``, ``--set recommend=null``), or plain text when it does not parse
as YAML (``--set data.interactions.timestamp_format=%d.%m.%Y``); paths in it resolve against
the config file's directory, like the file's own.

>>> apply_overrides({"seed": 1, "models": {"pop": {"kind": "popularity"}}}, ["seed=7", "models.pop.n=3"])
{'seed': 7, 'models': {'pop': {'kind': 'popularity', 'n': 3}}}
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from recctl.errors import ConfigError

__all__ = ["annotate_problems", "apply_overrides", "parse_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and its YAML value.

    Parameters
    ----------
    text
        ``KEY=VALUE``; the key is dotted, list entries are numbers (``data.interactions.0.path``).

    Returns
    -------
    tuple
        The key's parts and the parsed value.

    Raises
    ------
    ConfigError
        Without ``=`` or with an empty key part. A value that is not valid YAML is taken as text.
    """
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ConfigError(f"override '{text}': expected KEY=VALUE with a dotted key, e.g. evaluate.k=[5,10]")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        # not YAML (`%d.%m.%Y`, `a: b: c`): the text itself, which validation then checks like any value
        parsed = value
    return [p.strip() for p in parts], parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], source: str = "config") -> dict[str, Any]:
    """Return a copy of ``raw`` with every override applied, in order.

    Missing sections on the way are created (validation then says what else they need).

    Raises
    ------
    ConfigError
        When a key path runs through a value that is not a section or a list, or through a list
        position that does not exist.
    """
    result = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, parts[:depth], parts, source, text)
        _assign(node, parts[-1], value, parts[:-1], source, text)
    return result


def _child(node: Any, part: str, above: list[str], parts: list[str], source: str, text: str) -> Any:
    # `above` is the key path of `node`
    if isinstance(node, dict):
        if not isinstance(node.get(part), (dict, list)):
            if node.get(part) is not None:
                where = ".".join([*above, part])
                raise ConfigError(
                    f"{source}: {where}: is {node[part]!r}, not a section, so '{'.'.join(parts)}' cannot be set "
                    f"(from --set {text})"
                )
            node[part] = {}
        return node[part]
    return node[_index(node, part, above, source, text)]


def _assign(node: Any, part: str, value: Any, above: list[str], source: str, text: str) -> None:
    if isinstance(node, dict):
        node[part] = value
    else:
        node[_index(node, part, above, source, text)] = value


def _index(node: list[Any], part: str, above: list[str], source: str, text: str) -> int:
    where = ".".join(above)
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(
            f"{source}: {where}: this key is a list of {len(node)} entries; use a position 0..{len(node) - 1} "
            f"(from --set {text})"
        )
    return int(part)


def annotate_problems(message: str, overrides: Sequence[str], source: str) -> str:
    """Add ``(from --set ...)`` to each ``source: key: problem`` line a given override caused."""
    keys = []
    for text in overrides:
        try:
            keys.append((parse_override(text)[0], text))
        except ConfigError:
            continue
    lines = []
    for line in message.splitlines():
        for parts, text in reversed(keys):  # the last override of a key is the one that counts
            if _caused_by(line, parts, source):
                line = f"{line} (from --set {text})"
                break
        lines.append(line)
    return "\n".join(lines)


def _caused_by(line: str, parts: list[str], source: str) -> bool:
    head = f"{source}: {'.'.join(parts)}"
    if line.startswith((head + ":", head + ".")):
        return True
    # an unknown key is reported at its section ("evaluate: unknown key 'kk'")
    for depth in range(len(parts) - 1, 0, -1):
        if line.startswith(f"{source}: {'.'.join(parts[:depth])}: ") and f"'{parts[depth]}'" in line:
            return True
    return False
