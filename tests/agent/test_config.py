"""The agent's settings: defaults, validation, and what a bad value looks like."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"AGENT_SERVER_URL": "https://gitfleet.example.com/", "AGENT_TOKEN": "gfa_abc"}


def test_defaults_put_the_four_folders_under_storage():
    config = AgentConfig.from_env(MINIMAL)

    assert config.server_url == "https://gitfleet.example.com"
    assert config.storage_path == "/data"
    assert config.folders == ("/data/projects", "/data/datasets", "/data/jobs", "/data/outputs")
    assert config.git_allowed_schemes == ("https", "ssh")
    assert config.git_allow_private_hosts is False
    assert (config.concurrency, config.git_timeout, config.lease_wait) == (2, 3600, 25)
    assert (config.heartbeat_seconds, config.drain_seconds) == (20, 60)
    assert config.tls_verify is True
    assert config.log_format == "text"


def test_every_setting_can_be_overridden(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not checked here")
    config = AgentConfig.from_env(
        {
            **MINIMAL,
            "AGENT_STORAGE_PATH": str(tmp_path / "store"),
            "AGENT_PROJECTS_PATH": str(tmp_path / "p"),
            "AGENT_DATASETS_PATH": str(tmp_path / "d"),
            "AGENT_JOBS_WORKSPACE": str(tmp_path / "j"),
            "AGENT_OUTPUTS_PATH": str(tmp_path / "o"),
            "AGENT_GIT_ALLOWED_SCHEMES": "https, git ,file",
            "AGENT_GIT_ALLOW_PRIVATE_HOSTS": "yes",
            "AGENT_CONCURRENCY": "4",
            "AGENT_GIT_TIMEOUT": "10",
            "AGENT_LEASE_WAIT": "50",
            "AGENT_HEARTBEAT_SECONDS": "5",
            "AGENT_DRAIN_SECONDS": "0",
            "AGENT_CA_BUNDLE": str(bundle),
            "AGENT_LOG_FORMAT": "JSON",
        }
    )

    assert config.folders == tuple(str(tmp_path / name) for name in "pdjo")
    assert config.git_allowed_schemes == ("https", "git", "file")
    assert config.git_allow_private_hosts is True
    assert (config.concurrency, config.git_timeout, config.lease_wait) == (4, 10, 50)
    assert (config.heartbeat_seconds, config.drain_seconds) == (5, 0)
    assert config.tls_verify == str(bundle)
    assert config.log_format == "json"


def test_token_can_come_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("gfa_from_file\n")

    env = {"AGENT_SERVER_URL": "http://localhost:8000", "AGENT_TOKEN_FILE": str(token_file)}
    config = AgentConfig.from_env(env)

    assert config.token == "gfa_from_file"
    assert "gfa_from_file" not in repr(config)


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"AGENT_TOKEN": "t"}, "AGENT_SERVER_URL", "required"),
        ({"AGENT_SERVER_URL": "ftp://x", "AGENT_TOKEN": "t"}, "AGENT_SERVER_URL", "http"),
        ({"AGENT_SERVER_URL": "https://", "AGENT_TOKEN": "t"}, "AGENT_SERVER_URL", "host"),
        (
            {"AGENT_SERVER_URL": "https://u:p@h", "AGENT_TOKEN": "t"},
            "AGENT_SERVER_URL",
            "credentials",
        ),
        ({"AGENT_SERVER_URL": "https://h:99999", "AGENT_TOKEN": "t"}, "AGENT_SERVER_URL", "valid"),
        ({"AGENT_SERVER_URL": "https://h"}, "AGENT_TOKEN", "required"),
        ({"AGENT_SERVER_URL": "https://h", "AGENT_TOKEN": "a b"}, "AGENT_TOKEN", "whitespace"),
        (
            {"AGENT_SERVER_URL": "https://h", "AGENT_TOKEN": "t", "AGENT_TOKEN_FILE": "/x"},
            "AGENT_TOKEN",
            "not both",
        ),
        (
            {"AGENT_SERVER_URL": "https://h", "AGENT_TOKEN_FILE": "/nonexistent/token"},
            "AGENT_TOKEN_FILE",
            "cannot read",
        ),
        ({**MINIMAL, "AGENT_GIT_ALLOWED_SCHEMES": "https,ext"}, "AGENT_GIT_ALLOWED_SCHEMES", "ext"),
        ({**MINIMAL, "AGENT_CONCURRENCY": "0"}, "AGENT_CONCURRENCY", "between 1 and 64"),
        ({**MINIMAL, "AGENT_CONCURRENCY": "two"}, "AGENT_CONCURRENCY", "whole number"),
        ({**MINIMAL, "AGENT_GIT_TIMEOUT": "-1"}, "AGENT_GIT_TIMEOUT", "at least 1"),
        ({**MINIMAL, "AGENT_LEASE_WAIT": "51"}, "AGENT_LEASE_WAIT", "between 0 and 50"),
        ({**MINIMAL, "AGENT_HEARTBEAT_SECONDS": "0"}, "AGENT_HEARTBEAT_SECONDS", "between"),
        ({**MINIMAL, "AGENT_DRAIN_SECONDS": "1.5"}, "AGENT_DRAIN_SECONDS", "whole number"),
        (
            {**MINIMAL, "AGENT_GIT_ALLOW_PRIVATE_HOSTS": "maybe"},
            "AGENT_GIT_ALLOW_PRIVATE_HOSTS",
            "true or false",
        ),
        ({**MINIMAL, "AGENT_LOG_FORMAT": "xml"}, "AGENT_LOG_FORMAT", "text, json"),
        ({**MINIMAL, "AGENT_CA_BUNDLE": "/nonexistent.pem"}, "AGENT_CA_BUNDLE", "does not exist"),
    ],
)
def test_a_bad_value_names_the_variable(env, variable, words):
    with pytest.raises(ConfigError) as raised:
        AgentConfig.from_env(env)

    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable}: ")
    assert words in str(raised.value)


def test_create_folders_makes_all_four(tmp_path):
    config = AgentConfig.from_env({**MINIMAL, "AGENT_STORAGE_PATH": str(tmp_path / "data")})

    config.create_folders()

    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "datasets", "jobs", "outputs", "projects",
    ]  # fmt: skip


def test_the_command_exits_2_with_one_line_naming_the_variable(tmp_path):
    env = {"PATH": os.environ["PATH"], "AGENT_SERVER_URL": "https://h", "AGENT_TOKEN": "t",
           "AGENT_STORAGE_PATH": str(tmp_path), "AGENT_LEASE_WAIT": "99"}  # fmt: skip

    completed = subprocess.run(
        [sys.executable, "-m", "agent"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip

    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        "gitfleet-agent: AGENT_LEASE_WAIT: must be between 0 and 50, got 99"
    ]
    assert not list(tmp_path.iterdir())
