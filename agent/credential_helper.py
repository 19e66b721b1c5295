"""The git credential helper of a job that has an HTTPS credential (see `agent.credentials`).

Run by git as a script (`python -I -S credential_helper.py get`), it answers `get` with one
record read from the pipe named by GITFLEET_CREDENTIAL_FD, which the agent filled and git
inherited, and ignores `store` and `erase`: nothing is ever written anywhere. Standard library
only, so that it starts without the agent's packages.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "get":
        return 0
    sys.stdin.buffer.read()  # git's description of what it wants; the host is fixed by scope
    try:
        fd = int(os.environ["GITFLEET_CREDENTIAL_FD"])
    except (KeyError, ValueError):
        return 0
    record = bytearray()
    # One byte at a time: the pipe holds several records and each `get` takes exactly one.
    while (byte := os.read(fd, 1)) and byte != b"\0":
        record += byte
    sys.stdout.buffer.write(bytes(record))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
