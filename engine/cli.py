"""``python -m engine.cli`` and the ``torq-fallback`` console script: the commands of
`engine.tools.cli`, with the gateway's (``serve``, ``keys``) added from the layer above."""

import sys
from collections.abc import Sequence

from engine.gateway.cli import register
from engine.tools.cli import main as _main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torq-fallback`` command."""
    return _main(argv, extra=(register,))


if __name__ == "__main__":
    sys.exit(main())
