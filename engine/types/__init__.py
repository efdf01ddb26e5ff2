"""The engine's data, shared by every layer: a request, its completion and stream deltas,
the outcome taxonomy, the call's metadata. Plain types; no I/O, nothing imported above."""
