"""The decision core: the chain's state machine, the sans-IO decision generator and its
sync, async and streaming shells, outcome classification, request checks, the runtime."""
