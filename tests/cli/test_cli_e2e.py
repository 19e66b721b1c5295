"""`gitfleet` driven as a separate process against a real server, agent and git daemon."""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gitfleet_cli.client import Client
from gitfleet_cli.follow import Follower
from tests.cli.conftest import CliRunner, cli_runner
from tests.support.credentials import TOKEN, fernet_key
from tests.support.fleet import Fleet
from tests.support.gitservers import (
    GitDaemon,
    Upstream,
    free_port,
    git,
    start_gated_relay,
    start_git_daemon,
    start_http_git_server,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(
        tmp_path_factory.mktemp("fleet"),
        CREDENTIAL_KEYS=fernet_key(),
        # The agent reaches this server over loopback only, so a secret may go over http.
        CREDENTIALS_ALLOW_INSECURE_TRANSPORT="true",
    )
    try:
        fleet.start_agent()
        yield fleet
    finally:
        fleet.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def git_daemon(served: Path) -> Iterator[GitDaemon]:
    daemon = start_git_daemon(served)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def person(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> CliRunner:
    """A person logged in to the fleet's server, the token typed on stdin."""
    run = cli_runner(tmp_path_factory.mktemp("home"))
    done = run("login", fleet.server.url, input=fleet.user_token + "\n")
    assert done.returncode == 0, done.stderr
    return run


def assert_token_hidden(token: str, *runs) -> None:
    for done in runs:
        assert token not in done.stdout
        assert token not in done.stderr


def test_login_keeps_url_and_token_in_a_file_only_its_owner_can_read(
    fleet: Fleet, run_cli: CliRunner, tmp_path: Path
):
    done = run_cli("login", fleet.server.url, input=fleet.user_token + "\n")

    assert done.returncode == 0, done.stderr
    path = tmp_path / "home" / "config" / "gitfleet" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert fleet.user_token in path.read_text()
    assert fleet.server.url in done.stdout
    assert_token_hidden(fleet.user_token, done)
    # The saved login is what later commands use.
    assert run_cli("nodes").returncode == 0


def test_login_with_a_wrong_token_is_refused_and_saves_nothing(
    fleet: Fleet, run_cli: CliRunner, tmp_path: Path
):
    done = run_cli("login", fleet.server.url, input="gfu_not-a-real-token\n")

    assert done.returncode == 3, done.stderr
    assert "refused (401" in done.stderr
    assert "Authorization" in done.stderr or "token" in done.stderr.lower()
    assert not (tmp_path / "home" / "config" / "gitfleet" / "config.json").exists()


def test_environment_overrides_the_saved_login(fleet: Fleet, run_cli: CliRunner):
    env = {"GITFLEET_URL": fleet.server.url, "GITFLEET_TOKEN": fleet.user_token}

    done = run_cli("nodes", "--json", env=env)

    assert done.returncode == 0, done.stderr
    assert [node["name"] for node in done.json()] == ["node-1"]


def test_clone_wait_shows_progress_then_status_json_ls_pull_events_nodes_delete(
    fleet: Fleet, person: CliRunner, served: Path, git_daemon: GitDaemon
):
    upstream = Upstream(served, "demo")
    first = upstream.commit({"README.md": "hello\n"}, "first")

    cloned = person("clone", git_daemon.url("demo.git"), "--node", "node-1", "--wait")

    assert cloned.returncode == 0, cloned.stderr
    lines = cloned.stderr.splitlines()
    assert lines[0].startswith("clone demo: queued (project ")
    assert lines[-1] == f"clone demo: succeeded at {first[:12]} on main"
    assert "status:   ready" in cloned.stdout

    status = person("status", "demo", "--json")
    assert status.returncode == 0, status.stderr
    assert status.json()["status"] == "ready"
    assert status.json()["commit"] == first
    project_id = status.json()["id"]
    assert person("--json", "status", project_id).json() == status.json()

    listed = person("ls")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split() == [
        "ID", "NAME", "STATUS", "NODE", "BRANCH", "COMMIT"
    ]  # fmt: skip
    assert f"{project_id}  demo  ready   node-1  main    {first[:12]}" in listed.stdout
    assert [p["id"] for p in person("ls", "--json", "--status", "ready").json()] == [project_id]
    assert person("ls", "--json", "--status", "failed").json() == []

    second = upstream.commit({"README.md": "hello again\n"}, "second")
    pulled = person("pull", "demo", "--wait", "--json")
    assert pulled.returncode == 0, pulled.stdout
    assert pulled.stderr == ""  # --json: nothing but the JSON document
    assert pulled.json()["job"]["kind"] == "pull"
    assert pulled.json()["job"]["state"] == "succeeded"
    assert pulled.json()["project"]["commit"] == second

    events = person("events", "demo", "--json")
    types = [e["type"] for e in events.json() if e["type"] != "JobLeaseRenewed"]
    assert types[:5] == ["ProjectCreated", "JobQueued", "JobLeased", "JobSucceeded", "JobQueued"]
    human = person("events", project_id)
    assert human.stdout.splitlines()[0].split() == ["V", "RECORDED", "TYPE", "DETAIL"]
    assert "ProjectCreated" in human.stdout

    nodes = person("nodes")
    assert nodes.returncode == 0
    assert nodes.stdout.splitlines()[1].split()[:3] == ["node-1", "online", "yes"]

    watched = person("watch", "demo")  # nothing running: reports how the last job ended
    assert watched.returncode == 0, watched.stderr
    assert "pull of demo: succeeded" in watched.stdout

    deleted = person("delete", project_id, "--wait")
    assert deleted.returncode == 0, deleted.stderr
    assert "delete demo: succeeded" in deleted.stderr
    assert person("status", project_id, "--json").json()["status"] == "deleted"
    assert_token_hidden(fleet.user_token, cloned, status, listed, pulled, events, deleted)


def test_a_slow_clone_shows_its_progress_as_it_goes(
    person: CliRunner, served: Path, git_daemon: GitDaemon
):
    Upstream(served, "big").commit({"blob.bin": os.urandom(1024 * 1024)}, "big")
    slow = start_gated_relay(git_daemon.port, rate=256 * 1024)  # the transfer takes seconds
    slow.open()
    try:
        done = person("clone", slow.url("big.git"), "--node", "node-1", "--wait")
    finally:
        slow.stop()

    assert done.returncode == 0, done.stderr
    # Not a terminal: one plain line per phase and tenth done, fed by the lease renewals.
    assert re.search(r"^clone big: receiving \d{1,3}% \(\d+ objects", done.stderr, re.M), (
        done.stderr
    )
    lines = done.stderr.splitlines()
    assert lines[0].startswith("clone big: queued (project ")
    assert "clone big: running (attempt 1)" in lines
    assert lines[-1].startswith("clone big: succeeded at ")


def test_watch_follows_a_job_queued_earlier_to_its_end(
    person: CliRunner, served: Path, git_daemon: GitDaemon
):
    Upstream(served, "later").commit({"blob.bin": os.urandom(512 * 1024)}, "big")
    slow = start_gated_relay(git_daemon.port, rate=128 * 1024)
    slow.open()
    try:
        queued = person("clone", slow.url("later.git"), "--node", "node-1", "--name", "later")
        assert queued.returncode == 0, queued.stderr
        assert queued.stdout.startswith("clone of later queued: project ")
        watched = person("watch", "later")
    finally:
        slow.stop()

    assert watched.returncode == 0, watched.stderr
    assert watched.stderr.splitlines()[0] in (
        "clone later: queued",
        "clone later: running (attempt 1)",
    )
    assert watched.stderr.splitlines()[-1].startswith("clone later: succeeded at ")
    assert "status:   ready" in watched.stdout


def test_a_failed_clone_exits_1_with_its_reason(
    fleet: Fleet, person: CliRunner, git_daemon: GitDaemon
):
    done = person(
        "clone", git_daemon.url("missing.git"), "--node", "node-1", "--wait", "--timeout", "60"
    )

    assert done.returncode == 1, done.stderr
    assert "clone missing: failed:" in done.stderr
    assert "status:   failed" in done.stdout
    # The status says why, from the answer's reason: the failed job's error.
    assert re.search(r"^why:      \w+: .+", done.stdout, re.MULTILINE), done.stdout


def test_the_follower_uses_the_servers_watch_api(fleet: Fleet, served: Path, git_daemon: GitDaemon):
    Upstream(served, "polled").commit({"a.txt": "a\n"}, "first")
    accepted = fleet.user.clone("polled", git_daemon.url("polled.git"))
    client = Client(fleet.server.url, fleet.user_token)
    try:
        follower = Follower(client, accepted["project"]["id"], timeout=60)
        follower.history()
        job = follower.until_done(accepted["job"]["id"])
    finally:
        client.close()

    assert job.state == "succeeded"
    # The server holds `events?after=&wait=`; the follower's fallback to /status stays for
    # servers without it (tests/cli/test_follow.py).
    assert follower.watch_supported is True


def test_a_refused_request_exits_3_and_names_the_field(person: CliRunner):
    done = person("clone", "git://127.0.0.1/x.git", "--node", "node-1", "--branch", "a..b")

    assert done.returncode == 3
    assert "refused (400 invalid):" in done.stderr
    assert "  branch: " in done.stderr

    as_json = person(
        "clone", "git://127.0.0.1/x.git", "--node", "node-1", "--branch", "a..b", "--json"
    )
    assert as_json.returncode == 3
    assert as_json.json()["status"] == 400
    assert "branch" in as_json.json()["fields"]


def test_an_unknown_project_name_exits_3(person: CliRunner):
    done = person("status", "no-such-project")

    assert done.returncode == 3
    assert "no project named 'no-such-project'" in done.stderr


def test_an_unreachable_server_exits_4(run_cli: CliRunner):
    env = {"GITFLEET_URL": f"http://127.0.0.1:{free_port()}", "GITFLEET_TOKEN": "whatever"}
    started = time.monotonic()

    done = run_cli("ls", env=env)

    assert done.returncode == 4
    assert "cannot reach http://127.0.0.1:" in done.stderr
    assert "connection refused" in done.stderr
    assert "whatever" not in done.stderr
    assert time.monotonic() - started < 15  # bounded retries, not a hang


def test_bad_usage_exits_2(run_cli: CliRunner):
    missing_node = run_cli("clone", "git://127.0.0.1/x.git")
    assert missing_node.returncode == 2
    assert "--node" in missing_node.stderr

    assert run_cli("frobnicate").returncode == 2
    assert run_cli("clone", "git://h/x.git", "--node", "n", "--depth", "0").returncode == 2

    not_logged_in = run_cli("ls")
    assert not_logged_in.returncode == 2
    assert "gitfleet login" in not_logged_in.stderr


def test_tokens_through_the_tokens_api_or_a_clear_message_without_it(
    fleet: Fleet, person: CliRunner
):
    has_api = (
        httpx.get(
            f"{fleet.server.url}/api/v1/tokens/",
            headers={"Authorization": f"Bearer {fleet.user_token}"},
        ).status_code
        != 404
    )

    created = person("tokens", "create", "laptop", "--expires", "30d", "--json")

    if not has_api:
        assert created.returncode == 3
        assert "no self-service tokens" in created.json()["error"]
        listed = person("tokens")
        assert listed.returncode == 3
        assert "/api/v1/tokens/" in listed.stderr
        revoked = person("tokens", "revoke", "42")
        assert revoked.returncode == 3
        assert "no token 42, or this server has no /api/v1/tokens/" in revoked.stderr
        return
    assert created.returncode == 0, created.stdout
    secret, token_id = created.json()["token"], str(created.json()["id"])
    listed = person("tokens", "list", "--json")
    assert token_id in [str(t["id"]) for t in listed.json()]
    assert secret not in listed.stdout
    assert person("tokens", "revoke", token_id).returncode == 0
    # Revoked tokens stay listed, for the record, and say so.
    [after] = [t for t in person("tokens", "--json").json() if str(t["id"]) == token_id]
    assert (after["active"], after["revoked_at"] is not None) == (False, True)
    table_lines = person("tokens").stdout.splitlines()
    assert any(line.split()[:3] == [token_id, "laptop", "revoked"] for line in table_lines)


def test_inspect_pull_strategy_and_forced_delete_from_the_command_line(
    fleet: Fleet, person: CliRunner, served: Path, git_daemon: GitDaemon
):
    upstream = Upstream(served, "live")
    upstream.commit({"train.py": "lr = 1\n"}, "first")
    cloned = person("clone", git_daemon.url("live.git"), "--node", "node-1", "--wait", "--json")
    assert cloned.returncode == 0, cloned.stderr
    checkout = Path(person("status", "live", "--json").json()["local_path"])
    (checkout / "train.py").write_text("lr = 2\n")

    inspected = person("inspect", "live", "--wait", "--json")
    assert inspected.returncode == 0, inspected.stdout
    assert inspected.json()["project"]["workspace"]["dirty"] == {
        "count": 1,
        "paths": ["M train.py"],
    }

    new = upstream.commit({"README.md": "upstream\n"}, "second")
    pulled = person("pull", "live", "--strategy", "rebase", "--wait", "--json")
    assert pulled.returncode == 0, pulled.stdout
    assert pulled.json()["project"]["commit"] == new
    assert (checkout / "train.py").read_text() == "lr = 2\n"

    refused = person("delete", "live", "--wait")
    assert refused.returncode == 1
    assert "local_changes" in refused.stdout + refused.stderr
    assert (checkout / "train.py").read_text() == "lr = 2\n"

    forced = person("delete", "live", "--force", "--wait")
    assert forced.returncode == 0, forced.stderr
    assert not checkout.exists()


def test_clone_with_a_tag_sparse_folders_a_filter_and_no_lfs_then_pull_to_a_branch(
    fleet: Fleet, person: CliRunner, served: Path, git_daemon: GitDaemon
):
    upstream = Upstream(served, "options")
    tagged = upstream.commit({"models/a.txt": "a\n", "docs/b.txt": "b\n"}, "first")
    git("tag", "v1", cwd=upstream.work)
    git("push", "--quiet", "origin", "refs/tags/v1", cwd=upstream.work)
    newer = upstream.commit({"models/a.txt": "a2\n"}, "second")

    cloned = person(
        "clone", git_daemon.url("options.git"), "--node", "node-1", "--ref", "v1",
        "--sparse", "models", "--sparse", "models/extra", "--filter", "blob:none", "--no-lfs",
        "--submodules", "none", "--wait", "--json",
    )  # fmt: skip

    assert cloned.returncode == 0, cloned.stdout + cloned.stderr
    status = cloned.json()["project"]
    assert (status["status"], status["ref"], status["ref_kind"]) == ("ready", "v1", "tag")
    assert status["commit"] == tagged
    project = person("--json", "ls").json()
    detail = next(p for p in project if p["name"] == "options")
    assert detail["sparse"] == ["models", "models/extra"]
    assert (detail["filter"], detail["lfs"], detail["submodules"]) == ("blob:none", False, "none")
    checkout = Path(status["local_path"])
    assert (checkout / "models" / "a.txt").read_text() == "a\n"
    assert not (checkout / "docs").exists()

    pulled = person("pull", "options", "--ref", "main", "--wait", "--json")

    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    moved = pulled.json()["project"]
    assert (moved["ref"], moved["ref_kind"], moved["commit"]) == ("main", "branch", newer)
    assert (checkout / "models" / "a.txt").read_text() == "a2\n"


def test_clone_with_a_credential_named_or_by_id(fleet: Fleet, person: CliRunner, served: Path):
    server = start_http_git_server(served)
    try:
        server.basic_users["alice"] = TOKEN
        Upstream(served, "private-cli").commit({"README.md": "private\n"}, "first")
        created = httpx.post(
            f"{fleet.server.url}/api/v1/credentials/",
            headers={"Authorization": f"Bearer {fleet.user_token}"},
            json={"name": "cli-token", "kind": "https-token", "host": server.host,
                  "username": "alice", "secret": TOKEN},
            timeout=30,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        url = server.url("basic", "private-cli.git")

        by_name = person(
            "clone", url, "--node", "node-1", "--credential", "cli-token", "--wait", "--json"
        )
        by_id = person(
            "clone", url, "--node", "node-1", "--name", "private-by-id",
            "--credential", created.json()["id"], "--wait", "--json",
        )  # fmt: skip
    finally:
        server.stop()

    for done in (by_name, by_id):
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.json()["project"]["status"] == "ready"
        assert_token_hidden(TOKEN, done)
    assert server.basic_logins.count("alice") >= 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--submodules", "all"], "submodules"),
        (["--filter", "blob:everything"], "filter"),
        (["--sparse", "../outside"], "sparse"),
        (["--sparse", "/etc"], "sparse"),
        (["--ref", "a..b"], "ref"),
        (["--credential", "00000000-0000-4000-8000-000000000000"], "credential"),
        (["--credential", "no-such-credential"], "credential"),
    ],
)
def test_bad_clone_options_come_back_as_the_apis_refusal_naming_the_field(
    person: CliRunner, options: list[str], field: str
):
    done = person("clone", "git://127.0.0.1/x.git", "--node", "node-1", *options, "--json")

    assert done.returncode == 3, done.stdout + done.stderr
    refusal = done.json()
    assert refusal["status"] in (400, 404)
    assert field in refusal["fields"], refusal


def test_a_bad_pull_ref_comes_back_as_the_apis_refusal_naming_the_field(
    person: CliRunner, served: Path, git_daemon: GitDaemon
):
    Upstream(served, "pull-ref").commit({"a": "a\n"}, "first")
    assert (
        person("clone", git_daemon.url("pull-ref.git"), "--node", "node-1", "--wait").returncode
        == 0
    )

    done = person("pull", "pull-ref", "--ref", "bad..ref", "--json")

    assert done.returncode == 3
    assert done.json()["status"] == 400
    assert "ref" in done.json()["fields"]
