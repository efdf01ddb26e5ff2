"""Infrastructure helpers every layer may use (no engine knowledge)."""
