"""A private repository's LFS objects and submodules come down with the project's credential,
and the credential goes to the clone URL's own scheme, host and port only: real git, a
Basic-auth `git http-backend` fronting a real LFS server (giftless), and a second server on
another 127.0.0.1 port that records every Authorization header it is sent."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.credentials import GitCredential, http_auth
from agent.errors import JobFailure
from agent.logs import LOGGER_NAME
from tests.agent.test_job_credentials import found_in_files, job_folders, run, token_access
from tests.agent.test_submodules import add_submodule
from tests.support.credentials import TOKEN, leaks
from tests.support.gitservers import HttpGitServer, Upstream, start_http_git_server
from tests.support.lfsserver import commit_lfs_files

WEIGHTS = os.urandom(200_000)
OTHER_SECRET = "RemoteAuth " + "signed-Qm4Tz8Lp2Wk6"


@pytest.fixture
def agent_config(make_config):
    return make_config(AGENT_GIT_ALLOWED_SCHEMES="http")


@pytest.fixture
def private_http(http_git, lfs_server) -> HttpGitServer:
    """The project's host: /basic/ paths, LFS included, only for alice with TOKEN."""
    http_git.basic_users["alice"] = TOKEN
    http_git.lfs_backend[0] = lfs_server.endpoint()
    return http_git


@pytest.fixture
def other_host(served, lfs_server) -> Iterator[HttpGitServer]:
    """Another "host" (another port): open /git/ paths, the same LFS objects."""
    server = start_http_git_server(served)
    server.lfs_backend[0] = lfs_server.endpoint()
    yield server
    server.stop()


@pytest.fixture
def private_lfs(served, private_http, lfs_server) -> Upstream:
    """A private repository whose LFS endpoint is its default one, on its own host."""
    upstream = Upstream(served, "private-model")
    upstream.commit({"README.md": "private\n"}, "first")
    endpoint = private_http.url("basic", upstream.name) + "/info/lfs"
    commit_lfs_files(upstream, endpoint, {"weights.bin": WEIGHTS}, upload_to=lfs_server.endpoint())
    return upstream


@pytest.fixture
def agent_log(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return caplog


def assert_no_trace(config, checkout: Path, log: pytest.LogCaptureFixture) -> None:
    """The secret is nowhere on the node's disk (the checkout, its .git/config and the
    submodules' .git/modules/*/config included) nor in the agent's log."""
    assert found_in_files(Path(config.storage_path), [TOKEN]) == []
    configs = [checkout / ".git" / "config", *(checkout / ".git").glob("modules/**/config")]
    assert not any(leaks(path.read_bytes(), TOKEN) for path in configs)
    assert not leaks(log.text.encode(), TOKEN)
    assert job_folders(config.storage_path) == []


def run_private_lfs(agent_config, private_http: HttpGitServer, private_lfs: Upstream):
    """Clones the private LFS repository with the project's token credential."""
    return run(
        agent_config, token_access(private_http),
        git_url=private_http.url("basic", private_lfs.name), lfs=True,
    )  # fmt: skip


def test_a_private_lfs_object_on_the_projects_host_comes_down_with_its_credential(
    agent_config, private_http, private_lfs, agent_log
):
    url = private_http.url("basic", private_lfs.name)

    result = run(agent_config, token_access(private_http), git_url=url, lfs=True)

    assert not isinstance(result, JobFailure), result
    checkout = Path(result.local_path)
    assert (checkout / "weights.bin").read_bytes() == WEIGHTS
    assert result.lfs_files == 1
    lfs_requests = [(method, path) for method, path, _ in private_http.seen if "lfs" in path]
    assert [method for method, _ in lfs_requests] == ["POST", "GET"]
    assert all(auth for _, path, auth in private_http.seen if "lfs" in path)
    assert_no_trace(agent_config, checkout, agent_log)


def test_a_private_lfs_server_behind_a_public_repository_needs_the_credential(
    agent_config, private_http, private_lfs
):
    # The repository itself is public here; only its LFS endpoint asks for the credential.
    endpoint = private_http.url("basic", private_lfs.name) + "/info/lfs"
    assert endpoint in (private_lfs.work / ".lfsconfig").read_text()

    failure = run(
        agent_config, token_access(private_http), git_url=private_http.url("git", private_lfs.name),
        lfs=True,
    )  # fmt: skip

    # http://host/git/... and http://host/basic/... share scheme, host and port: one origin.
    assert not isinstance(failure, JobFailure), failure
    anonymous = run(
        agent_config, None, git_url=private_http.url("git", private_lfs.name), lfs=True,
        target_path="42_anonymous",
    )  # fmt: skip
    assert isinstance(anonymous, JobFailure)
    assert anonymous.code == "auth_failed"
    assert "has none" in anonymous.message


def test_object_hrefs_on_another_host_get_no_authorization(
    agent_config, private_http, private_lfs, other_host, agent_log
):
    private_http.lfs_href_base[0] = other_host.url("git", "lfs")

    result = run_private_lfs(agent_config, private_http, private_lfs)

    assert not isinstance(result, JobFailure), result
    assert (Path(result.local_path) / "weights.bin").read_bytes() == WEIGHTS
    assert [method for method, _, _ in other_host.seen] == ["GET"]
    assert other_host.authorizations() == []
    assert_no_trace(agent_config, Path(result.local_path), agent_log)


def test_an_action_header_holding_the_credential_never_reaches_another_host(
    agent_config, private_http, private_lfs, other_host
):
    # A batch answer that hands the project's own Authorization back for an href elsewhere.
    private_http.lfs_href_base[0] = other_host.url("git", "lfs")
    private_http.lfs_action_header["Authorization"] = "{authorization}"

    result = run_private_lfs(agent_config, private_http, private_lfs)

    assert not isinstance(result, JobFailure), result
    assert other_host.authorizations() == []


def test_an_action_header_of_the_lfs_servers_own_is_sent_with_its_href(
    agent_config, private_http, private_lfs, other_host
):
    # As git-lfs does: an object store's own pre-signed Authorization goes with its href.
    private_http.lfs_href_base[0] = other_host.url("git", "lfs")
    private_http.lfs_action_header["Authorization"] = OTHER_SECRET

    result = run_private_lfs(agent_config, private_http, private_lfs)

    assert not isinstance(result, JobFailure), result
    assert other_host.authorizations() == [OTHER_SECRET]


def test_a_redirect_to_another_host_drops_the_credential(
    agent_config, private_http, private_lfs, other_host
):
    private_http.lfs_href_base[0] = private_http.url("basic", "lfs-redirect")
    private_http.lfs_redirect_to[0] = other_host.url("git", "lfs")

    result = run_private_lfs(agent_config, private_http, private_lfs)

    assert not isinstance(result, JobFailure), result
    assert (Path(result.local_path) / "weights.bin").read_bytes() == WEIGHTS
    redirect = [auth for _, path, auth in private_http.seen if "lfs-redirect" in path]
    assert len(redirect) == 1 and redirect[0]  # the first hop is the project's host
    assert other_host.authorizations() == []


@pytest.fixture
def leaf(served) -> tuple[Upstream, str]:
    leaf = Upstream(served, "leaf")
    return leaf, leaf.commit({"leaf.txt": "leaf\n"}, "leaf")


def test_a_private_submodule_on_the_projects_host_uses_the_credential(
    agent_config, served, private_http, leaf, agent_log
):
    upstream, commit = leaf
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "libs/leaf", "../leaf.git", commit)
    top.commit({}, "with a private submodule")

    result = run(
        agent_config, token_access(private_http), git_url=private_http.url("basic", top.name),
        submodules="recursive",
    )  # fmt: skip

    assert not isinstance(result, JobFailure), result
    checkout = Path(result.local_path)
    assert (checkout / "libs" / "leaf" / "leaf.txt").read_text() == "leaf\n"
    assert result.submodules == 1
    logins = [path for _, path, auth in private_http.seen if auth and upstream.name in path]
    assert logins, "the submodule's fetch authenticated"
    assert list((checkout / ".git" / "modules").glob("**/config"))
    assert_no_trace(agent_config, checkout, agent_log)


def test_a_submodule_on_another_host_gets_no_credential(
    agent_config, served, private_http, other_host, leaf, agent_log
):
    _, commit = leaf
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "open", other_host.url("git", "leaf.git"), commit)
    top.commit({}, "with a submodule elsewhere")

    result = run(
        agent_config, token_access(private_http), git_url=private_http.url("basic", top.name),
        submodules="recursive",
    )  # fmt: skip

    assert not isinstance(result, JobFailure), result
    assert (Path(result.local_path) / "open" / "leaf.txt").read_text() == "leaf\n"
    assert other_host.seen and other_host.authorizations() == []
    assert_no_trace(agent_config, Path(result.local_path), agent_log)


def test_a_private_submodule_on_another_host_fails_without_being_sent_the_credential(
    agent_config, served, private_http, other_host, leaf
):
    _, commit = leaf
    other_host.basic_users["alice"] = TOKEN  # the same secret would open it: it must not go
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "elsewhere", other_host.url("basic", "leaf.git"), commit)
    top.commit({}, "with a private submodule elsewhere")

    failure = run(
        agent_config, token_access(private_http), git_url=private_http.url("basic", top.name),
        submodules="recursive",
    )  # fmt: skip

    assert isinstance(failure, JobFailure)
    assert failure.code == "auth_failed"
    assert other_host.seen and other_host.authorizations() == []
    assert TOKEN not in failure.message


@pytest.mark.parametrize(
    ("git_url", "credential_host", "url", "sent"),
    [
        ("https://git.example.com/a.git", "git.example.com", "https://git.example.com:443/x", True),
        ("https://git.example.com/a.git", "git.example.com", "https://GIT.example.com/lfs", True),
        ("https://git.example.com/a.git", "git.example.com", "http://git.example.com/x", False),
        ("https://git.example.com/a.git", "git.example.com", "https://git.example.com:8443/x", False),
        ("https://git.example.com/a.git", "git.example.com", "https://lfs.example.com/x", False),
        ("https://git.example.com/a.git", "git.example.com", "https://git.example.com.evil/x", False),
        ("https://git.example.com:8443/a.git", "git.example.com:8443", "https://git.example.com:8443/x", True),
        # A credential for another host than the clone URL's goes nowhere.
        ("https://git.example.com/a.git", "other.example.com", "https://git.example.com/x", False),
        ("ssh://git@git.example.com/a.git", "git.example.com", "https://git.example.com/x", False),
    ],
)  # fmt: skip
def test_the_agent_sends_the_token_to_the_clone_urls_own_origin_only(
    git_url, credential_host, url, sent
):
    credential = GitCredential(
        id="x", name="t", kind="https-token", host=credential_host, username="", secret=TOKEN
    )

    auth = http_auth(credential, git_url)

    headers = auth.headers_for(url) if auth else {}
    assert bool(headers) is sent
    if sent:
        assert headers["Authorization"].startswith("Basic ")


def test_a_deploy_key_gives_no_http_credential():
    credential = GitCredential(
        id="x", name="k", kind="ssh-key", host="git.example.com", username="", secret="key"
    )

    assert http_auth(credential, "https://git.example.com/a.git") is None
