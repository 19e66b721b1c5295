"""Group-write checkouts (AGENT_CHECKOUT_MODE=group-write): a person's own process in the group
edits the checkout in place, and the agent still pulls it."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError
from tests.support.jobs import config_env, run_job

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "groupadd", "runuser")),
    reason="needs root and the shadow utilities to make a second user and a group",
)


@pytest.fixture
def person() -> Iterator[tuple[str, str]]:
    """A Unix group and a second user in it, removed afterwards."""
    suffix = secrets.token_hex(3)
    group, user = f"gfws{suffix}", f"gfwu{suffix}"
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(["useradd", "--no-create-home", "-g", group, user], check=True)
    yield group, user
    subprocess.run(["userdel", user], check=False)
    subprocess.run(["groupdel", group], check=False)


@pytest.fixture
def storage() -> Iterator[Path]:
    # Not under pytest's tmp_path, whose 0700 parents would keep the second user out anyway.
    path = Path(tempfile.mkdtemp(prefix="gitfleet-group-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_checkouts_are_group_owned_and_group_writable(person, storage, upstream, git_daemon):
    group, user = person
    config = AgentConfig.from_env(
        config_env(storage, AGENT_CHECKOUT_MODE="group-write", AGENT_CHECKOUT_GROUP=group)
    )
    config.create_folders()
    Path(config.projects_path).chmod(0o755)  # the second user must reach the checkout
    upstream.commit({"src/train.py": "lr = 1\n"})

    checkout = Path(run_job(config, git_url=git_daemon.url(upstream.name)).local_path)

    gid = config.checkout_gid
    for path in [checkout, checkout / "src", checkout / ".git", checkout / ".git" / "objects"]:
        info = path.lstat()
        assert info.st_gid == gid, path
        assert stat.S_IMODE(info.st_mode) & 0o2070 == 0o2070, (path, oct(info.st_mode))
    info = (checkout / "src" / "train.py").lstat()
    assert info.st_gid == gid
    assert stat.S_IMODE(info.st_mode) & 0o060 == 0o060
    stat_output = subprocess.run(
        ["stat", "-c", "%A %G", str(checkout / "src")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert stat_output == ["drwxrwsr-x", group]

    # The person's own process edits in place and adds a file, under their own uid.
    edit = "printf 'lr = 2\\n' > src/train.py && printf 'mine\\n' > src/notes.md"
    subprocess.run(["runuser", "-u", user, "--", "sh", "-c", edit], cwd=checkout, check=True)
    assert (checkout / "src" / "notes.md").lstat().st_gid == gid
    new = upstream.commit({"README.md": "upstream edit\n"})

    result = run_job(config, kind="pull", git_url=git_daemon.url(upstream.name), strategy="rebase")

    assert result.commit == new
    assert (checkout / "src" / "train.py").read_text() == "lr = 2\n"
    assert (checkout / "README.md").lstat().st_gid == gid
    assert stat.S_IMODE((checkout / "README.md").lstat().st_mode) & 0o060 == 0o060


def test_group_write_needs_a_group_that_exists(storage):
    with pytest.raises(ConfigError, match="AGENT_CHECKOUT_GROUP"):
        AgentConfig.from_env(config_env(storage, AGENT_CHECKOUT_MODE="group-write"))
    with pytest.raises(ConfigError, match="no group"):
        AgentConfig.from_env(
            config_env(
                storage, AGENT_CHECKOUT_MODE="group-write", AGENT_CHECKOUT_GROUP="no-such-group-x"
            )
        )
    assert AgentConfig.from_env(config_env(storage)).checkout_gid is None
