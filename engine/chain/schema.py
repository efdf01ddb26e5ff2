"""The JSON Schema of chain files, as published (torq-fallback schema;
chains/chain.schema.json, which every shipped chain names for editors)."""

from __future__ import annotations

from typing import Any

from engine.chain.spec import ChainSpec

__all__ = ["chain_json_schema", "schema_text"]


def chain_json_schema() -> dict[str, Any]:
    """JSON Schema of a chain file: the mapping form, or a bare list of steps."""
    mapping = ChainSpec.model_json_schema()
    defs = mapping.pop("$defs", {})
    defs["ChainSpec"] = mapping
    steps = mapping["properties"]["steps"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "torq-fallback chain",
        "description": "A chain of LLM providers tried in order (torq-fallback).",
        "anyOf": [
            {"$ref": "#/$defs/ChainSpec"},
            {"type": "array", "minItems": 1, "items": steps["items"]},
        ],
        "$defs": defs,
    }


def schema_text() -> str:
    """The schema as committed in ``chains/chain.schema.json`` (stable formatting)."""
    import json

    return json.dumps(chain_json_schema(), indent=2) + "\n"
