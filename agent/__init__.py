"""Gitfleet node agent: leases clone/pull/delete jobs from the control plane and runs git locally.

A standalone package: it imports nothing from Django or the server. Start it with
`python -m agent` or the `gitfleet-agent` console script; settings come from `AGENT_*`
environment variables (see `agent.config` and docs/agent.md).
"""

__version__ = "0.1.0"
