"""`gitfleet`: the command line for people. Needs only `requests` and the standard library, so
that it installs on a laptop without the server (see README, "Command line")."""

__version__ = "0.1.0"
