"""Developer tools around the engine: the ``torq-fallback`` command, the demo, the provider
simulator, ``simulate``/``explain``, diagrams, validation and reports. Nothing in the
engine's request path imports from here."""
