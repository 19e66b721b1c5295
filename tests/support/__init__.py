"""Test support: real servers, git upstreams, fleets of processes and shared helpers.

Test modules import helpers from here; `conftest.py` files hold only fixtures."""
