"""deep_merge and dotted paths: the semantics config loading, `config set` and Nix share."""

from __future__ import annotations

import copy

import pytest

from hermes_agent.config.merge import deep_merge, get_path, leaf_keys, set_path, unset_path


def test_nested_dicts_recurse_and_keep_keys_only_in_base() -> None:
    base = {"model": {"default": "a", "base_url": "u"}, "display": {"compact": False}}
    override = {"model": {"default": "b"}}
    assert deep_merge(base, override) == {
        "model": {"default": "b", "base_url": "u"},
        "display": {"compact": False},
    }


def test_three_levels_deep() -> None:
    base = {"a": {"b": {"c": 1, "d": 2}, "e": 3}}
    override = {"a": {"b": {"c": 10, "x": 4}}}
    assert deep_merge(base, override) == {"a": {"b": {"c": 10, "d": 2, "x": 4}, "e": 3}}


def test_lists_are_replaced_not_appended() -> None:
    assert deep_merge({"toolsets": ["a", "b"]}, {"toolsets": ["c"]}) == {"toolsets": ["c"]}
    assert deep_merge({"toolsets": ["a"]}, {"toolsets": []}) == {"toolsets": []}


def test_keys_only_in_override_are_added() -> None:
    base = {"mcp_servers": {"fs": {"command": "x"}}}
    override = {"mcp_servers": {"web": {"url": "http://h"}}}
    assert deep_merge(base, override) == {
        "mcp_servers": {"fs": {"command": "x"}, "web": {"url": "http://h"}}
    }


def test_scalar_replaces_mapping_and_mapping_replaces_scalar() -> None:
    assert deep_merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert deep_merge({"a": 5}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert deep_merge({"a": {"b": 1}}, {"a": None}) == {"a": None}


def test_inputs_are_not_modified_and_result_shares_nothing() -> None:
    base = {"a": {"b": [1, 2]}, "keep": {"x": 1}}
    override = {"a": {"c": {"d": [3]}}}
    base_copy, override_copy = copy.deepcopy(base), copy.deepcopy(override)
    merged = deep_merge(base, override)
    merged["a"]["b"].append(99)
    merged["a"]["c"]["d"].append(99)
    merged["keep"]["x"] = 2
    assert base == base_copy
    assert override == override_copy


def test_merge_is_idempotent() -> None:
    base = {"a": {"b": 1, "u": [1]}, "user": True}
    override = {"a": {"b": 2, "c": {"d": 3}}}
    once = deep_merge(base, override)
    assert deep_merge(once, override) == once


def test_get_set_unset_paths() -> None:
    tree: dict[str, object] = {}
    set_path(tree, "model.default", "x")
    set_path(tree, "model.base_url", "u")
    assert get_path(tree, "model.default") == "x"
    assert get_path(tree, "model.missing", "dflt") == "dflt"
    assert get_path(tree, "model.default.deeper", "dflt") == "dflt"
    assert unset_path(tree, "model.default") is True
    assert tree == {"model": {"base_url": "u"}}
    assert unset_path(tree, "model.base_url") is True
    assert tree == {}, "an emptied parent section is removed"
    assert unset_path(tree, "model.base_url") is False


def test_set_path_replaces_a_scalar_parent() -> None:
    tree: dict[str, object] = {"model": "oops"}
    set_path(tree, "model.default", "x")
    assert tree == {"model": {"default": "x"}}


@pytest.mark.parametrize("key", ["", ".a", "a.", "a..b"])
def test_malformed_dotted_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="invalid key"):
        get_path({}, key)


def test_leaf_keys() -> None:
    assert leaf_keys({"a": {"b": 1, "c": {}}, "d": [1]}) == ["a.b", "a.c", "d"]
