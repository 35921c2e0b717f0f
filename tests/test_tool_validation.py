"""The registry's quick argument check agrees with jsonschema (it only ever says "valid"
when jsonschema would, and every rejection is jsonschema's own message)."""

from __future__ import annotations

import itertools
from typing import Any

from jsonschema import Draft202012Validator

from hermes_agent.tools.registry import Tool, _plain_schema, _plainly_valid

VALUES: list[Any] = [
    "",
    "x",
    0,
    1,
    -3,
    1.0,
    2.5,
    float("nan"),
    True,
    False,
    None,
    [],
    [1],
    {},
    {"a": 1},
]
TYPES = ["string", "integer", "number", "boolean", "null", "object", "array", ["string", "null"]]


async def _noop(args: dict[str, Any], ctx: Any) -> str:
    return ""


def _schemas() -> list[dict[str, Any]]:
    out = []
    for kind, required, extra in itertools.product(TYPES, ([], ["a"]), (None, True, False)):
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"a": {"type": kind, "description": "d"}, "b": {"type": "string"}},
            "required": required,
        }
        if extra is not None:
            schema["additionalProperties"] = extra
        out.append(schema)
    return out


def test_the_quick_check_never_passes_what_jsonschema_rejects() -> None:
    checked = 0
    for schema in _schemas():
        plain = _plain_schema(schema)
        assert plain is not None, schema
        validator = Draft202012Validator(schema)
        for value, other in itertools.product(VALUES, (None, "s", 5)):
            for arguments in ({"a": value}, {"a": value, "b": other}, {"a": value, "c": 1}, {}):
                if _plainly_valid(arguments, *plain):
                    assert validator.is_valid(arguments), (schema, arguments)
                    checked += 1
    assert checked > 500


def test_other_schemas_are_left_to_jsonschema() -> None:
    for schema in (
        {"type": "object", "properties": {"a": {"type": "string", "minLength": 3}}},
        {"type": "object", "properties": {"a": {"enum": ["x"]}}},
        {"type": "object", "properties": {"a": True}},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "properties": {}, "anyOf": [{"required": ["a"]}]},
        {"type": ["object"], "properties": {}},
    ):
        assert _plain_schema(schema) is None, schema


def test_rejections_keep_jsonschemas_messages() -> None:
    tool = Tool(
        name="t",
        toolset="x",
        description="",
        parameters={
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
            "additionalProperties": False,
        },
        handler=_noop,
    )
    assert tool.validation_error({"n": 3}) is None
    assert tool.validation_error({"n": 1.0}) is None  # jsonschema's integer: the quick check defers
    assert "'n' is a required property" in (tool.validation_error({}) or "")
    assert "is not of type 'integer'" in (tool.validation_error({"n": "3"}) or "")
    assert "Additional properties" in (tool.validation_error({"n": 3, "m": 1}) or "")
