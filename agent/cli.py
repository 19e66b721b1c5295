"""The command line: read the settings, set up logging and signals, run the agent."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from agent import children
from agent.config import AgentConfig, ConfigError
from agent.logs import configure_logging
from agent.runner import Agent

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; exit 2 on a bad setting (one line naming it)."""
    del argv  # configured by environment variables only
    try:
        config = AgentConfig.from_env()
    except ConfigError as exc:
        print(f"gitfleet-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config.create_folders()
    except OSError as exc:
        print(f"gitfleet-agent: cannot create {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_format)
    agent = Agent(config, reap_orphans=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children.become_subreaper()
    children.install_sigchld_handler()
    return agent.run()
