"""Runs one request through a compiled chain.

The decisions live in one generator, :meth:`FallbackExecutor.decide`: it looks the step's
provider up, yields the actions of :mod:`engine.core.actions` (a call, a sleep, a health
operation), classifies what comes back, records the attempt and fires the machine. The
shells (:meth:`~FallbackExecutor.execute`, :meth:`~FallbackExecutor.aexecute`, streams)
only perform actions, so all follow the same path for the same outcomes. This is the only
retry layer: providers must not retry on their own.
"""

from __future__ import annotations

from typing import Any, Final

from engine.chain.spec import FINAL_STATES, SUCCEEDED
from engine.core.acceptance import Judge, Validator, judge, missing_validators, rejected
from engine.core.actions import (
    Call,
    Decisions,
    ProviderLookup,
    Record,
    RetryAllowed,
    Sleep,
    StreamDone,
    as_request,
    breaker_key,
    model_of,
)
from engine.core.admission import admit_step, quota_message, skipped_for
from engine.core.classify import classify_exception, classify_result, coded, health_verdict
from engine.core.machine import CompiledChain
from engine.core.perform import Performer
from engine.core.quotas import acquire, quota_tokens, settle_usage
from engine.core.records import attempt_record, failure, interrupted
from engine.core.routing import LEARNED, TRACKED, Routing, choose_member, too_small
from engine.core.runtime import Runtime, backoff_bound, backoff_delay
from engine.errors import ChainAbortedError, ChainExhaustedError
from engine.health import Admission, HealthConfig, QuotaGrant
from engine.providers.base import CallResult, acall, call
from engine.telemetry.events import AttemptFinished, RequestFinished, RequestStarted, Sinks
from engine.types.completion import Completion
from engine.types.meta import GenerationMeta, fallback_reason, snapshot
from engine.types.outcomes import Outcome
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

__all__ = ["MIN_ATTEMPT_SECONDS", "FallbackExecutor", "ProviderLookup", "as_request"]

#: An attempt starts only with at least this much time left before the deadline.
MIN_ATTEMPT_SECONDS: Final = 0.001
_NO_TIME: Final = Outcome(
    "timeout", "timeout", "deadline_exceeded", False, "no time left to start an attempt"
)


class FallbackExecutor(Performer):
    """Executes chains, looking each provider up through ``lookup`` when its attempt starts.

    ``runtime`` supplies clock, sleep and randomness (inject a fake one in tests);
    ``health`` the breakers' store and policies (None: no breakers, no retry budget).
    """

    def __init__(
        self,
        lookup: ProviderLookup,
        runtime: Runtime | None = None,
        health: HealthConfig | None = None,
        sinks: Sinks | None = None,
    ) -> None:
        self.lookup = lookup
        self.runtime = runtime or Runtime()
        self.health = health
        #: Telemetry sinks (events are built only when there is one).
        self.sinks = sinks if sinks is not None else Sinks()
        #: Checks named in chains' ``accept: validators`` (``register_validator``).
        self.validators: dict[str, Validator] = {}
        #: Whether an answer counts (replaceable: ``simulate`` scripts its rejections).
        self.judge: Judge = judge
        #: What pools choose by: each member's requests in flight and latency.
        self.routing = Routing()

    def _finished(
        self,
        chain: str,
        state: str,
        meta: GenerationMeta,
        request: ChatRequest,
        answer: str | None,
    ) -> None:
        # A shallow snapshot, not to_dict(): deep-copying the record per request would cost
        # more than everything else the engine does; sinks format it off the request path.
        self.sinks.emit(
            RequestFinished(
                chain, meta.mode.value, state, snapshot(meta), self.runtime.wall(), request, answer
            )
        )

    def execute(
        self,
        chain: CompiledChain,
        prompt: str | ChatRequest,
        meta: GenerationMeta,
        timeout: float,
    ) -> Completion:
        """Run ``chain`` synchronously for a prompt or a :class:`ChatRequest`; fill
        ``meta``; return the answer.

        Raises :class:`ChainExhaustedError` or :class:`ChainAbortedError` (``meta`` is
        filled either way). ``timeout`` caps the whole run, with the chain's deadline.
        """
        decisions = self.decide(chain, as_request(prompt), meta, timeout)
        result: CallResult | None = None
        try:
            while True:
                action = decisions.send(result)
                if isinstance(action, Call):
                    result = call(action.provider, action.request, action.timeout, action.model)
                else:
                    result = self.perform(action)
        except StopIteration as done:
            answer: Completion = done.value
            return answer
        finally:
            decisions.close()  # a call abandoned mid-way (an exception) ends its bookkeeping

    async def aexecute(
        self,
        chain: CompiledChain,
        prompt: str | ChatRequest,
        meta: GenerationMeta,
        timeout: float,
    ) -> Completion:
        """The async twin of :meth:`execute`: same decisions, awaited I/O."""
        decisions = self.decide(chain, as_request(prompt), meta, timeout)
        result: CallResult | None = None
        try:
            while True:
                action = decisions.send(result)
                if isinstance(action, Call):
                    result = await acall(
                        action.provider, action.request, action.timeout, action.model
                    )
                else:
                    result = await self.aperform(action)
        except StopIteration as done:
            answer: Completion = done.value
            return answer
        finally:
            decisions.close()  # cancelled mid-call: the core's bookkeeping ends now

    def decide(
        self,
        compiled: CompiledChain,
        request: ChatRequest,
        meta: GenerationMeta,
        timeout: float,
        stream: bool = False,
    ) -> Decisions:
        """The decision core, the seam every shell drives: yields one request's actions
        (:mod:`engine.core.actions`), is sent each one's result, returns the answer or
        raises the chain's failure. ``stream``: calls are streamed calls."""
        rt = self.runtime
        chain = compiled.chain
        overrides = chain.error_codes
        started = rt.monotonic()
        budget = min(chain.deadline, timeout)
        run = compiled.start(started + budget)
        attempts: list[dict[str, Any]] = []
        meta.provider_attempts = attempts  # filled in as the attempts end
        last: Outcome | None = None
        state = run.state
        out_of_time = False
        cut: StreamDone | None = None  # the last stream cut after its first chunk
        if compiled.validator_names:  # before any call: a missing check is a setup mistake
            missing = missing_validators(compiled.validator_names, self.validators, chain.name)
            if missing is not None:
                raise missing
        if self.sinks.started:
            self.sinks.emit(RequestStarted(chain.name, meta.mode.value, rt.wall()))
        health = self.health
        force_key: str | None = None
        tried: set[str] = set()  # the pool members this step has called in this request
        looked_all = False  # whether every breaker of the chain was looked at already
        while True:
            step = chain.by_id[state]
            now = rt.monotonic()
            if run.deadline - now < MIN_ATTEMPT_SECONDS:  # no attempt starts without time
                state = compiled.fire(run, "deadline_exceeded", transient=False, bound=0, now=now)
                out_of_time = True
                if not attempts:  # the record still shows what happened, and where
                    attempts.append(
                        attempt_record(step, step.model, _NO_TIME, 0.0, rt.wall(), 0, state)
                    )
                    last = _NO_TIME
                break
            stamp = rt.wall()
            admission: Admission | None = None
            why: str | None = None  # no member of a pool available
            if step.pool:  # choosing a member is not an attempt (engine.core.routing)
                pick = yield from choose_member(
                    step, health, self.routing, request, tried, self._quiet_lookup, rt,
                    run.deadline,
                )  # fmt: skip
                member, key, admission, why = pick.member, pick.key, pick.admission, pick.why
                picked_grant, picked_tokens, small = pick.grant, pick.tokens, pick.small
                name, model, provider = member.provider, member.model, pick.provider
            else:
                name, model, key, provider = step.provider, step.model, breaker_key(step), None
            lookup_error: Exception | None = None
            if provider is None:  # once per attempt (a pool's draw may have done it)
                try:
                    provider = self.lookup(name)
                except Exception as exc:
                    provider, lookup_error = None, exc
            streamed: StreamDone | None = None
            if health is not None:
                breaker, retry_budget = health.policies(name)  # once per attempt
            if health is not None and provider is not None and not step.pool:
                admission, force_key, looked_all = yield from admit_step(
                    compiled, health, key, breaker, force_key, looked_all, attempts, rt.wall,
                    run.deadline - now,
                )  # fmt: skip
            asked = request.with_params(step.params) if step.params else request
            if not step.pool:  # a window too small for the request: skipped before any call
                small = too_small(provider, model_of(provider, model), asked)
            grant: QuotaGrant | None = None
            quota = health.quotas(name) if health is not None and provider is not None else None
            if (
                quota is not None and not step.pool and small is None
                and (admission is None or admission.allowed)
            ):  # fmt: skip
                tokens = quota_tokens(asked, quota)
                grant = yield from acquire(
                    name, quota, tokens, step.quota_wait, rt.wall,
                    lambda: run.deadline - rt.monotonic(),
                )  # fmt: skip
            elif step.pool:
                grant, tokens = picked_grant, picked_tokens
            if lookup_error is not None:
                outcome = classify_exception(lookup_error, overrides)
            elif provider is None:
                outcome = coded(
                    "provider_not_found", f"no provider named '{name}' is registered", overrides
                )
            elif admission is not None and not admission.allowed:
                outcome = coded(
                    "circuit_open",
                    why
                    or f"{name}'s breaker is {admission.state.replace('_', '-')}; "
                    f"no call made (a probe in {admission.retry_in:.3g}s)",
                    overrides,
                )
            elif small is not None:
                outcome = coded("context_too_small", small, overrides)
            elif grant is not None and not grant.allowed:
                outcome = coded("quota_exhausted", why or quota_message(name, grant), overrides)
            else:
                model = model_of(provider, model)
                left = run.deadline - now
                timeouts = None
                if stream:
                    timeouts = StreamTimeouts(
                        first_token=min(step.first_token_timeout or step.timeout, left),
                        idle=step.idle_timeout or step.timeout,
                        total=left,
                    )
                tracked = step.strategy in TRACKED and bool(step.pool)
                if step.pool:
                    tried.add(key)
                if tracked:
                    self.routing.started(key)
                try:
                    result = yield Call(
                        provider, asked, min(step.timeout, left), model, timeouts, cut is not None
                    )
                finally:  # also when the caller goes away mid-call
                    if tracked:
                        self.routing.finished(key)
                assert result is not None
                if isinstance(result, StreamDone):
                    streamed = result
                    ok, value = result.ok, result.value
                else:
                    ok, value = result
                outcome = (
                    classify_result(value, model, overrides)
                    if ok
                    else classify_exception(value, overrides)
                )
                answer = outcome.completion
                if answer is not None:  # an answer: does it count?
                    reason = self.judge(answer, step.accept, request, self.validators)
                    if reason is not None:
                        outcome = rejected(answer, reason, overrides)
            ended = rt.monotonic()
            if step.pool and step.strategy == "latency" and outcome.category in LEARNED:
                ttft = streamed.ttft if streamed is not None else None
                self.routing.observe(key, ttft if ttft is not None else ended - now, ended)
            # A stream that broke (or whose answer was rejected) after handing over its first
            # chunk is a cut: the chain's on_midstream policy decides, not the category (the
            # caller has seen text).
            is_cut = (
                streamed is not None
                and streamed.chunks > 0
                and (not streamed.ok or outcome.category != "success")
            )
            trigger: str = "cut" if is_cut else outcome.category
            bound = 0.0
            if outcome.transient and not is_cut:
                bound = backoff_bound(
                    run.retries_used, step.backoff_base, step.backoff_max, outcome.retry_after
                )
            refused = admission is not None and not admission.allowed
            skipped = refused or small is not None or (grant is not None and not grant.allowed)
            if health is not None and grant is not None and grant.allowed and tokens:
                correction = settle_usage(name, tokens, outcome.completion, rt.wall())
                if correction is not None:
                    yield correction
            if health is not None and admission is not None and not refused:
                # Recorded before the retry budget is asked, so that this attempt counts.
                failed = health_verdict(outcome) if provider is not None else None
                yield Record(
                    key=key, policy=breaker, budget=retry_budget, now=rt.wall(), failed=failed,
                    probe=admission is not None and admission.probe,
                    retry_after=outcome.retry_after, retry=run.retries_used > 0,
                    left=run.deadline - ended,
                )  # fmt: skip
            budget_ok = True
            may_retry = outcome.transient and not is_cut and run.retries_used < step.retries
            if health is not None and may_retry:
                budget_ok = yield RetryAllowed(
                    key=key, budget=retry_budget, now=rt.wall(), left=run.deadline - ended
                )
            state = compiled.fire(
                run, trigger, transient=outcome.transient and not is_cut, bound=bound, now=ended,
                budget=budget_ok,
            )  # fmt: skip
            retrying = state == step.id
            record = attempt_record(
                step, model, outcome, ended - now, stamp, run.retries_used, state, name,
                skipped_for=skipped_for(admission, grant) if skipped else None,
                retry_refused=not budget_ok and not retrying, streamed=streamed,
                category=trigger if streamed is not None else None,
            )  # fmt: skip
            attempts.append(record)
            if is_cut:
                cut = streamed
            if self.sinks.attempts:
                self.sinks.emit(AttemptFinished(chain.name, meta.mode.value, record))
            last = outcome
            if retrying:
                delay = backoff_delay(
                    run.retries_used, step.backoff_base, step.backoff_max, outcome.retry_after,
                    rt.random,
                )  # fmt: skip
                run.retries_used += 1
                if delay > 0:
                    yield Sleep(delay)
            else:
                run.retries_used = 0
                tried.clear()
            if state in FINAL_STATES:
                break

        elapsed_ms = round((rt.monotonic() - started) * 1000)
        meta.duration_ms = elapsed_ms
        meta.fallback_used = len(attempts) > 1
        meta.fallback_reason = fallback_reason(attempts)
        assert last is not None
        completion = last.completion
        if state == SUCCEEDED and completion is not None:
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
            if self.sinks.finished:
                self._finished(chain.name, state, meta, request, completion.text)
            return completion
        meta.latency_ms = elapsed_ms
        if self.sinks.finished:
            self._finished(chain.name, state, meta, request, None)
        if cut is not None and attempts[-1].get("category") == "cut" and not out_of_time:
            meta.truncated = bool(attempts[-1]["truncated"])  # not for a rejected answer
            error: ChainExhaustedError | ChainAbortedError = interrupted(
                chain.name, attempts, last, cut.text
            )
            meta.error = str(error)
            meta.error_category = error.error_category
            raise error
        error = failure(chain.name, state, attempts, last, budget, out_of_time)
        meta.error = str(error)
        meta.error_category = error.error_category
        raise error
