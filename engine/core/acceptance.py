"""Whether an answer counts: a step's ``accept`` rules, and what the request itself implies
(a ``json_object`` / ``json_schema`` response format; the tools it sent), checked on every
answer before it is a success.

`judge` returns None for an answer that counts, or the reason it does not; the
decision core then records the attempt as ``answer_rejected`` (tokens and cost kept: the
call was paid for) and the chain moves on. Rules are checked in a fixed order, cheapest
first: blank, length, tool calls, JSON, schemas, then the application's validators.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from engine.chain.accept import DEFAULT_ACCEPTANCE, Acceptance
from engine.core.actions import StreamDone
from engine.core.classify import classify_exception, classify_result
from engine.core.request_check import response_schema
from engine.support.schemas import compile_schema, schema_error
from engine.types.completion import Completion
from engine.types.outcomes import TAXONOMY, Category, Outcome
from engine.types.request import ChatRequest

__all__ = ["Judge", "Validator", "conclude", "judge", "missing_validators", "rejected"]

#: An application's check: gets the answer, returns None (it counts) or why it does not.
Validator: TypeAlias = Callable[[Completion], "str | None"]
#: Decides whether an answer counts (`judge`'s signature; ``simulate`` scripts one).
Judge: TypeAlias = Callable[
    [Completion, Acceptance, ChatRequest, Mapping[str, Validator]], "str | None"
]

# Characters that show nothing: a reply of only these (zero-width spaces, a BOM, joiners)
# is as blank as an empty one.
_INVISIBLE: Final = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp", "Mn"})
_EXCERPT: Final = 200


def _visible(text: str) -> bool:
    # A loop, not any(): this runs on every answer, and a generator costs more than the
    # first character's check, which is almost always the last one needed.
    for char in text:  # noqa: SIM110
        if not char.isspace() and unicodedata.category(char) not in _INVISIBLE:
            return True
    return False


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _parsed(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"the answer is not JSON ({exc}): {_excerpt(text)!r}"


def _tool_calls(completion: Completion, request: ChatRequest) -> str | None:
    sent = {tool.name: tool for tool in request.tools}
    for call in completion.tool_calls:
        tool = sent.get(call.name)
        if tool is None:
            names = ", ".join(sorted(sent)) or "none"
            return f"the tool call {call.name[:64]!r} names no tool sent (sent: {names})"
        try:
            arguments = json.loads(call.arguments)
        except (ValueError, RecursionError) as exc:
            return f"the arguments of tool call {call.name!r} are not JSON ({exc})"
        problem = schema_error(compile_schema(tool.parameters), arguments)
        if problem is not None:
            return f"the arguments of tool call {call.name!r} do not match its parameters {problem}"
    return None


def judge(
    completion: Completion,
    accept: Acceptance,
    request: ChatRequest,
    validators: Mapping[str, Validator],
) -> str | None:
    """None when ``completion`` counts under ``accept`` and ``request``; else why not.

    A validator that raises is the application's error: it propagates to the caller.
    """
    text = completion.text
    calls = completion.tool_calls
    if accept is DEFAULT_ACCEPTANCE and not request.tools and request.response_format is None:
        return None if calls or _visible(text) else "the answer is blank (no visible text)"
    if accept.not_empty and not calls and not _visible(text):
        return "the answer is blank (no visible text)"
    if accept.max_chars is not None and len(text) > accept.max_chars:
        return f"the answer is {len(text)} characters, over max_chars {accept.max_chars}"
    if calls and accept.tool_arguments and request.tools:
        problem = _tool_calls(completion, request)
        if problem is not None:
            return problem
    if not calls:  # a tool call answers instead of text: the text's rules do not apply
        wanted = response_schema(request.response_format)
        fmt = request.response_format
        json_format = fmt is not None and fmt.get("type") in ("json_object", "json_schema")
        if accept.wants_json or json_format:
            value, problem = _parsed(text)
            if problem is not None:
                return problem
            if accept.schema is not None:
                problem = schema_error(accept.schema, value)
                if problem is not None:
                    return f"the answer does not match the step's schema {problem}"
            if wanted is not None:
                problem = schema_error(compile_schema(wanted), value)
                if problem is not None:
                    return f"the answer does not match response_format's schema {problem}"
    for name in accept.validators:
        reason = validators[name](completion)
        if reason is not None:
            if not isinstance(reason, str):
                raise TypeError(
                    f"validator {name!r} returned {type(reason).__name__}; "
                    "a validator returns None (the answer counts) or a reason (a str)"
                )
            return f"validator {name!r}: {_excerpt(reason) or 'rejected'}"
    return None


def missing_validators(
    names: frozenset[str], validators: Mapping[str, Validator], chain: str
) -> LookupError | None:
    """The error to raise before a request's first attempt when its chain names validators
    nobody registered, else None."""
    missing = sorted(name for name in names if name not in validators)
    if not missing:
        return None
    known = ", ".join(sorted(validators)) or "none"
    return LookupError(
        f"chain '{chain}' names validator(s) {', '.join(map(repr, missing))} in accept, "
        f"not registered (register_validator(name, fn); registered: {known})"
    )


def rejected(completion: Completion, reason: str, overrides: Mapping[str, Category]) -> Outcome:
    """An answer that came back but does not count (``accept``): ``answer_rejected``, with
    the answer kept for its tokens and cost (the call was paid for)."""
    rule = TAXONOMY["answer_rejected"]
    return Outcome(
        overrides.get("answer_rejected", rule.category), rule.error_category, "answer_rejected",
        rule.transient, f"answer rejected: {reason}", completion=completion,
    )  # fmt: skip


def conclude(
    result: Any,
    model: str | None,
    accept: Acceptance,
    request: ChatRequest,
    judge: Judge,
    validators: Mapping[str, Validator],
    overrides: Mapping[str, Category],
    provider: str | None = None,
    source: Any = None,
) -> Outcome:
    """What a call's result (a ``(ok, value)`` pair or a stream's ``StreamDone``) says:
    classified, and an answer judged by ``accept`` (``answer_rejected`` when it fails).
    ``provider`` and ``source`` (the provider's name and object) name and read a failure
    another client raised (`classify_exception`)."""
    ok, value = (result.ok, result.value) if isinstance(result, StreamDone) else result
    if not ok:
        return classify_exception(value, overrides, provider, source)
    outcome = classify_result(value, model, overrides)
    answer = outcome.completion
    if answer is not None:  # an answer: does it count?
        reason = judge(answer, accept, request, validators)
        if reason is not None:
            return rejected(answer, reason, overrides)
    return outcome
