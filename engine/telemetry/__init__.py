"""Telemetry: events and sinks, the durable JSONL log, and reading it back (stats)."""
