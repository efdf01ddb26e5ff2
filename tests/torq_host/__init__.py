"""A test host shaped like TORQ Console (pilotwaffle/TORQ-CONSOLE): an async ``LLMManager``
with ``get_provider``, its own ``GenerationMeta`` dataclass and exception classes, and
async providers. It embeds the engine exactly as the seed guide's Step 1 says, with one
import line (``manager.py``). Written for these tests from the host's contract; none of
the host's code is copied."""
