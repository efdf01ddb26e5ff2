"""The chains a manager runs: compiled from the chain files with the overrides of the config
and the environment on top, the one-step chains of the single-provider path (cached), and
the swap that puts reloaded chains in place.

`ChainSet` is what `ChainReloader` reloads, through its
public `ChainSet.compile` and `ChainSet.swap`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from engine.chain.known import chain_unknown_providers, located
from engine.chain.loader import load_chains, rebuild
from engine.chain.overrides import with_order, with_timeout
from engine.chain.spec import Chain, ChainSpec, StepSpec
from engine.core.machine import CompiledChain, compile_chain
from engine.errors import ChainConfigError, Problem
from engine.manager.config import check_mode
from engine.manager.environment import Settings
from engine.types.meta import ExecutionMode, Mode

__all__ = ["DEFAULT_CHAIN", "ChainSet"]

DEFAULT_CHAIN: Final = "default"
_SEED: Final = tuple(mode.value for mode in ExecutionMode)
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
        #: name -> compiled chain; replaced whole by `swap`, never changed in place.
        self.chains: dict[str, CompiledChain] = self.compile(self.file_chains)
        #: mode -> the name of the chain that serves it (a seed mode without one: default)
        self.modes: dict[str, str] = self._pending_modes
        #: alias -> the mode it names (chain files' ``aliases:``, for the gateway's models)
        self.aliases: dict[str, str] = self._pending_aliases

    def compile(self, chains: dict[str, Chain]) -> dict[str, CompiledChain]:
        """Compile ``chains`` (the files'), over the base chains, with the overrides on top
        (raises ``ChainConfigError`` listing every problem)."""
        self.file_chains = dict(chains)
        merged = {**self._base, **chains}
        known = set(self._known()) if self._known is not None else None
        problems: list[Problem] = []
        if known is not None:  # every provider a chain names is known, or declared
            for chain in merged.values():
                problems.extend(chain_unknown_providers(chain, known))
        modes = self._modes(merged, problems)
        aliases = self._aliases(merged, modes, problems)
        resolved: dict[str, Chain] = dict(merged)
        for mode, (order, source) in self.settings.orders.items():
            name = modes.get(mode) or (DEFAULT_CHAIN if mode in _SEED or mode == DEFAULT_CHAIN
                                       else None)  # fmt: skip
            if name is None or name not in merged:
                problems.append(Problem(source, 0, 0, "", self._no_chain(mode, modes)))
                continue
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
            base = merged[name]
            try:
                resolved[mode] = rebuild(with_order(base, order), base, source)
            except ChainConfigError as exc:
                problems.extend(exc.problems)
                continue
            modes[mode] = mode
        if DEFAULT_CHAIN not in merged and any(m not in modes for m in _SEED):
            missing = ", ".join(m for m in _SEED if m not in modes)
            problems.append(Problem(
                str(self.chains_dir), 0, 0, "",
                f"no chain for modes {missing}: add a file for each, or {DEFAULT_CHAIN}.yaml",
            ))  # fmt: skip
        if problems:
            raise ChainConfigError(problems)
        timeout = self.settings.provider_timeout
        if timeout is not None:
            resolved = {
                key: rebuild(with_timeout(chain.spec, timeout), chain, chain.source)
                for key, chain in resolved.items()
            }
        self._pending_modes = modes
        self._pending_aliases = aliases
        return {key: compile_chain(chain) for key, chain in resolved.items()}

    def _aliases(
        self, chains: dict[str, Chain], modes: dict[str, str], problems: list[Problem]
    ) -> dict[str, str]:
        """Alias -> the mode of the running chain that declares it; an alias that is a
        mode's name, or that two chains declare, is a problem at its line."""
        served = {name: mode for mode, name in modes.items()}
        served.setdefault(DEFAULT_CHAIN, DEFAULT_CHAIN)
        found: dict[str, str] = {}
        declared: dict[str, Chain] = {}
        for name, chain in chains.items():
            for index, alias in enumerate(chain.spec.aliases):
                why = None
                if alias in modes or alias == DEFAULT_CHAIN:
                    why = f"alias '{alias}' is a mode's name: a model so named runs it already"
                elif alias in declared and declared[alias] is not chain:
                    why = (f"alias '{alias}' is declared by two chains: "
                           f"{declared[alias].source} and {chain.source}")  # fmt: skip
                if why is not None:
                    line, column = located(chain, ("aliases", index))
                    problems.append(Problem(chain.source, line, column, f"aliases[{index}]", why))
                elif name in served:
                    declared[alias] = chain
                    found[alias] = served[name]
        return found

    def model(self, name: str) -> str | None:
        """The mode a gateway client's ``model`` names (a mode, or a chain's alias)."""
        if name in self.aliases:
            return self.aliases[name]
        return None if self.missing(name) else name

    def _modes(self, chains: dict[str, Chain], problems: list[Problem]) -> dict[str, str]:
        """Mode -> the chain that serves it: each chain serves its ``mode:`` or its name (a
        file's over the base's); two files for one mode are a problem."""
        modes: dict[str, str] = {}
        for layer in (self._base, self.file_chains):
            claimed: dict[str, str] = {}
            for name, chain in layer.items():
                if name == DEFAULT_CHAIN and chain.spec.mode is None:
                    continue
                mode = chain.spec.mode or name
                if mode in claimed and claimed[mode] != name:
                    problems.append(Problem(
                        chain.source, 0, 0, "mode",
                        f"mode '{mode}' is served by two chains: {chains[claimed[mode]].source} "
                        f"and {chain.source}",
                    ))  # fmt: skip
                claimed[mode] = name
            modes.update(claimed)
        return modes

    def _no_chain(self, mode: str, modes: dict[str, str]) -> str:
        choices = self.mode_names(modes)
        close = difflib.get_close_matches(mode, choices, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"mode '{mode}' names no chain{hint}; modes: {', '.join(choices)}"

    def missing(self, mode: str) -> str | None:
        """Why ``mode`` names no chain (with the modes there are), or ``None`` if it runs one."""
        if mode in self.modes or mode in _SEED or mode == DEFAULT_CHAIN:
            return None
        return self._no_chain(mode, self.modes)

    def mode_names(self, modes: dict[str, str] | None = None) -> list[str]:
        """Every mode a call may ask for: the five seed modes, then the chains' own."""
        found = self.modes if modes is None else modes
        return [*_SEED, *sorted(m for m in found if m not in _SEED)]

    def swap(self, chains: dict[str, CompiledChain]) -> None:
        """Run ``chains`` from now on. One assignment: a request reads the chains once and
        keeps the chain it got."""
        self.modes = self._pending_modes
        self.aliases = self._pending_aliases
        self.chains = chains
        self._single = {}

    def chain_for(self, mode: Mode) -> CompiledChain:
        """The compiled chain a mode runs: the chain that names it, else (a seed mode)
        ``default``; a mode no chain names is a ``ValueError`` listing the modes there are."""
        key = str(check_mode(mode))
        name = self.modes.get(key)
        if name is not None:
            return self.chains[name]
        if key in _SEED or key == DEFAULT_CHAIN:
            return self.chains[DEFAULT_CHAIN]
        raise ValueError(self._no_chain(key, self.modes))

    def where(self) -> list[tuple[str, str]]:
        """(mode, where its chain comes from) for every mode, as the startup line and
        ``validate`` say it."""
        rows = []
        for mode in self.mode_names():
            name = self.modes.get(mode, DEFAULT_CHAIN)
            chain = self.chains[name].chain
            via = "" if name == mode else f" (chain '{name}')"
            rows.append((mode, f"{chain.source}{via}"))
        return rows

    def chain_for_provider(self, provider: str, mode: Mode) -> CompiledChain:
        """The one-step chain of the single-provider path (built once per mode and provider):
        the provider's step settings from the mode's chain, without retries."""
        key = str(check_mode(mode))
        cached = self._single.get((key, provider))
        if cached is not None:
            return cached
        base = self.chain_for(key).chain
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
            self._single[(key, provider)] = compiled
        return compiled

    @property
    def cached_single(self) -> list[tuple[str, str]]:
        """(mode, provider) of the single-provider chains kept, oldest first."""
        return list(self._single)
