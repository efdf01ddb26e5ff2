"""``python -m engine.cli``: the ``torq-fallback`` command (kept at this path; the command
lives in `engine.tools.cli`)."""

import sys

from engine.tools.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
