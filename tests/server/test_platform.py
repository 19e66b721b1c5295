"""`platform/`: the compose file, the systemd units and the example env files agree with the
settings the README documents, and run the services the way the brief says."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from agent.config import AgentConfig

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
AGENT_DRAIN_SECONDS = {f.name: f.default for f in fields(AgentConfig)}["drain_seconds"]


def documented(table: str) -> set[str]:
    """Setting names in the README's configuration table whose header starts `| table |`."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration", 1)[1]
    lines = section.split("\n## ", 1)[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {table} |"))
    names: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


SERVER_SETTINGS = documented("server setting")
AGENT_SETTINGS = documented("agent setting")


def env_file_names(path: Path) -> set[str]:
    """Every variable an env file sets or shows commented out."""
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", path.read_text(), re.MULTILINE))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PLATFORM / "compose.yaml").read_text())


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match[1])


def test_the_readme_tables_were_found():
    assert {"DATABASE_URL", "SECRET_KEY", "METRICS_TOKEN", "LOG_FORMAT"} <= SERVER_SETTINGS
    assert {"AGENT_SERVER_URL", "AGENT_TOKEN", "AGENT_DRAIN_SECONDS"} <= AGENT_SETTINGS


# --- compose.yaml -----------------------------------------------------------------------------


def test_compose_runs_postgres_15_the_server_and_one_agent(compose):
    services = compose["services"]

    assert set(services) == {"db", "server", "agent"}
    assert services["db"]["image"].startswith("postgres:15")
    assert services["server"]["command"] == ["server"]
    assert services["agent"]["command"] == ["agent"]
    for name in ("server", "agent"):
        build = services[name]["build"]
        assert (PLATFORM / build["context"] / build["dockerfile"]).is_file()


def test_compose_server_waits_for_the_database_and_is_healthy_when_ready(compose):
    server = compose["services"]["server"]

    assert server["depends_on"]["db"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(server["healthcheck"]["test"])
    assert compose["services"]["agent"]["depends_on"]["server"]["condition"] == ("service_healthy")


def test_compose_agent_keeps_its_data_on_a_named_volume_and_its_token_in_an_env_file(compose):
    agent = compose["services"]["agent"]

    volume, _, target = agent["volumes"][0].partition(":")
    assert target == agent["environment"]["AGENT_STORAGE_PATH"] == "/data"
    assert volume in compose["volumes"]
    assert agent["env_file"] == "env/agent.env"
    assert "AGENT_TOKEN" in env_file_names(PLATFORM / "env/agent.env.example")


def test_compose_sets_only_documented_settings(compose):
    for service, settings in (("server", SERVER_SETTINGS), ("agent", AGENT_SETTINGS)):
        environment = compose["services"][service]["environment"]
        assert set(environment) <= settings, f"{service} sets undocumented variables"
        env_file = PLATFORM / f"{compose['services'][service]['env_file']}.example"
        assert env_file.is_file()
    interpolated = set(re.findall(r"\$\{(\w+)", (PLATFORM / "compose.yaml").read_text()))
    assert interpolated == {"POSTGRES_PASSWORD"}  # compose's own, explained at the file's top


def test_compose_stop_grace_outlasts_the_agent_drain_and_uvicorn_shutdown(compose):
    services = compose["services"]

    assert seconds(services["agent"]["stop_grace_period"]) > AGENT_DRAIN_SECONDS
    assert seconds(services["server"]["stop_grace_period"]) > 30  # --timeout-graceful-shutdown


# --- env examples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "settings"),
    [("server.env.example", SERVER_SETTINGS), ("agent.env.example", AGENT_SETTINGS)],
)
def test_env_examples_list_exactly_the_documented_settings(example, settings):
    names = env_file_names(PLATFORM / "env" / example)

    assert sorted(settings - names) == [], "documented but missing from the example"
    assert sorted(names - settings) == [], "in the example but not documented"


# --- systemd ----------------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string((PLATFORM / "systemd" / name).read_text())
    return parser


@pytest.mark.parametrize("name", ["gitfleet-server.service", "gitfleet-agent.service"])
def test_units_are_hardened_and_restart_on_failure(name):
    service = unit(name)["Service"]

    assert service["User"] == service["Group"] == "gitfleet"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["ReadWritePaths"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"
    assert service["CapabilityBoundingSet"] == ""


def test_agent_unit_outlasts_the_drain_and_writes_only_its_storage():
    service = unit("gitfleet-agent.service")["Service"]

    assert int(service["TimeoutStopSec"]) > AGENT_DRAIN_SECONDS
    assert service["ReadWritePaths"] == "/data"
    assert (
        "Environment=AGENT_STORAGE_PATH=/data"
        in (PLATFORM / "systemd/gitfleet-agent.service").read_text()
    )


def test_server_unit_keeps_connections_longer_than_a_long_poll():
    text = (PLATFORM / "systemd/gitfleet-server.service").read_text()

    keep_alive = int(re.search(r"--timeout-keep-alive (\d+)", text)[1])
    graceful = int(re.search(r"--timeout-graceful-shutdown (\d+)", text)[1])
    assert keep_alive > 50  # LONG_POLL_MAX_WAIT
    assert int(unit("gitfleet-server.service")["Service"]["TimeoutStopSec"]) > graceful
    assert "--proxy-headers" in text and "--no-access-log" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_units_pass_systemd_analyze_verify(tmp_path):
    # A root of its own, so the units' executables exist and systemd's own units are found.
    for executable in ("python", "uvicorn"):
        path = tmp_path / "opt/gitfleet/.venv/bin" / executable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    shutil.copytree("/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    names = ["gitfleet-server.service", "gitfleet-agent.service"]
    for name in names:
        shutil.copy(PLATFORM / "systemd" / name, units / name)

    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={tmp_path}", *names],
        capture_output=True,
        text=True,
        timeout=60,
    )

    # verify exits 0 on unknown keys and bad values too; it only says so.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
