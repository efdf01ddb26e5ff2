"""Acceptance rules: what an answer must be before it counts (``accept:`` in a chain's
``defaults`` and in each step), as written and as resolved for a step.

    accept:
      json: true                 # the answer parses as JSON
      schema: {type: object, required: [title]}   # or schema_file: schemas/x.json
      tool_arguments: true       # tool calls name a sent tool and match its parameters
      not_empty: true            # the answer has visible text or a tool call
      max_chars: 4000            # longest answer, in characters
      validators: [no_apology]   # checks registered in code (register_validator)

A step's keys override the same keys of ``defaults`` (``schema`` and ``schema_file`` are one
slot). Schemas are compiled once, here, when the chain is built; a ``schema_file`` is read
from the chains directory, relative to it, within the limits on configuration files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from engine.support.schemas import CompiledSchema, SchemaError, compile_schema

__all__ = [
    "DEFAULT_ACCEPTANCE",
    "AcceptSpec",
    "Acceptance",
    "AcceptanceProblem",
    "acceptance_problems",
    "resolve_acceptance",
]

#: Most validators one step may name.
MAX_VALIDATORS: Final = 32


class AcceptSpec(BaseModel):
    """``accept:`` as written (each key optional; a step's keys override ``defaults``')."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    json_: bool | None = Field(
        default=None, alias="json", description="The answer must parse as JSON."
    )
    schema_: dict[str, Any] | bool | None = Field(
        default=None,
        alias="schema",
        description="A JSON Schema the answer (parsed as JSON) must match.",
    )
    schema_file: str | None = Field(
        default=None,
        min_length=1,
        description="A JSON (or YAML) file holding the schema, relative to the chains directory.",
    )
    tool_arguments: bool | None = Field(
        default=None,
        description="Every tool call names a tool that was sent and its arguments match that "
        "tool's parameters (default: true).",
    )
    not_empty: bool | None = Field(
        default=None,
        description="The answer has visible text or a tool call (default: true).",
    )
    max_chars: int | None = Field(
        default=None, ge=1, description="The longest answer accepted, in characters."
    )
    validators: list[str] | None = Field(
        default=None,
        max_length=MAX_VALIDATORS,
        description="Checks registered in code with LLMManager.register_validator(name, fn).",
    )


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A step's resolved acceptance rules (what `engine.core.acceptance` checks)."""

    json: bool = False
    schema: CompiledSchema | None = None
    #: Where the schema came from: ``inline`` or the schema file's path (for people).
    schema_source: str | None = None
    tool_arguments: bool = True
    not_empty: bool = True
    max_chars: int | None = None
    validators: tuple[str, ...] = ()

    @property
    def wants_json(self) -> bool:
        """Whether the answer must parse as JSON (a schema implies it)."""
        return self.json or self.schema is not None

    def rules(self) -> list[str]:
        """The rules beyond the defaults, in words (diagrams, ``explain``)."""
        out: list[str] = []
        if self.schema is not None:
            where = "" if self.schema_source == "inline" else f" {self.schema_source}"
            out.append(f"JSON matching the schema{where}")
        elif self.json:
            out.append("JSON")
        if self.max_chars is not None:
            out.append(f"≤{self.max_chars} chars")
        if not self.tool_arguments:
            out.append("tool arguments unchecked")
        if not self.not_empty:
            out.append("may be blank")
        if self.validators:
            out.append("validators: " + ", ".join(self.validators))
        return out


#: What a step accepts when nothing is written: visible text or a tool call, and tool
#: calls that match the tools sent.
DEFAULT_ACCEPTANCE: Final = Acceptance()


class AcceptanceProblem(Exception):
    """A rule that cannot be built: ``key`` is the ``accept`` key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _slot(spec: AcceptSpec | None, name: str) -> Any:
    return None if spec is None else getattr(spec, name)


def _load_schema_file(name: str, base: Path | None) -> tuple[Any, str]:
    # Imported here: the file limits module imports the chain spec, which imports this one.
    from engine.chain.filelimits import read_config_text, screen_yaml

    if base is None:
        raise AcceptanceProblem("schema_file", "a schema_file needs a chain read from a directory")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise AcceptanceProblem(
            "schema_file", f"'{name}' must be a path inside the chains directory, relative to it"
        )
    path = base / relative
    text, refused = read_config_text(path, root=base)
    if refused is not None or text is None:
        message = refused.message if refused is not None else "cannot be read"
        raise AcceptanceProblem("schema_file", f"{path}: {message}")
    try:
        if path.suffix == ".json":
            return json.loads(text), str(relative)
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        screened = screen_yaml(text, str(path))
        if screened is not None:
            raise AcceptanceProblem("schema_file", str(screened))
        try:
            return YAML(typ="safe", pure=True).load(text), str(relative)
        except YAMLError as exc:
            raise AcceptanceProblem("schema_file", f"{path}: invalid YAML: {exc}") from None
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, AcceptanceProblem):
            raise
        raise AcceptanceProblem("schema_file", f"{path}: invalid JSON: {exc}") from None


def _schema(
    defaults: AcceptSpec | None, step: AcceptSpec | None, base: Path | None
) -> tuple[CompiledSchema | None, str | None]:
    for spec in (step, defaults):
        if spec is None:
            continue
        if spec.schema_ is not None and spec.schema_file is not None:
            raise AcceptanceProblem("schema", "write schema or schema_file, not both")
        if spec.schema_ is not None:
            try:
                return compile_schema(spec.schema_), "inline"
            except SchemaError as exc:
                raise AcceptanceProblem("schema", str(exc)) from None
        if spec.schema_file is not None:
            raw, source = _load_schema_file(spec.schema_file, base)
            try:
                return compile_schema(raw), source
            except SchemaError as exc:
                raise AcceptanceProblem("schema_file", f"{source}: {exc}") from None
    return None, None


def resolve_acceptance(
    defaults: AcceptSpec | None, step: AcceptSpec | None, base: Path | None
) -> Acceptance:
    """A step's rules: its own keys, then the chain's ``defaults``, then the built-ins.

    Raises `AcceptanceProblem` for a schema that cannot be read or compiled."""
    if defaults is None and step is None:
        return DEFAULT_ACCEPTANCE
    schema, source = _schema(defaults, step, base)

    def pick(name: str, default: Any) -> Any:
        value = _slot(step, name)
        if value is None:
            value = _slot(defaults, name)
        return default if value is None else value

    acceptance = Acceptance(
        json=bool(pick("json_", False)),
        schema=schema,
        schema_source=source,
        tool_arguments=bool(pick("tool_arguments", True)),
        not_empty=bool(pick("not_empty", True)),
        max_chars=pick("max_chars", None),
        validators=tuple(dict.fromkeys(pick("validators", ()))),
    )
    return DEFAULT_ACCEPTANCE if acceptance == DEFAULT_ACCEPTANCE else acceptance


def acceptance_problems(
    defaults: AcceptSpec | None, steps: Mapping[int, AcceptSpec | None], base: Path | None
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every rule that cannot be built, located: ``(("steps", 2, "accept", "schema"), msg)``.

    A problem in ``defaults`` is reported there once, not again for each step."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    try:
        resolve_acceptance(defaults, None, base)
    except AcceptanceProblem as exc:
        problems.append((("defaults", "accept", exc.key), exc.message))
        defaults = None
    for index, spec in steps.items():
        if spec is None:
            continue
        try:
            resolve_acceptance(defaults, spec, base)
        except AcceptanceProblem as exc:
            problems.append((("steps", index, "accept", exc.key), exc.message))
        for name in spec.validators or ():
            if not name.strip():
                problems.append((("steps", index, "accept", "validators"), "a name is empty"))
    for name in (defaults.validators or ()) if defaults is not None else ():
        if not name.strip():
            problems.append((("defaults", "accept", "validators"), "a name is empty"))
    return problems
