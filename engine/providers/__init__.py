"""Providers: the protocol a provider object follows, and how the engine calls one."""

from .base import AsyncProvider, Provider, SyncProvider, acall, call

__all__ = ["AsyncProvider", "Provider", "SyncProvider", "acall", "call"]
