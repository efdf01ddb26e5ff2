"""Providers: the protocol a provider object follows, and how the engine calls one."""

from engine.providers.base import AsyncProvider, Provider, SyncProvider, acall, call

__all__ = ["AsyncProvider", "Provider", "SyncProvider", "acall", "call"]
