"""Deep merge and dotted-path access, shared by every layer that combines configs.

One ``deep_merge`` serves config loading (defaults + config.yaml), `hermes
config set`, `hermes setup`, and the NixOS activation (user file + Nix
settings), so the semantics are the same everywhere:

- mappings merge recursively;
- lists and scalars from ``override`` replace those in ``base``;
- keys present only in ``base`` are kept (a user's own keys survive a merge).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any

_MISSING = object()


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new mapping: ``base`` with ``override`` merged on top.

    Neither argument is modified and the result shares no mutable value with
    them, so callers can change it freely.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = merged.get(key, _MISSING)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def split_key(key: str) -> list[str]:
    """Split a dotted key; empty parts (``a..b``, ``.a``) are refused."""
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise ValueError(f"invalid key {key!r}: use dotted names like model.default")
    return parts


@functools.lru_cache(maxsize=1024)
def _key_parts(key: str) -> tuple[str, ...]:
    """:func:`split_key` as a tuple, worked out once per key (settings are read on every
    tool call; an invalid key raises every time, it is never cached)."""
    return tuple(split_key(key))


def get_path(tree: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Return the value at dotted ``key``, or ``default`` when any part is missing."""
    node: Any = tree
    for part in _key_parts(key):
        # A dict is told by its type first: the Mapping check is an ABC's, slower.
        if not (type(node) is dict or isinstance(node, Mapping)) or part not in node:
            return default
        node = node[part]
    return node


def has_path(tree: Mapping[str, Any], key: str) -> bool:
    return get_path(tree, key, _MISSING) is not _MISSING


def set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in ``tree``, creating (or replacing non-mapping) parents."""
    *parents, leaf = split_key(key)
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def unset_path(tree: dict[str, Any], key: str) -> bool:
    """Remove dotted ``key``; drop parents it leaves empty. Return whether it existed."""
    return unset_parts(tree, split_key(key))


def get_parts(tree: Mapping[str, Any], parts: Sequence[str], default: Any = None) -> Any:
    """Like :func:`get_path` for a key given as its parts (names may contain dots)."""
    node: Any = tree
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def unset_parts(tree: dict[str, Any], parts: Sequence[str]) -> bool:
    """Like :func:`unset_path` for a key given as its parts (names may contain dots)."""
    if not parts:
        return False
    *parents, leaf = parts
    chain: list[tuple[dict[str, Any], str]] = []
    node: Any = tree
    for part in parents:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return False
        chain.append((node, part))
        node = node[part]
    if not isinstance(node, dict) or leaf not in node:
        return False
    del node[leaf]
    for parent, part in reversed(chain):
        if parent[part]:
            break
        del parent[part]
    return True


def leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every non-mapping value (and of empty mappings) in ``tree``."""
    keys: list[str] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            keys.extend(leaf_keys(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """:func:`leaf_keys` as tuples of parts, for keys whose names contain dots.

    The NixOS deployment records which keys it set this way: an entry of an
    open mapping named ``docs.example.com`` must not become three nested keys.
    """
    paths: list[tuple[str, ...]] = []
    for key, value in tree.items():
        here = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            paths.extend(leaf_paths(value, here))
        else:
            paths.append(here)
    return paths
