"""Entry point of `gitfleet` and `python -m gitfleet_cli`."""

import sys

from gitfleet_cli.cli import main

if __name__ == "__main__":
    sys.exit(main())
