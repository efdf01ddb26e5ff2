"""The record of one attempt (a dict with the metadata contract's keys), and the errors a
failed call raises, in words that say what happened where."""

from __future__ import annotations

from typing import Any

from engine.chain.spec import ABORTED, Step
from engine.core.actions import StreamDone
from engine.errors import ChainAbortedError, ChainExhaustedError, StreamInterruptedError
from engine.telemetry.events import RequestFinished, Sinks
from engine.types.completion import Completion
from engine.types.meta import GenerationMeta, fallback_reason, iso_timestamp, snapshot
from engine.types.outcomes import TAXONOMY, Outcome
from engine.types.request import ChatRequest

__all__ = [
    "answered",
    "attempt_record",
    "describe",
    "ended",
    "failed",
    "finished",
    "left",
    "reason_of",
    "who",
]


def attempt_record(
    step: Step,
    model: str | None,
    outcome: Outcome,
    seconds: float,
    stamp: float,
    retry: int,
    next_state: str,
    provider: str | None = None,
    *,
    skipped_for: float | None = None,
    retry_refused: bool = False,
    streamed: StreamDone | None = None,
    category: str | None = None,
    hedge: int | None = None,
    cancelled: bool = False,
) -> dict[str, Any]:
    """The record of one attempt, made once: ``skipped_for`` (seconds until a probe) for an
    attempt a breaker skipped, ``streamed`` for a streamed call (``category``: its trigger,
    ``cut`` when it broke after its first chunk); ``provider``: the pool member called (the
    step's provider by default); ``hedge``: the copy number of a hedged attempt,
    ``cancelled`` for one another copy beat."""
    completion = outcome.completion
    # A plain dict, built once in the contract's key order (the keys every attempt has,
    # then those that apply): made on every attempt, so no intermediate object.
    record: dict[str, Any] = {
        "provider": provider or step.provider,
        "model": (completion.model if completion is not None else None) or model,
        "status": "skipped"
        if skipped_for is not None
        else "cancelled"
        if cancelled
        else "success"
        if outcome.category == "success"
        else "failed",
        "error_category": outcome.error_category,
        "error_code": outcome.error_code,
        "latency_ms": 0 if skipped_for is not None else round(seconds * 1000),
        "timestamp": iso_timestamp(stamp),
        "tokens_in": completion.tokens_in if completion else 0,
        "tokens_out": completion.tokens_out if completion else 0,
        "tokens_total": completion.tokens_in + completion.tokens_out if completion else 0,
        "cost_usd_est": completion.cost_usd if completion else None,
        "category": category or outcome.category,
        "state": step.id,
        "retry": retry,
        "retry_after_ms": None
        if outcome.retry_after is None
        else round(outcome.retry_after * 1000),
        "message": outcome.message,
        "http_status": outcome.http_status,
        "next": next_state,
    }
    if skipped_for is not None:
        record["retry_in_ms"] = round(skipped_for * 1000)
    if retry_refused:
        record["retry_refused"] = "retry_budget_exhausted"
    if streamed is not None:
        record["ttft_ms"] = None if streamed.ttft is None else round(streamed.ttft * 1000)
        record["chunks"] = streamed.chunks
        record["truncated"] = category == "cut" and outcome.error_code != "answer_rejected"
    if hedge is not None:
        record["hedge"] = hedge
    return record


def left(
    step: Step, model: str | None, provider: str, seconds: float, stamp: float, retry: int
) -> dict[str, Any]:
    """The record of an attempt whose caller went away before it ended (a stream closed
    early, a client that hung up): ``cancelled``, code ``caller_left``, and no next step."""
    outcome = TAXONOMY["caller_left"]
    gone = Outcome(
        outcome.category, outcome.error_category, "caller_left", outcome.transient,
        "the caller stopped before the attempt ended",
    )  # fmt: skip
    return attempt_record(
        step, model, gone, seconds, stamp, retry, "cancelled", provider, cancelled=True
    )


def reason_of(attempt: dict[str, Any]) -> str:
    reason = str(attempt["error_category"] or attempt["category"])
    return f"{reason}:{attempt['error_code']}" if attempt["error_code"] else reason


def describe(attempt: dict[str, Any]) -> str:
    detail = f" ({attempt['message']})" if attempt["message"] else ""
    return f"{attempt['state']} -> {reason_of(attempt)}{detail}"


def who(name: str) -> str:
    """How messages name what ran: a chain, or the one provider of the single path."""
    if name.startswith("provider:"):
        return f"provider '{name.removeprefix('provider:')}'"
    return f"chain '{name}'"


def _interrupted(
    name: str, attempts: list[dict[str, Any]], last: Outcome, partial: str
) -> StreamInterruptedError:
    stop = attempts[-1]
    chunks = f"{stop['chunks']} chunk{'s' if stop['chunks'] != 1 else ''}"
    if stop["error_code"] == "answer_rejected":
        message = (
            f"{who(name)}: the answer streamed from {stop['state']} ({chunks}) was rejected: "
            f"{str(stop['message']).removeprefix('answer rejected: ')}; it does not count"
        )
    else:
        message = (
            f"{who(name)}: the stream from {stop['state']} was cut after {chunks} "
            f"by {reason_of(stop)}; the answer is incomplete"
        )
    return StreamInterruptedError(message, last.error_code, attempts, partial, last.exception)


def _failure(
    name: str,
    state: str,
    attempts: list[dict[str, Any]],
    last: Outcome,
    deadline: float,
    out_of_time: bool,
) -> ChainExhaustedError | ChainAbortedError:
    summary = "; ".join(describe(a) for a in attempts)
    cause = last.exception
    count = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"
    if state == ABORTED:
        stop = attempts[-1]
        detail = f": {stop['message']}" if stop["message"] else ""
        message = (
            f"{who(name)} stopped at {stop['state']} by {reason_of(stop)}{detail}; "
            "the same request would fail on every provider"
        )
        return ChainAbortedError(message, last.error_code, attempts, cause)
    if out_of_time:
        message = f"{who(name)} ran out of time ({deadline:g}s) after {count}: {summary}"
        return ChainExhaustedError(message, "deadline_exceeded", attempts, cause)
    if name.startswith("provider:"):
        message = f"{who(name)} failed after {count}: {summary}"
    else:
        message = f"all providers failed for {who(name)} after {count}: {summary}"
    return ChainExhaustedError(message, last.error_code, attempts, cause)


def finished(
    sinks: Sinks,
    chain: str,
    state: str,
    meta: GenerationMeta,
    wall: float,
    request: ChatRequest,
    answer: str | None,
) -> None:
    """Tell the sinks a request left its chain."""
    # A shallow snapshot, not to_dict(): deep-copying the record per request would cost
    # more than everything else the engine does; sinks format it off the request path.
    sinks.emit(RequestFinished(chain, str(meta.mode), state, snapshot(meta), wall, request, answer))


def ended(meta: GenerationMeta, attempts: list[dict[str, Any]], elapsed_ms: int) -> None:
    """Fill what ``meta`` says of any request once it is over."""
    meta.duration_ms = elapsed_ms
    meta.fallback_used = len(attempts) > 1
    meta.fallback_reason = fallback_reason(attempts)


def answered(
    meta: GenerationMeta, attempts: list[dict[str, Any]], completion: Completion, elapsed_ms: int
) -> None:
    """Fill ``meta`` for a request the last attempt answered."""
    ended(meta, attempts, elapsed_ms)
    winner = attempts[-1]
    meta.provider = winner["provider"]
    meta.model = winner["model"]
    meta.latency_ms = winner["latency_ms"]
    meta.tokens_in = completion.tokens_in
    meta.tokens_out = completion.tokens_out
    meta.tokens_total = completion.tokens_total
    meta.cost_usd_est = completion.cost_usd
    meta.error = None
    meta.error_category = None


def failed(
    meta: GenerationMeta,
    name: str,
    state: str,
    attempts: list[dict[str, Any]],
    last: Outcome,
    deadline: float,
    out_of_time: bool,
    cut: StreamDone | None,
) -> ChainExhaustedError | ChainAbortedError:
    """Fill ``meta`` for a request no attempt answered; return the error to raise
    (``cut``: the stream that broke after its first chunk, when that ended the request)."""
    error: ChainExhaustedError | ChainAbortedError
    if cut is not None and not out_of_time:
        meta.truncated = bool(attempts[-1]["truncated"])  # not for a rejected answer
        error = _interrupted(name, attempts, last, cut.text)
    else:
        error = _failure(name, state, attempts, last, deadline, out_of_time)
    meta.error = str(error)
    meta.error_category = error.error_category
    return error
