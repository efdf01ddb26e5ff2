"""The chains a manager runs: compiled from the chain files with the overrides of the config
and the environment on top, the one-step chains of the single-provider path (cached), and
the swap that puts reloaded chains in place.

:class:`ChainSet` is what :class:`~engine.chain.reload.ChainReloader` reloads, through its
public :meth:`ChainSet.compile` and :meth:`ChainSet.swap`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from engine.chain.loader import load_chains, rebuild
from engine.chain.overrides import with_order, with_timeout
from engine.chain.spec import Chain, ChainSpec, StepSpec
from engine.core.machine import CompiledChain, compile_chain
from engine.errors import ChainConfigError, Problem
from engine.manager.config import check_mode
from engine.manager.environment import Settings
from engine.types.meta import ExecutionMode

__all__ = ["DEFAULT_CHAIN", "ChainSet"]

DEFAULT_CHAIN: Final = "default"
_SINGLE_CACHE: Final = 256  # single-provider chains kept (per mode and provider)


class ChainSet:
    """Compiled chains by name, and the single-provider chains built from them.

    ``known`` lists the provider names an override may use (built-ins, registered objects,
    providers.yaml's; None: any name, the application registers its providers itself);
    ``registered`` says whether a name is registered now (only those single-provider chains
    are cached, so made-up names cannot grow the cache). ``base`` holds the chains of the
    modes the chains directory has no file for (the files win); ``read_files`` False reads
    no directory at all."""

    def __init__(
        self,
        settings: Settings,
        known: Callable[[], Iterable[str]] | None,
        registered: Callable[[str], bool],
        base: Mapping[str, Chain] | None = None,
        read_files: bool = True,
    ) -> None:
        self.settings = settings
        self.chains_dir: Path = settings.chains_dir
        self._known = known
        self._registered = registered
        self._base: dict[str, Chain] = dict(base or {})
        self._single: dict[tuple[str, str], CompiledChain] = {}
        #: The chains read from the chains directory's files, by name (reload replaces them).
        self.file_chains: dict[str, Chain] = load_chains(self.chains_dir) if read_files else {}
        #: name -> compiled chain; replaced whole by :meth:`swap`, never changed in place.
        self.chains: dict[str, CompiledChain] = self.compile(self.file_chains)

    def compile(self, chains: dict[str, Chain]) -> dict[str, CompiledChain]:
        """Compile ``chains`` (the files'), over the base chains, with the overrides on top
        (raises ``ChainConfigError``)."""
        self.file_chains = dict(chains)
        chains = {**self._base, **chains}
        known = set(self._known()) if self._known is not None else None
        for chain in chains.values():
            if known is not None:
                known.update(m.provider for step in chain.steps for m in step.members)
        problems: list[Problem] = []
        resolved: dict[str, Chain] = dict(chains)
        for mode in ExecutionMode:
            name = mode.value if mode.value in chains else DEFAULT_CHAIN
            if name not in chains:
                problems.append(Problem(
                    str(self.chains_dir), 0, 0, "",
                    f"no chain for mode '{mode.value}': add {mode.value}.yaml "
                    f"or {DEFAULT_CHAIN}.yaml",
                ))  # fmt: skip
                continue
            if mode.value not in self.settings.orders:
                continue
            order, source = self.settings.orders[mode.value]
            unknown = [p for p in order if known is not None and p not in known]
            for provider in unknown:
                assert known is not None
                close = difflib.get_close_matches(provider, sorted(known), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(Problem(source, 0, 0, "", f"unknown provider '{provider}'{hint}"))
            if not order:
                problems.append(Problem(source, 0, 0, "", "the provider list is empty"))
            if unknown or not order:
                continue
            base = chains[name]
            try:
                resolved[mode.value] = rebuild(with_order(base, order), base, source)
            except ChainConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ChainConfigError(problems)
        timeout = self.settings.provider_timeout
        if timeout is not None:
            resolved = {
                key: rebuild(with_timeout(chain.spec, timeout), chain, chain.source)
                for key, chain in resolved.items()
            }
        return {key: compile_chain(chain) for key, chain in resolved.items()}

    def swap(self, chains: dict[str, CompiledChain]) -> None:
        """Run ``chains`` from now on. One assignment: a request reads the chains once and
        keeps the chain it got."""
        self.chains = chains
        self._single = {}

    def chain_for(self, mode: ExecutionMode | str) -> CompiledChain:
        """The compiled chain a mode runs (its own file, or ``default``)."""
        key = check_mode(mode).value
        return self.chains.get(key) or self.chains[DEFAULT_CHAIN]

    def chain_for_provider(self, provider: str, mode: ExecutionMode | str) -> CompiledChain:
        """The one-step chain of the single-provider path (built once per mode and provider):
        the provider's step settings from the mode's chain, without retries."""
        mode = check_mode(mode)
        cached = self._single.get((mode.value, provider))
        if cached is not None:
            return cached
        base = self.chain_for(mode).chain
        template = next((s for s in base.steps if s.provider == provider), None)
        step = StepSpec(
            provider=provider,
            model=template.model if template else None,
            timeout=self.settings.provider_timeout
            or (template.timeout if template else base.spec.defaults.timeout),
            retries=0,
        )
        spec = ChainSpec(
            description=f"single provider: {provider}", deadline=base.deadline, steps=[step]
        )
        compiled = compile_chain(
            rebuild(spec, base, f"single provider '{provider}'", name=f"provider:{provider}")
        )
        # Only registered names are kept (the registry is read, not get_provider: an attempt
        # looks its provider up exactly once, at its start).
        if self._registered(provider):
            if len(self._single) >= _SINGLE_CACHE:
                del self._single[next(iter(self._single))]
            self._single[(mode.value, provider)] = compiled
        return compiled

    @property
    def cached_single(self) -> list[tuple[str, str]]:
        """(mode, provider) of the single-provider chains kept, oldest first."""
        return list(self._single)
