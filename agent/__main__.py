"""`python -m agent` and the `gitfleet-agent` console script."""

import sys

from agent.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
