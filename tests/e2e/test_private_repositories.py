"""Private repositories end to end: people's credentials through the real server and the real
agent, against a Basic-auth `git http-backend` and a real sshd on 127.0.0.1, and the leak test:
after a clone, a pull, a failed clone and a cancelled clone, the secrets are nowhere they must
not be."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest

from tests.agent.test_job_credentials import process_texts
from tests.agent.test_submodules import add_submodule
from tests.support.credentials import TOKEN, fernet_key, leaks, make_ssh_key
from tests.support.fleet import Fleet
from tests.support.gitservers import Upstream, start_http_git_server
from tests.support.lfsserver import commit_lfs_files, start_lfs_server
from tests.support.servers import UserClient
from tests.support.sshd import start_sshd

pytestmark = pytest.mark.e2e

NODE_TOKEN = "node-own-" + "Wq3Zt8Lm2Rk7Vb5N"
NODE_HELPER = f"!f() {{ echo username=node; echo password={NODE_TOKEN}; }}; f"


@pytest.fixture
def private_fleet(tmp_path):
    fleet = Fleet(
        tmp_path,
        CREDENTIAL_KEYS=fernet_key(),
        # The agents reach this server over loopback only: the compose private-network case.
        CREDENTIALS_ALLOW_INSECURE_TRANSPORT="true",
        LOG_LEVEL="INFO",
    )
    yield fleet
    fleet.close()


@pytest.fixture
def http_server(served):
    server = start_http_git_server(served)
    yield server
    server.stop()


class Recorder:
    """Every answer a person got from the API, to be searched afterwards."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []

    def __call__(self, response: httpx.Response) -> httpx.Response:
        self.answers.append(response.content)
        return response


def person(fleet: Fleet, name: str, recorder: Recorder, *, grant: bool = False) -> UserClient:
    token = fleet.site.create_user_token(name)
    if grant:
        fleet.site.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Permission\n"
            f"user = get_user_model().objects.get(username={name!r})\n"
            "user.user_permissions.add(Permission.objects.get(codename='use_node_credentials'))",
        )
    client = UserClient(fleet.server.url, token)

    def keep(response: httpx.Response) -> None:
        response.read()
        recorder(response)

    client.http.event_hooks["response"] = [keep]
    return client


def wait_final(user: UserClient, project_id: str, timeout: float = 60) -> dict:
    return user.wait_until(
        project_id, lambda s: s["status"] not in ("pending",), timeout=timeout, what="the clone"
    )


def sample_processes(stop: threading.Event, needles: list[str], found: list[str], seen: list[int]):
    while not stop.is_set():
        texts = process_texts()
        seen[0] += sum(1 for text in texts.values() if text.split(b"\0")[0].endswith(b"git"))
        for pid, text in texts.items():
            found += [f"pid {pid}" for needle in needles if needle.encode() in text]
        time.sleep(0.05)


def test_private_repositories_with_peoples_credentials_and_no_trace(
    private_fleet, http_server, make_upstream, tmp_path
):
    fleet = private_fleet
    recorder = Recorder()
    upstream = make_upstream("private")
    upstream.commit({"README.md": "secret sauce\n"}, "first")
    http_server.basic_users.update({"alice": TOKEN, "node": NODE_TOKEN})
    url = http_server.url("basic", upstream.name)
    key_folder = tmp_path / "keys"
    key_folder.mkdir()
    key = make_ssh_key(key_folder)
    sshd = start_sshd(tmp_path / "sshd", [key.public])
    agent_tmp = tmp_path / "agent-tmp"
    agent_tmp.mkdir()
    sampled: list[str] = []
    git_seen = [0]
    stop_sampling = threading.Event()
    needles = [TOKEN, key.body, *key.body_parts()]
    sampler = threading.Thread(
        target=sample_processes, args=(stop_sampling, needles, sampled, git_seen), daemon=True
    )
    try:
        agent = fleet.start_agent(
            AGENT_GIT_ALLOWED_SCHEMES="http,ssh",
            AGENT_GIT_CREDENTIAL_HELPER=NODE_HELPER,
            TMPDIR=str(agent_tmp),
        )
        alice = person(fleet, "alice2", recorder)
        bob = person(fleet, "bob", recorder)
        carol = person(fleet, "carol", recorder, grant=True)
        sampler.start()

        token = alice.http.post(
            "/api/v1/credentials/",
            json={
                "name": "ci-token",
                "kind": "https-token",
                "host": http_server.host,
                "username": "alice",
                "secret": TOKEN,
            },
        ).json()
        deploy = alice.http.post(
            "/api/v1/credentials/",
            json={
                "name": "deploy-key",
                "kind": "ssh-key",
                "host": sshd.host,
                "secret": key.private,
                "known_hosts": sshd.known_hosts_line,
            },
        ).json()

        # The owner clones and pulls over HTTPS (here HTTP) with the token.
        project = alice.clone("web", url, credential=token["id"])["project"]
        status = wait_final(alice, project["id"])
        assert status["status"] == "ready", status
        checkout = fleet.storage / "projects" / project["target_path"]
        assert (checkout / "README.md").read_text() == "secret sauce\n"
        second = upstream.commit({"more.txt": "more\n"}, "second")
        assert alice.http.post(f"/api/v1/projects/{project['id']}/pull").status_code == 202
        alice.wait_until(project["id"], lambda s: s["commit"] == second, what="the pull")

        # And over SSH with the deploy key.
        over_ssh = alice.clone("ssh", sshd.url(upstream.bare), credential=deploy["id"])["project"]
        assert wait_final(alice, over_ssh["id"])["status"] == "ready"
        assert (fleet.storage / "projects" / over_ssh["target_path"] / "more.txt").exists()

        # Another person can neither see nor use the credential, and gets no node access.
        assert bob.http.get(f"/api/v1/credentials/{token['id']}").status_code == 404
        refused = bob.http.post(
            "/api/v1/projects/clone",
            json={"name": "x", "git_url": url, "branch": "main", "node": "node-1",
                  "credential": token["id"]},
        )  # fmt: skip
        assert refused.status_code == 404
        anonymous = bob.clone("stolen", url)["project"]
        failed = wait_final(bob, anonymous["id"])
        assert failed["status"] == "failed"
        assert failed["last_error"]["code"] == "auth_failed"
        assert "node" not in http_server.basic_logins

        # With the grant, the node's own helper is used for that person's job.
        granted = carol.clone("granted", url)["project"]
        assert wait_final(carol, granted["id"])["status"] == "ready"
        assert "node" in http_server.basic_logins

        # A failed clone: a token the server refuses.
        wrong = alice.http.post(
            "/api/v1/credentials/",
            json={"name": "stale", "kind": "https-token", "host": http_server.host,
                  "secret": "stale-" + TOKEN[::-1]},
        ).json()  # fmt: skip
        stale = alice.clone("stale", url, credential=wrong["id"])["project"]
        failed = wait_final(alice, stale["id"])
        assert failed["last_error"]["code"] == "auth_failed"
        assert "'stale'" in failed["last_error"]["message"]

        # A cancelled clone, slowed down so that its processes can be looked at meanwhile.
        http_server.basic_delay[0] = 2.0
        slow = alice.clone("slow", url, credential=token["id"])
        alice.wait_until(
            slow["project"]["id"],
            lambda s: (s.get("active_job") or {}).get("state") == "leased",
            what="the slow clone to start",
        )
        time.sleep(2.5)
        job_id = slow["job"]["id"]
        cancel = alice.http.post(f"/api/v1/projects/{slow['project']['id']}/jobs/{job_id}/cancel")
        assert cancel.status_code in (200, 202), cancel.text
        agent.wait_for("job_stopped", job_id=job_id, timeout=30)
        http_server.basic_delay[0] = 0.0

        # Revoking: the next pull fails auth_failed, naming the credential.
        assert alice.http.delete(f"/api/v1/credentials/{token['id']}").status_code in (200, 204)
        assert alice.http.post(f"/api/v1/projects/{project['id']}/pull").status_code == 202
        revoked = alice.wait_until(
            project["id"], lambda s: s["last_error"] is not None, what="the refused pull"
        )
        assert revoked["last_error"]["code"] == "auth_failed"
        assert "'ci-token'" in revoked["last_error"]["message"]

        for item in (project, over_ssh, stale, slow["project"]):
            recorder(alice.http.get(f"/api/v1/projects/{item['id']}/events"))
            recorder(alice.http.get(f"/api/v1/projects/{item['id']}"))
        recorder(alice.http.get("/api/v1/credentials/"))
    finally:
        stop_sampling.set()
        if sampler.is_alive():
            sampler.join(5)
        sshd.stop()
    for running in fleet.agents:
        running.stop()

    # The leak test.
    places: dict[str, bytes] = {
        "database dump": fleet.site.manage("dumpdata").encode(),
        "server log": fleet.server.log().encode(),
        "agent log": "".join(a.log() for a in fleet.agents).encode(),
        "answers": b"\n".join(recorder.answers),
    }
    if not fleet.site.postgres:
        for path in (tmp_path).glob("gitfleet.sqlite3*"):
            places[f"database file {path.name}"] = path.read_bytes()
    for root in (fleet.storage, agent_tmp):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                places[f"file {path}"] = path.read_bytes()
    found = [
        f"{where}: {needle[:10]}…"
        for where, content in places.items()
        for needle in needles
        if leaks(content, needle)
    ]
    assert found == []
    assert sampled == []
    assert git_seen[0] > 0
    assert list(agent_tmp.rglob("job-*")) == []

    # The search finds a secret where one must be: in the lease answer for a job that uses it.
    fresh = alice.http.post(
        "/api/v1/credentials/",
        json={"name": "fresh", "kind": "https-token", "host": http_server.host, "secret": TOKEN},
    ).json()
    assert (
        alice.http.patch(
            f"/api/v1/projects/{project['id']}", json={"credential": fresh["id"]}
        ).status_code
        == 200
    )
    assert alice.http.post(f"/api/v1/projects/{project['id']}/pull").status_code == 202
    lease = httpx.post(
        f"{fleet.server.url}/api/v1/agent/lease",
        headers={"Authorization": f"Bearer {fleet.agent_token}"},
        json={"instance_id": "8d4f9a52-3c1b-4e0e-9f5a-2b7c6d1e0f93",
              "request_id": "leak-test-control", "wait": 0},
        timeout=30,
    )  # fmt: skip
    assert lease.status_code == 200, lease.text
    assert leaks(lease.content, TOKEN)


def test_a_private_repository_with_lfs_and_submodules_uses_the_credential_on_its_host_only(
    private_fleet, http_server, served, tmp_path
):
    """The token opens the repository, its LFS objects (behind the same Basic auth) and a
    submodule on the same host; a submodule on another port is fetched without it. Then the
    secret is searched in the checkout (its .git/config and .git/modules too), the agent's
    log, the events and every answer."""
    fleet = private_fleet
    recorder = Recorder()
    lfs_server = start_lfs_server(tmp_path / "lfs-storage")
    other_host = start_http_git_server(served)
    try:
        http_server.basic_users["alice"] = TOKEN
        http_server.lfs_backend[0] = lfs_server.endpoint()
        leaf = Upstream(served, "leaf")
        leaf_commit = leaf.commit({"leaf.txt": "private leaf\n"}, "leaf")
        weights = os.urandom(150_000)
        top = Upstream(served, "top")
        top.commit({"README.md": "top\n"}, "first")
        add_submodule(top, "libs/private", "../leaf.git", leaf_commit)
        add_submodule(top, "libs/open", other_host.url("git", "leaf.git"), leaf_commit)
        url = http_server.url("basic", top.name)
        commit_lfs_files(
            top, f"{url}/info/lfs", {"model.bin": weights}, upload_to=lfs_server.endpoint()
        )
        agent = fleet.start_agent(AGENT_GIT_ALLOWED_SCHEMES="http")
        alice = person(fleet, "dana", recorder)
        token = alice.http.post(
            "/api/v1/credentials/",
            json={"name": "ci-token", "kind": "https-token", "host": http_server.host,
                  "username": "alice", "secret": TOKEN},
        ).json()  # fmt: skip

        project = alice.clone(
            "whole", url, credential=token["id"], lfs=True, submodules="recursive"
        )["project"]
        status = wait_final(alice, project["id"])

        assert status["status"] == "ready", status
        checkout = fleet.storage / "projects" / project["target_path"]
        assert (checkout / "model.bin").read_bytes() == weights
        assert (checkout / "libs" / "private" / "leaf.txt").read_text() == "private leaf\n"
        assert (checkout / "libs" / "open" / "leaf.txt").read_text() == "private leaf\n"
        lfs_auth = [auth for _, path, auth in http_server.seen if "lfs" in path]
        assert lfs_auth and all(lfs_auth)
        assert other_host.seen and other_host.authorizations() == []
        recorder(alice.http.get(f"/api/v1/projects/{project['id']}/events"))
        recorder(alice.http.get(f"/api/v1/projects/{project['id']}"))
        fleet.site.manage("rebuild_projections", "--check")
    finally:
        other_host.stop()
        lfs_server.stop()
    agent.stop()

    places: dict[str, bytes] = {
        "agent log": agent.log().encode(),
        "events": json.dumps(alice.events(project["id"])).encode(),
        "answers": b"\n".join(recorder.answers),
    }
    for path in checkout.rglob("*"):
        if path.is_file() and not path.is_symlink():
            places[f"file {path}"] = path.read_bytes()
    assert any("/.git/modules/" in where and where.endswith("/config") for where in places)
    assert [where for where, content in places.items() if leaks(content, TOKEN)] == []
