"""Runs one request through a compiled chain.

The decisions live in one generator, `FallbackExecutor.decide`: it looks the step's
provider up, yields the actions of `engine.core.actions` (a call, a sleep, a health
operation), classifies what comes back, records the attempt and fires the machine. The
shells (`execute`, `aexecute`, streams)
only perform actions, so all follow the same path for the same outcomes. This is the only
retry layer: providers must not retry on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from engine.chain.spec import FINAL_STATES, SUCCEEDED
from engine.core import records
from engine.core.acceptance import Judge, Validator, conclude, judge, missing_validators
from engine.core.actions import (
    Admit,
    Call,
    Decisions,
    ProviderLookup,
    Record,
    RetryAllowed,
    Sleep,
    StreamDone,
    as_request,
    model_of,
)
from engine.core.admission import admit_refused, refusal, skipped_for
from engine.core.classify import health_verdict
from engine.core.hedging import Copy, HedgeLatencies, Race, race
from engine.core.machine import CompiledChain
from engine.core.perform import Performer
from engine.core.quotas import acquire, quota_tokens, settle_usage
from engine.core.racing import SyncRace, ThreadRace, Workers
from engine.core.records import attempt_record
from engine.core.routing import LEARNED, TRACKED, Routing, choose_member, too_small
from engine.core.runtime import Runtime, backoff_bound, backoff_delay
from engine.health import Admission, HealthConfig, QuotaGrant
from engine.telemetry.events import AttemptFinished, RequestStarted, Sinks
from engine.types.completion import Completion
from engine.types.meta import GenerationMeta
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
        #: Hedged steps' recent latencies (``hedge: {after: p95}``).
        self.hedges = HedgeLatencies()
        #: The threads sync races run their copies on (joined by `close`).
        self.workers = Workers()
        #: Makes a sync shell's race, given how one streamed copy is performed (None: the
        #: copies are plain calls); replaceable: ``simulate`` races over virtual time.
        self.thread_race: Callable[[Any], SyncRace] = lambda pump: ThreadRace(
            self.workers, self.runtime.monotonic, pump
        )

    def close(self) -> None:
        """Wait for the hedged copies still ending on worker threads, and stop them."""
        self.workers.close()

    def execute(
        self,
        chain: CompiledChain,
        prompt: str | ChatRequest,
        meta: GenerationMeta,
        timeout: float,
        per_attempt: float | None = None,
    ) -> Completion:
        """Run ``chain`` synchronously for a prompt or a `ChatRequest`; fill
        ``meta``; return the answer.

        Raises `ChainExhaustedError` or `ChainAbortedError` (``meta`` is
        filled either way). ``timeout`` caps the whole run, with the chain's deadline;
        ``per_attempt``, when given, caps each attempt as well.
        """
        return self.drive(
            self.decide(chain, as_request(prompt), meta, timeout, per_attempt=per_attempt)
        )

    async def aexecute(
        self,
        chain: CompiledChain,
        prompt: str | ChatRequest,
        meta: GenerationMeta,
        timeout: float,
        per_attempt: float | None = None,
    ) -> Completion:
        """The async twin of `execute`: same decisions, awaited I/O."""
        return await self.adrive(
            self.decide(chain, as_request(prompt), meta, timeout, per_attempt=per_attempt)
        )

    def decide(
        self,
        compiled: CompiledChain,
        request: ChatRequest,
        meta: GenerationMeta,
        timeout: float,
        stream: bool = False,
        per_attempt: float | None = None,
    ) -> Decisions:
        """The decision core, the seam every shell drives: yields one request's actions
        (`engine.core.actions`), is sent each one's result, returns the answer or
        raises the chain's failure. ``stream``: calls are streamed calls; ``per_attempt``:
        seconds no attempt may exceed (besides its step's timeout and the deadline)."""
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
            self.sinks.emit(RequestStarted(chain.name, str(meta.mode), rt.wall()))
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
                    step, health, self.routing, request, tried, self.quiet_lookup, rt,
                    run.deadline,
                )  # fmt: skip
                member, key, admission, why, picked_grant, picked_tokens, small, provider = pick
                name, model = member.provider, member.model
            else:
                name, model, key, provider = step.provider, step.model, step.key, None
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
                # Health keeps wall-clock times: a shared store compares them across processes.
                admission = yield Admit(
                    key=key,
                    policy=breaker,
                    now=stamp,
                    force=key == force_key,
                    left=run.deadline - now,
                )
                if key == force_key:
                    force_key = None
                if not admission.allowed:
                    admission, force_key, looked_all = yield from admit_refused(
                        compiled, health, key, breaker, admission, force_key, looked_all,
                        attempts, rt.wall, run.deadline - now,
                    )  # fmt: skip
            asked = request.with_params(step.params) if step.params else request
            if not step.pool:  # a window too small for the request: skipped before any call
                # (unless the breaker refused already: that refusal is the one recorded)
                small = (
                    too_small(provider, model_of(provider, model), asked)
                    if admission is None or admission.allowed
                    else None
                )
            grant: QuotaGrant | None = None
            tokens = 0
            hedged: int | None = None  # a hedged attempt: the copy that decides the step
            # A pool's member had its quota taken by the draw already.
            quota = (
                health.quotas(name)
                if health is not None and provider is not None and not step.pool
                else None
            )
            if (
                quota is not None and small is None
                and (admission is None or admission.allowed)
            ):  # fmt: skip
                tokens = quota_tokens(asked, quota)
                grant = yield from acquire(
                    name, quota, tokens, step.quota_wait, rt.wall,
                    lambda: run.deadline - rt.monotonic(),
                )  # fmt: skip
            elif step.pool:
                grant, tokens = picked_grant, picked_tokens
            refused_with = refusal(
                name, provider, lookup_error, admission, small, grant, why, overrides
            )
            if refused_with is not None:  # no call made
                outcome = refused_with
            else:
                model = model_of(provider, model)
                left = run.deadline - now
                if per_attempt is not None and per_attempt < left:
                    left = per_attempt
                timeouts = None
                if stream:
                    timeouts = StreamTimeouts(
                        first_token=min(step.first_token_timeout or step.timeout, left),
                        idle=step.idle_timeout or step.timeout,
                        total=left,
                    )
                call_action = Call(
                    provider, asked, min(step.timeout, left), model, timeouts, cut is not None, name
                )
                if step.hedge is not None:  # raced against copies (engine.core.hedging)
                    end = yield from race(
                        Race(self, chain.name, step, request, asked, overrides, run.deadline,
                             tried, run.retries_used, call_action),
                        Copy(0, name, model, key, provider, admission, grant, tokens, now, stamp),
                    )  # fmt: skip
                    won, result = end.copy, end.result
                    name, model, key, provider = won.name, won.model, won.key, won.provider
                    admission, grant, tokens = won.admission, won.grant, won.tokens
                    hedged, now, stamp = won.number, won.started, won.stamp
                    for extra in end.records:
                        attempts.append(extra)
                        if self.sinks.attempts:
                            self.sinks.emit(AttemptFinished(chain.name, str(meta.mode), extra))
                    if health is not None:
                        breaker, retry_budget = health.policies(name)
                else:
                    tracked = step.strategy in TRACKED and bool(step.pool)
                    if step.pool:
                        tried.add(key)
                    if tracked:
                        self.routing.started(key)
                    try:
                        result = yield call_action
                    except GeneratorExit:  # the caller went away mid-call: the record says so
                        attempts.append(records.left(step, model, name, rt.monotonic() - now,
                                                     stamp, run.retries_used))  # fmt: skip
                        raise
                    finally:  # also when the caller goes away mid-call
                        if tracked:
                            self.routing.finished(key)
                assert result is not None
                if isinstance(result, StreamDone):
                    streamed = result
                outcome = conclude(
                    result, model, step.accept, request, self.judge, self.validators, overrides,
                    name, provider,
                )  # fmt: skip
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
                    retry_after=outcome.retry_after, retry=run.retries_used > 0 or bool(hedged),
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
            pause = 0.0
            if (
                outcome.error_code == "429"
                and chain.rate_limit_pause
                and not retrying
                and state not in FINAL_STATES
            ):  # one rate limit must not cascade across providers: wait a moment, in budget
                pause = min(chain.rate_limit_pause, run.deadline - ended - MIN_ATTEMPT_SECONDS)
            record = attempt_record(
                step, model, outcome, ended - now, stamp, run.retries_used, state, name,
                skipped_for=skipped_for(admission, grant) if skipped else None,
                retry_refused=not budget_ok and not retrying, streamed=streamed,
                category=trigger if streamed is not None else None, hedge=hedged,
            )  # fmt: skip
            if pause > 0:
                record["pause_ms"] = round(pause * 1000)
            attempts.append(record)
            if is_cut:
                cut = streamed
            if self.sinks.attempts:
                self.sinks.emit(AttemptFinished(chain.name, str(meta.mode), record))
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
                if pause > 0:
                    yield Sleep(pause)
            if state in FINAL_STATES:
                break

        elapsed_ms = round((rt.monotonic() - started) * 1000)
        assert last is not None
        completion = last.completion
        if state == SUCCEEDED and completion is not None:
            records.answered(meta, attempts, completion, elapsed_ms)
            if self.sinks.finished:
                records.finished(
                    self.sinks, chain.name, state, meta, rt.wall(), request, completion.text
                )
            return completion
        records.ended(meta, attempts, elapsed_ms)
        meta.latency_ms = elapsed_ms
        if self.sinks.finished:
            records.finished(self.sinks, chain.name, state, meta, rt.wall(), request, None)
        # A stream cut after its first chunk (not a rejected answer) ends it as interrupted.
        broken = cut if cut is not None and attempts[-1].get("category") == "cut" else None
        raise records.failed(meta, chain.name, state, attempts, last, budget, out_of_time, broken)
